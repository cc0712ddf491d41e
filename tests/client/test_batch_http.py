"""batch() over real HTTP: chunking, error isolation, back-references, halt, sub-call limits."""

from __future__ import annotations

import pytest

from portals.bitrix.exceptions import Bitrix24NotFound
from tests.fixtures.client import RecordingSleep


def test_any_number_of_commands_with_errors_isolated(make_client, sandbox, sandbox_portal) -> None:
    client = make_client()
    commands = {f"d{i}": ("crm.deal.get", {"id": i if i % 10 else 10**9}) for i in range(1, 121)}
    before = sandbox.counters()["batch"]["requests"]
    result = client.batch(commands)
    assert list(result) == list(commands)  # in the order given
    assert sandbox.counters()["batch"]["requests"] - before == 3  # 50 + 50 + 20
    for i in range(1, 121):
        r = result[f"d{i}"]
        if i % 10:
            assert r.ok and r.result["ID"] == str(i)
        else:
            assert isinstance(r.error, Bitrix24NotFound)
    assert len(result.errors) == 12
    with pytest.raises(Bitrix24NotFound):
        result["d10"].unwrap()


def test_back_references_inside_and_across_chunks(make_client) -> None:
    client = make_client()
    commands: dict[str, tuple[str, dict]] = {
        "first": (
            "crm.deal.list",
            {"order": {"ID": "ASC"}, "filter": {">ID": 10}, "select": ["ID"], "start": -1},
        ),
        "same_chunk": ("crm.deal.get", {"id": "$result[first][0][ID]"}),
    }
    for i in range(60):  # pushes "far" into the second chunk of 50
        commands[f"pad{i}"] = ("crm.deal.get", {"id": 1})
    commands["far"] = ("crm.deal.get", {"id": "$result[first][1][ID]"})
    result = client.batch(commands)
    assert result["same_chunk"].result["ID"] == "11"
    assert result["far"].result["ID"] == "12"


def test_halt_stops_at_the_first_failure(make_client) -> None:
    client = make_client()
    result = client.batch(
        [("crm.deal.get", {"id": 1}), ("crm.deal.get", {"id": 10**9}), ("crm.deal.get", {"id": 3})], halt=True
    )
    assert result["0"].ok
    assert isinstance(result["1"].error, Bitrix24NotFound)
    assert not result["2"].ok and not result["2"].ran


def test_sub_calls_refused_for_operating_time_are_resent(make_client, sandbox, sandbox_portal) -> None:
    sleep = RecordingSleep(cap=5)
    client = make_client(sleep=sleep)
    # A tiny limit over a 2-second window: the first sub-call spends it, the second is refused
    # until the window moves on.
    sandbox.control("config", operating_limit=0.001, operating_window=2.0, cost={"scale": 1.0})
    try:
        result = client.batch([("crm.deal.get", {"id": 1}), ("crm.deal.get", {"id": 2})])
    finally:
        sandbox.control("config", operating_limit=480.0, operating_window=600.0)
    assert result["0"].ok
    assert result["1"].ok and result["1"].result["ID"] == "2"  # refused, then re-sent
    assert sandbox.counters()["answers"]["by_code"].get("batch:OPERATION_TIME_LIMIT", 0) >= 1
    assert 0.5 < max(sleep.calls) <= 2 + 1.5  # waited for the reported reset, not a blind default
