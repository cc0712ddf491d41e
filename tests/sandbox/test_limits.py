"""Limits: the leaky bucket per portal (batch = one request, plan values), the operating-time limit
per method, the cost model counted into operating time, and the per-portal concurrency limit."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.sandbox.helpers import hook_call, member, webhook


def _burst(sandbox, count, portal=1):
    session = requests.Session()
    url = webhook(sandbox, portal) + "server.time"
    started = time.monotonic()
    codes = [session.get(url, verify=sandbox.ca_bundle).status_code for _ in range(count)]
    return codes, time.monotonic() - started


def test_leaky_bucket_admits_a_burst_of_50_then_answers_503(sandbox):
    sandbox.control("config", cost={"scale": 0})
    codes, elapsed = _burst(sandbox, 70)
    admitted = codes.count(200)
    # 50 fit the bucket; at most what drained meanwhile (2/s) gets in on top.
    assert 50 <= admitted <= 50 + int(2 * elapsed) + 1
    assert codes.count(503) == 70 - admitted
    refused = hook_call(sandbox, "server.time")
    assert refused.status_code == 503 and refused.json()["error"] == "QUERY_LIMIT_EXCEEDED"
    # Other portals keep their own bucket.
    assert hook_call(sandbox, "server.time", portal=2).status_code == 200


def test_bucket_drains_at_two_per_second(sandbox):
    sandbox.control("config", cost={"scale": 0})
    _burst(sandbox, 55)
    sandbox.control("clock", advance=5)  # drains 10 requests' worth
    codes, elapsed = _burst(sandbox, 15)
    assert 10 <= codes.count(200) <= 10 + int(2 * elapsed) + 1


def test_enterprise_plan_has_a_bucket_of_250(sandbox):
    sandbox.control("config", cost={"scale": 0})
    sandbox.control("portal/plan", member_id=member(sandbox), plan="enterprise")
    codes, elapsed = _burst(sandbox, 120)
    assert codes.count(200) == 120
    # The level shows the 250-bucket really holds them (5/s drained meanwhile).
    level = sandbox.counters()["buckets"][member(sandbox)]
    assert 120 - 5 * (elapsed + 1) <= level <= 120


def test_bucket_size_and_drain_are_configurable(sandbox):
    sandbox.control("config", burst=5, drain=0.01, cost={"scale": 0})
    codes, _ = _burst(sandbox, 8)
    assert codes == [200] * 5 + [503] * 3


def test_a_batch_counts_as_one_request(sandbox):
    sandbox.control("config", burst=3, drain=0.01, cost={"scale": 0})
    cmd = {f"c{i}": f"crm.deal.get?id={i + 1}" for i in range(50)}
    for _ in range(3):
        answer = hook_call(sandbox, "batch", cmd=cmd)
        assert answer.status_code == 200 and len(answer.json()["result"]["result"]) == 50
    assert hook_call(sandbox, "batch", cmd=cmd).status_code == 503
    counters = sandbox.counters()
    assert counters["batch"] == {"requests": 3, "sub_calls": 150}


def test_operating_limit_blocks_the_method_after_the_crossing_call(sandbox):
    # Each crm.deal.get costs 0.15 s of server time; the limit is 0.25 s per 10 minutes.
    sandbox.control("config", operating_limit=0.25, cost={"per_call": 0.15, "per_row": 0, "scale": 1.0})
    first = hook_call(sandbox, "crm.deal.get", id=1).json()
    assert first["time"]["operating"] >= 0.15
    second = hook_call(sandbox, "crm.deal.get", id=1)  # crosses the limit and still completes
    assert second.status_code == 200 and second.json()["time"]["operating"] >= 0.3
    blocked = hook_call(sandbox, "crm.deal.get", id=1)
    assert blocked.status_code == 429 and blocked.json()["error"] == "OPERATION_TIME_LIMIT"
    # Other methods are not blocked.
    assert hook_call(sandbox, "crm.deal.list", select=["ID"]).status_code == 200
    reset_at = second.json()["time"]["operating_reset_at"]
    now = hook_call(sandbox, "server.time", portal=2).json()["time"]["start"]
    assert 590 <= reset_at - now <= 601
    # The minute buckets expire ten minutes after their first call.
    sandbox.control("clock", advance=601)
    assert hook_call(sandbox, "crm.deal.get", id=1).status_code == 200


def test_operating_limit_inside_a_batch_fails_only_the_sub_call(sandbox):
    sandbox.control("config", operating_limit=0.25, cost={"per_call": 0.15, "per_row": 0, "scale": 1.0})
    answer = hook_call(
        sandbox,
        "batch",
        cmd={
            "a": "crm.deal.get?id=1",
            "b": "crm.deal.get?id=2",
            "c": "crm.deal.get?id=3",
            "d": "server.time",
        },
    ).json()["result"]
    assert set(answer["result"]) == {"a", "b", "d"}
    assert answer["result_error"]["c"]["error"] == "OPERATION_TIME_LIMIT"
    assert answer["result_time"]["b"]["operating"] >= 0.3
    assert all("operating" in entry for entry in answer["result_time"].values())


def test_cost_model_is_applied_as_latency_and_counted_as_operating_time(sandbox):
    cost = {
        "per_call": 0.05,
        "per_row": 0.002,
        "per_offset_row": 0.0,
        "per_count_row": 0.001,
        "per_write": 0.1,
        "scale": 1.0,
    }
    sandbox.control("config", cost=cost)
    started = time.monotonic()
    page = hook_call(sandbox, "crm.deal.list", select=["ID"]).json()
    elapsed = time.monotonic() - started
    modelled = 0.05 + 50 * 0.002 + 120 * 0.001
    assert elapsed >= modelled
    assert page["time"]["operating"] >= modelled
    no_count = hook_call(sandbox, "crm.deal.list", select=["ID"], start=-1).json()
    assert no_count["total"] == 0 and "next" not in no_count
    # Operating time is exactly the model: the second call skipped the COUNT (120 rows x 0.001).
    assert no_count["time"]["operating"] - page["time"]["operating"] == pytest.approx(
        modelled - 0.12, abs=1e-5
    )
    assert page["time"]["operating"] == pytest.approx(modelled, abs=1e-5)
    write = hook_call(sandbox, "crm.deal.add", fields={"TITLE": "w"}).json()
    assert write["time"]["operating"] >= 0.15
    counters = sandbox.counters()
    assert counters["operating_seconds"][member(sandbox)]["crm.deal.list"] == pytest.approx(
        2 * modelled - 0.12
    )
    assert counters["writes"][member(sandbox)] == {"crm.deal.add": 1}


def test_a_portal_processes_a_limited_number_of_requests_at_once(sandbox):
    sandbox.control("config", concurrency=2, cost={"per_call": 0.2, "scale": 1.0})
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: hook_call(sandbox, "server.time").status_code, range(6)))
    assert answers == [200] * 6
    assert sandbox.counters()["max_in_flight"][member(sandbox)] == 2
