"""The client's REST 3.0 against the sandbox: typed answers, errors in the exception tree,
Idempotency-Key retries through lost answers, batch and list_all in 3.0's form."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from portals.bitrix.client import RetryPolicy
from portals.bitrix.exceptions import (
    Bitrix24AccessDenied,
    Bitrix24BadRequest,
    Bitrix24IdempotencyKeyReused,
    Bitrix24NotFound,
    Bitrix24RateLimited,
    Bitrix24WriteOutcomeUnknown,
)
from portals.bitrix.limiter import BucketParams
from portals.bitrix.rest_v3 import FlagAnswer, ItemAnswer, ItemsAnswer
from portals.bitrix.retry import Backoff
from portals.bitrix.tasks import Tasks
from portals.bitrix.transport import method_url
from tests.fixtures.client import RecordingSleep, TokenCredentials

NEW = {"title": "Report", "creatorId": 1, "responsibleId": 2}


def v3_state(sandbox, member_id: str) -> dict[str, Any]:
    answer = requests.get(
        sandbox.state["control_url"] + "rest_v3/state", params={"member_id": member_id}, timeout=10
    )
    return dict(answer.json())


def test_rest3_addresses() -> None:
    assert method_url("https://p.example/rest/7/abc/", "tasks.task.add", v3=True) == (
        "https://p.example/rest/api/7/abc/tasks.task.add"
    )
    assert (
        method_url("https://p.example/rest/", "tasks.task.add", v3=True)
        == "https://p.example/rest/api/tasks.task.add"
    )


def test_typed_answers_with_time(make_client) -> None:
    v3 = make_client().v3
    added = v3.call("tasks.task.add", {"fields": NEW})
    assert isinstance(added, ItemAnswer) and added.item["title"] == "Report" and not added.replayed
    assert added.time.finish >= added.time.start > 0 and added.time.operating_reset_at > added.time.start
    listed = v3.call("tasks.task.list", {"select": ["id", "title"]})
    assert isinstance(listed, ItemsAnswer) and listed.items == [{"id": added.item["id"], "title": "Report"}]
    updated = v3.call("tasks.task.update", {"id": added.item["id"], "fields": {"status": "completed"}})
    assert isinstance(updated, FlagAnswer) and updated.value is True
    assert v3.item("tasks.task.get", {"id": added.item["id"], "select": ["status"]}) == {
        "status": "completed"
    }


def test_errors_map_into_the_exception_tree_with_their_validation(make_client) -> None:
    v3 = make_client().v3
    with pytest.raises(Bitrix24BadRequest) as missing:
        v3.call("tasks.task.add", {"fields": {"creatorId": 1, "responsibleId": 1}})
    assert missing.value.code == "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION"
    assert missing.value.status == 400
    assert missing.value.validation == [{"field": "title", "message": "Required field `title` is missing"}]
    with pytest.raises(Bitrix24NotFound):
        v3.call("tasks.task.get", {"id": 404})
    with pytest.raises(Bitrix24AccessDenied):
        v3.call("tasks.task.delete", {"id": 404})
    with pytest.raises(Bitrix24BadRequest) as operator:
        v3.call("tasks.task.list", {"filter": [["id", "~", 1]]})
    assert operator.value.code.endswith("UNKNOWNFILTEROPERATOREXCEPTION") and operator.value.validation == []
    with pytest.raises(Bitrix24BadRequest) as unmigrated:
        v3.call("crm.deal.get", {"id": 1})
    assert unmigrated.value.code == "ERROR_METHOD_NOT_FOUND"


def test_insufficient_scope_is_access_denied(make_client, sandbox, sandbox_portal) -> None:
    from portals.bitrix.credentials import WebhookCredentials

    url = sandbox.control("webhook", member_id=sandbox_portal.member_id, scope=["crm"])["url"]
    client = make_client(WebhookCredentials(url, member_id=sandbox_portal.member_id))
    with pytest.raises(Bitrix24AccessDenied) as refused:
        client.v3.call("tasks.task.list")
    assert refused.value.code.endswith("INSUFFICIENTSCOPEEXCEPTION") and refused.value.status == 403


def test_a_callers_own_key_replays_and_a_reused_key_is_refused(make_client) -> None:
    v3 = make_client().v3
    first = v3.call("tasks.task.add", {"fields": NEW}, idempotency_key="import-row-17")
    again = v3.call("tasks.task.add", {"fields": NEW}, idempotency_key="import-row-17")
    assert isinstance(again, ItemAnswer) and again.replayed and again.item == first.item
    with pytest.raises(Bitrix24IdempotencyKeyReused):
        v3.call("tasks.task.add", {"fields": {**NEW, "title": "other"}}, idempotency_key="import-row-17")
    with pytest.raises(ValueError):
        v3.call("tasks.task.add", {"fields": NEW}, idempotency_key="ключ")


def test_a_lost_write_is_retried_with_the_same_key_and_runs_once(
    make_client, sandbox, sandbox_portal
) -> None:
    member_id = sandbox_portal.member_id
    sandbox.control("faults", member_id=member_id, kind="drop_after", count=1)
    sleep = RecordingSleep(cap=0)
    answer = make_client(sleep=sleep).v3.call("tasks.task.add", {"fields": NEW})
    assert isinstance(answer, ItemAnswer) and answer.replayed  # the stored answer of the run that lost it
    state = v3_state(sandbox, member_id)
    assert state["tasks"] == 1 and state["idempotency"] == {
        "stored": 1,
        "replayed": 1,
        "reused": 0,
        "invalid": 0,
        "overlapping": 0,
    }
    assert len(sleep.calls) == 1  # one backoff, one retry


def test_the_same_write_on_rest2_is_not_resent(make_client, sandbox, sandbox_portal) -> None:
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="drop_after", count=1)
    before = sandbox.counters()["writes"].get(sandbox_portal.member_id, {}).get("crm.deal.add", 0)
    with pytest.raises(Bitrix24WriteOutcomeUnknown):
        make_client(sleep=RecordingSleep(cap=0)).call("crm.deal.add", {"fields": {"TITLE": "maybe"}})
    assert sandbox.counters()["writes"][sandbox_portal.member_id]["crm.deal.add"] == before + 1


@pytest.mark.slow
def test_a_thousand_writes_every_answer_lost_once_make_a_thousand_tasks(
    make_client, sandbox, sandbox_portal
) -> None:
    member_id = sandbox_portal.member_id
    # The portal's limits out of the way (2,000 requests), so the run is about the answers only.
    sandbox.control("config", drain=10_000, burst=10_000)
    # Every answer of a write that ran is lost; replayed answers get through (replays: false).
    sandbox.control("faults", member_id=member_id, kind="drop_after", replays=False)
    client = make_client(
        bucket=BucketParams(rate=10_000, capacity=10_000),
        retry=RetryPolicy(backoff=Backoff(base=0.001, cap=0.01)),
        concurrency=8,
    )
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(
            pool.map(
                lambda n: client.v3.call("tasks.task.add", {"fields": {**NEW, "title": f"task {n}"}}),
                range(1_000),
            )
        )
    client.close()
    titles = sorted(a.item["title"] for a in answers if isinstance(a, ItemAnswer))
    assert titles == sorted(f"task {n}" for n in range(1_000))
    assert all(a.replayed for a in answers)  # each first answer was lost, each retry replayed it
    state = v3_state(sandbox, member_id)
    assert state["tasks"] == 1_000 and state["last_task_id"] == 1_000  # exactly 1,000 objects
    assert state["idempotency"]["replayed"] == 1_000
    assert state["idempotency"]["overlapping"] == 0  # no retry ever overlapped its first attempt
    assert sandbox.counters()["dropped"][member_id] == 1_000


def test_an_app_token_and_its_refresh_over_rest3(make_client, sandbox, sandbox_portal) -> None:
    credentials = TokenCredentials(sandbox, sandbox_portal)
    client = make_client(credentials)
    created = client.v3.item("tasks.task.add", {"fields": NEW})
    sandbox.control("clock", advance=3601)  # the access token expires
    results = client.v3.batch([("tasks.task.get", {"id": created["id"], "select": ["title"]})])
    assert credentials.refreshes == 1
    assert results[0].unwrap() == ItemAnswer({"title": "Report"}, results[0].unwrap().time)


def test_batch_in_3_0_form_keeps_order_and_errors_in_place(make_client, sandbox, sandbox_portal) -> None:
    sandbox.control("rest_v3/tasks/seed", member_id=sandbox_portal.member_id, tasks=110)
    v3 = make_client().v3
    calls: list[tuple[str, dict[str, Any]]] = [
        ("tasks.task.get", {"id": n, "select": ["id"]}) for n in range(1, 121)
    ]
    results = v3.batch(calls)  # three requests: 50, 50, 20
    assert [r.unwrap().item["id"] for r in results[:110]] == list(range(1, 111))
    assert all(isinstance(r.error, Bitrix24NotFound) for r in results[110:])
    assert sandbox.counters()["batch"] == {"requests": 3, "sub_calls": 120}


def test_a_batch_of_writes_whose_answer_is_lost_is_not_duplicated(
    make_client, sandbox, sandbox_portal
) -> None:
    member_id = sandbox_portal.member_id
    sandbox.control("faults", member_id=member_id, kind="drop_after", count=1)
    results = make_client(sleep=RecordingSleep(cap=0)).v3.batch(
        [("tasks.task.add", {"fields": {**NEW, "title": f"b{n}"}}) for n in range(5)]
    )
    assert [r.unwrap().item["title"] for r in results] == [f"b{n}" for n in range(5)]
    assert v3_state(sandbox, member_id)["tasks"] == 5


def test_batch_calls_refused_for_operating_time_are_resent(make_client, sandbox, sandbox_portal) -> None:
    sandbox.control("rest_v3/tasks/seed", member_id=sandbox_portal.member_id, tasks=3)
    sandbox.control("config", operating_limit=0.0001, operating_window=2.0)
    sleep = RecordingSleep(cap=3)
    results = make_client(sleep=sleep).v3.batch(
        [("tasks.task.get", {"id": n, "select": ["id"]}) for n in (1, 2, 3)]
    )
    assert [r.unwrap().item["id"] for r in results] == [1, 2, 3]
    assert any(s > 0 for s in sleep.calls)  # it waited for the method's reset


def test_list_all_reads_every_task_once_in_parallel_parts(make_client, sandbox, sandbox_portal) -> None:
    n = 7_500
    sandbox.control("rest_v3/tasks/seed", member_id=sandbox_portal.member_id, tasks=n)
    states: list[dict[str, Any]] = []
    rows = list(
        make_client().v3.list_all(
            "tasks.task.list", {"select": ["id", "title"]}, parallel=3, on_checkpoint=states.append
        )
    )
    assert sorted(r["id"] for r in rows) == list(range(1, n + 1))
    assert rows[0]["title"].startswith("Task ")
    assert len(states[0]["parts"]) > 1 and states[0]["api"] == 3


def test_list_all_keeps_the_callers_filter(make_client, sandbox, sandbox_portal) -> None:
    sandbox.control("rest_v3/tasks/seed", member_id=sandbox_portal.member_id, tasks=3_000)
    either = {"logic": "or", "conditions": [["id", "<=", 5], ["id", ">", 2_990]]}
    rows = make_client().v3.list_all("tasks.task.list", {"filter": [either]}, parallel=2)
    assert sorted(r["id"] for r in rows) == [*range(1, 6), *range(2_991, 3_001)]
    with pytest.raises(ValueError):
        make_client().v3.list_all("tasks.task.list", {"filter": {"id": 1}})


def test_an_interrupted_list_all_resumes_without_loss_or_duplicates(
    make_client, sandbox, sandbox_portal
) -> None:
    n = 6_000
    sandbox.control("rest_v3/tasks/seed", member_id=sandbox_portal.member_id, tasks=n)
    client = make_client()
    consumed: list[int] = []
    saved: list[tuple[dict[str, Any], int]] = []
    rows = client.v3.list_all(
        "tasks.task.list", {}, parallel=3, on_checkpoint=lambda s: saved.append((s, len(consumed)))
    )
    for row in rows:
        consumed.append(row["id"])
        if len(consumed) == 2_500:
            break
    rows.close()  # the process "dies" here
    state, kept = saved[-1]
    rest = [r["id"] for r in client.v3.list_all("tasks.task.list", {}, parallel=3, checkpoint=state)]
    assert sorted(consumed[:kept] + rest) == list(range(1, n + 1))
    with pytest.raises(ValueError):
        client.v3.list_all("tasks.task.list", {}, checkpoint={**state, "api": None})


def test_the_tasks_service(make_client, sandbox, sandbox_portal) -> None:
    tasks = Tasks(make_client())
    task = tasks.add({**NEW, "deadline": "2026-12-31T18:00:00+03:00"})
    assert tasks.update(task["id"], {"status": "in_progress", "accomplices": [3]})
    got = tasks.get(task["id"], select=["title", "status", "accomplices", "responsible.name"])
    assert got["status"] == "in_progress" and got["accomplices"] == [3] and got["responsible"]["name"]
    second = tasks.add({**NEW, "title": "Second"})
    assert [t["id"] for t in tasks.list(order={"id": "DESC"})] == [second["id"], task["id"]]
    assert [t["title"] for t in tasks.iterate(filter=[["id", ">", task["id"]]], select=["title"])] == [
        "Second"
    ]
    assert tasks.delete(second["id"])
    with pytest.raises(Bitrix24NotFound):
        tasks.get(second["id"])


def test_a_rate_limited_v3_call_waits_and_succeeds(make_client, sandbox, sandbox_portal) -> None:
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="query_limit", count=2)
    sleep = RecordingSleep(cap=0)
    assert make_client(sleep=sleep).v3.items("tasks.task.list") == []
    assert sandbox.counters()["answers"]["by_code"]["QUERY_LIMIT_EXCEEDED"] == 2


def test_openapi_and_scopes(make_client) -> None:
    v3 = make_client().v3
    assert "/tasks.task.list" in v3.openapi()["paths"]
    assert v3.scopes()["tasks.task.get"] == "task"


def test_concurrent_callers_never_share_a_key(make_client, sandbox, sandbox_portal) -> None:
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="drop_after", replays=False, count=20)
    client = make_client(sleep=RecordingSleep(cap=0))
    barrier = threading.Barrier(4)

    def write(n: int) -> Any:
        barrier.wait()
        return client.v3.item("tasks.task.add", {"fields": {**NEW, "title": f"same body {n % 2}"}})

    with ThreadPoolExecutor(max_workers=4) as pool:
        items = list(pool.map(write, range(4)))
    assert len({i["id"] for i in items}) == 4  # equal bodies, separate calls: separate keys
    assert v3_state(sandbox, sandbox_portal.member_id)["idempotency"]["overlapping"] == 0


def test_a_call_refused_before_running_keeps_its_key(make_client, sandbox, sandbox_portal) -> None:
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="operation_limit", count=1)
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="drop_after", count=1)
    answer = make_client(sleep=RecordingSleep(cap=0)).v3.call("tasks.task.add", {"fields": NEW})
    assert answer.replayed  # 429, then run with the answer lost, then replayed: one key throughout
    assert v3_state(sandbox, sandbox_portal.member_id)["tasks"] == 1
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="operation_limit")
    with pytest.raises(Bitrix24RateLimited):  # refused every time: raised after the bound
        make_client(sleep=RecordingSleep(cap=0)).v3.call("tasks.task.list")
