"""list_all over real HTTP: every row once, keyset chains in parallel parts, resumable, adapters."""

from __future__ import annotations

import math

from portals.bitrix import listing
from portals.bitrix.listing import ListAdapter, Lister, _Work


def seed_deals(sandbox, member_id: str, n: int) -> None:
    sandbox.control("seed", member_id=member_id, deals=n)


def batch_requests(sandbox) -> int:
    return sandbox.counters()["batch"]["requests"]


def test_every_row_once_from_parallel_keyset_chains(make_client, sandbox, sandbox_portal) -> None:
    n = 12_345
    seed_deals(sandbox, sandbox_portal.member_id, n)
    client = make_client()
    states: list[dict] = []
    progress: list[int] = []
    before = batch_requests(sandbox)
    ids = [
        int(row["ID"])
        for row in client.list_all(
            "crm.deal.list",
            {"select": ["ID", "TITLE"]},
            parallel=4,
            on_checkpoint=states.append,
            progress=progress.append,
        )
    ]
    assert sorted(ids) == list(range(1, n + 1))
    assert len(states[0]["parts"]) == 4 and all(p["done"] for p in states[-1]["parts"])
    assert progress == sorted(progress) and progress[-1] == n
    # 2,500 rows a request: the chains, one probe for the ID range, at most one tail per part.
    assert batch_requests(sandbox) - before <= math.ceil(n / 2500) + 1 + 4
    calls = sandbox.counters()["calls"][sandbox_portal.member_id]["crm.deal.list"]
    assert calls <= math.ceil(n / 50) + 2 + 4  # list calls: pages + probes + a short page per part


def test_filters_and_select_are_kept(make_client, sandbox, sandbox_portal) -> None:
    seed_deals(sandbox, sandbox_portal.member_id, 3000)
    client = make_client()
    params = {"filter": {"STAGE_ID": "WON"}, "select": ["ID", "STAGE_ID"]}
    parallel = list(client.list_all("crm.deal.list", params, parallel=4))
    single = list(client.list_all("crm.deal.list", params, parallel=1))
    assert parallel and all(r["STAGE_ID"] == "WON" for r in parallel)
    assert sorted(int(r["ID"]) for r in parallel) == [int(r["ID"]) for r in single]
    assert set(parallel[0]) == {"ID", "STAGE_ID"}


def test_nothing_matches(make_client) -> None:
    client = make_client()
    assert list(client.list_all("crm.deal.list", {"filter": {"STAGE_ID": "NO-SUCH"}}, parallel=4)) == []
    assert list(client.list_all("crm.deal.list", {"filter": {"STAGE_ID": "NO-SUCH"}}, parallel=1)) == []


def test_an_interrupted_traversal_resumes_without_loss_or_duplicates(
    make_client, sandbox, sandbox_portal
) -> None:
    n = 9_000
    seed_deals(sandbox, sandbox_portal.member_id, n)
    client = make_client()
    consumed: list[int] = []
    saved: list[tuple[dict, int]] = []
    rows = client.list_all(
        "crm.deal.list",
        {"select": ["ID"]},
        parallel=3,
        on_checkpoint=lambda s: saved.append((s, len(consumed))),
    )
    for row in rows:
        consumed.append(int(row["ID"]))
        if len(consumed) == 4_000:
            break
    rows.close()  # the process "dies" here
    state, kept = saved[-1]  # rows consumed after the last checkpoint are lost with the process
    assert 0 < kept <= 4_000
    rest = [
        int(r["ID"])
        for r in client.list_all("crm.deal.list", {"select": ["ID"]}, parallel=3, checkpoint=state)
    ]
    everything = consumed[:kept] + rest
    assert sorted(everything) == list(range(1, n + 1))


def test_offset_paging_fallback(make_client, sandbox, sandbox_portal, monkeypatch) -> None:
    seed_deals(sandbox, sandbox_portal.member_id, 2_600)
    monkeypatch.setitem(listing.ADAPTERS, "crm.deal.list", ListAdapter(keyset=False))
    client = make_client()
    ids = [int(r["ID"]) for r in client.list_all("crm.deal.list", {"select": ["ID"]})]
    assert sorted(ids) == list(range(1, 2_601)) and len(ids) == len(set(ids))


def test_user_get_adapter(make_client, sandbox) -> None:
    client = make_client()
    expected = {u["ID"] for u in client.call("user.get", {"sort": "ID", "order": "ASC"})}
    users = list(client.list_all("user.get", parallel=1))
    assert {u["ID"] for u in users} == expected and len(users) == len(expected)


def test_crm_item_list_adapter_speaks_lower_case_and_items() -> None:
    # The sandbox has no crm.item.list yet: check the wire shape the adapter builds and reads.
    a = listing.adapter_for("CRM.ITEM.LIST")
    params = a.params({"entityTypeId": 2, "select": ["title"]}, after="$result[c0][items][49][id]", upto=900)
    assert params["filter"] == {">id": "$result[c0][items][49][id]", "<=id": 900}
    assert params["order"] == {"id": "ASC"} and params["start"] == -1
    assert params["select"] == ["title", "id"]
    assert a.last_ref("c3") == "$result[c3][items][49][id]"
    assert [a.row_id(r) for r in a.rows({"items": [{"id": 5}, {"id": 9}]})] == [5, 9]


def test_an_idle_reader_takes_whole_chains_off_the_busiest_part() -> None:
    parts = [
        {"after": 0, "upto": 12_500, "done": False},
        {"after": 12_500, "upto": None, "span_hint": 25_000, "done": False},
    ]
    work = _Work(parts, [0, 1])
    row_id = ListAdapter().row_id
    assert work.next_chain(0, Lister._chain_length) == {"after": 0, "upto": 12_500, "span_hint": None}
    # Part 1 (the open end) has the most left: five chains → two stay, three move, on a chain boundary.
    assert work.steal() == 2
    assert parts[1] == {"after": 12_500, "upto": 17_500, "done": False}
    assert parts[2] == {"after": 17_500, "upto": None, "done": False, "span_hint": 25_000}
    # Part 0: four chains left past its chain in flight (0, 2,500] → split at 2,500 + 2 chains.
    assert work.steal() == 3
    assert parts[0]["upto"] == 7_500 and parts[3] == {"after": 7_500, "upto": 12_500, "done": False}
    # The chain in flight still lands whole; a row past a moved end is dropped and ends the part.
    kept, cut = work.arrived(0, [{"ID": i} for i in range(1, 2_501)], row_id)
    assert len(kept) == 2_500 and not cut and work.cursor(0) == 2_500
    kept, cut = work.arrived(0, [{"ID": 7_499}, {"ID": 7_500}, {"ID": 7_501}], row_id)
    assert [r["ID"] for r in kept] == [7_499, 7_500] and cut
    # Every ID is covered exactly once by the parts' (after, upto] ranges.
    ranges = sorted((p["after"], p["upto"] or p["span_hint"]) for p in parts)
    assert ranges == [(0, 7_500), (7_500, 12_500), (12_500, 17_500), (17_500, 25_000)]


def test_a_part_with_one_chain_left_is_not_split() -> None:
    parts = [{"after": 0, "upto": 2_500, "done": False}, {"after": 2_500, "upto": 4_000, "done": False}]
    work = _Work(parts, [0, 1])
    assert work.steal() is None
    assert len(parts) == 2
