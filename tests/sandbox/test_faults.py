"""Fault switches of the control API, per portal: storms, latency, dropped connections before and
after the method, OAuth answer lost after rotation, OAuth server down, revoked tokens."""

from __future__ import annotations

import time

import pytest
import requests

from tests.sandbox.helpers import app_call, hook_call, issue, member, refresh


def _fault(sandbox, portal=1, **fault):
    return sandbox.control("faults", member_id=member(sandbox, portal), **fault)


def test_query_limit_storm_for_the_next_n_requests(sandbox):
    _fault(sandbox, kind="query_limit", count=3)
    codes = [hook_call(sandbox, "server.time").status_code for _ in range(4)]
    assert codes == [503, 503, 503, 200]
    assert hook_call(sandbox, "server.time", portal=2).status_code == 200
    assert sandbox.counters()["answers"]["by_portal"][member(sandbox)]["QUERY_LIMIT_EXCEEDED"] == 3


def test_operation_limit_storm_for_a_time_span(sandbox):
    _fault(sandbox, kind="operation_limit", seconds=120)
    answer = hook_call(sandbox, "crm.deal.get", id=1)
    assert answer.status_code == 429 and answer.json()["error"] == "OPERATION_TIME_LIMIT"
    assert hook_call(sandbox, "crm.deal.get", id=1).status_code == 429
    sandbox.control("clock", advance=121)
    assert hook_call(sandbox, "crm.deal.get", id=1).status_code == 200


def test_added_latency(sandbox):
    # 2 s: far above what a fresh HTTPS call takes even on a loaded 2-core machine, so the second
    # call (count=1: no added latency) is told apart by a wide margin, not a few hundred ms.
    _fault(sandbox, kind="latency", delay=2.0, count=1)
    started = time.monotonic()
    assert hook_call(sandbox, "server.time").status_code == 200
    delayed = time.monotonic() - started
    started = time.monotonic()
    hook_call(sandbox, "server.time")
    undelayed = time.monotonic() - started
    assert delayed >= 2.0 and undelayed < delayed - 1.0


def test_drop_before_the_method_runs(sandbox):
    _fault(sandbox, kind="drop_before", count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        hook_call(sandbox, "crm.deal.add", fields={"TITLE": "dropped before"})
    assert hook_call(sandbox, "crm.deal.list", filter={"TITLE": "dropped before"}).json()["result"] == []


def test_drop_after_the_method_ran_leaves_the_write_done(sandbox):
    _fault(sandbox, kind="drop_after", count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        hook_call(sandbox, "crm.deal.add", fields={"TITLE": "outcome unknown"})
    rows = hook_call(sandbox, "crm.deal.list", filter={"TITLE": "outcome unknown"}).json()["result"]
    assert len(rows) == 1
    assert sandbox.counters()["dropped"][member(sandbox)] == 1


def test_oauth_answer_lost_after_rotation(sandbox):
    pair = issue(sandbox)
    _fault(sandbox, kind="oauth_lost", count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        refresh(sandbox, pair["refresh_token"])
    # The rotation happened server-side: the old refresh token is spent; the old access token
    # lives on until its expiry (the default), or dies at once with refresh_revokes_access.
    assert refresh(sandbox, pair["refresh_token"]).json()["error"] == "invalid_grant"
    assert app_call(sandbox, "profile", pair["access_token"]).status_code == 200
    sandbox.control("config", refresh_revokes_access=True)
    again = issue(sandbox)
    _fault(sandbox, kind="oauth_lost", count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        refresh(sandbox, again["refresh_token"])
    assert app_call(sandbox, "profile", again["access_token"]).json()["error"] == "invalid_token"
    assert sandbox.counters()["token_grants"][member(sandbox)]["refresh_token"] == 2


def test_oauth_server_down_with_503_then_up(sandbox):
    pair = issue(sandbox)
    sandbox.control("faults", scope="oauth", kind="oauth_down", mode="503")
    down = refresh(sandbox, pair["refresh_token"])
    assert down.status_code == 503 and "json" not in down.headers["content-type"]
    sandbox.control("faults/clear", scope="oauth")
    assert refresh(sandbox, pair["refresh_token"]).status_code == 200


def test_oauth_server_down_refuses_connections(sandbox):
    pair = issue(sandbox)
    sandbox.control("faults", scope="oauth", kind="oauth_down", mode="refuse")
    try:
        with pytest.raises(requests.exceptions.ConnectionError) as refused:
            refresh(sandbox, pair["refresh_token"])
        assert "refused" in str(refused.value).lower()
        # The portals and the control API keep working.
        assert hook_call(sandbox, "server.time").status_code == 200
    finally:
        sandbox.control("faults/clear", scope="oauth")
    for _ in range(50):
        try:
            assert refresh(sandbox, pair["refresh_token"]).status_code == 200
            break
        except requests.exceptions.ConnectionError:
            time.sleep(0.05)
    else:
        pytest.fail("OAuth server did not come back")


@pytest.mark.parametrize("code", ["invalid_token", "NO_AUTH_FOUND"])
def test_revoked_token(sandbox, code):
    pair = issue(sandbox)
    _fault(sandbox, kind="revoked", code=code)
    answer = app_call(sandbox, "profile", pair["access_token"])
    assert answer.status_code == 401 and answer.json()["error"] == code
    # Webhooks are not app tokens: unaffected.
    assert hook_call(sandbox, "profile").status_code == 200


def test_real_revocation_kills_every_token_of_the_portal(sandbox):
    pair = issue(sandbox)
    assert sandbox.control("tokens/revoke", member_id=member(sandbox))["revoked"] == 1
    assert app_call(sandbox, "profile", pair["access_token"]).json()["error"] == "invalid_token"
    assert refresh(sandbox, pair["refresh_token"]).json()["error"] == "invalid_grant"


def test_portal_deleted_fault(sandbox):
    _fault(sandbox, kind="deleted", count=1)
    answer = hook_call(sandbox, "profile")
    assert answer.json()["error"] == "PORTAL_DELETED"
    assert hook_call(sandbox, "profile").status_code == 200


def test_faults_are_listed_and_cleared(sandbox):
    _fault(sandbox, kind="query_limit", count=5)
    listed = requests.get(sandbox.state["control_url"] + "faults", timeout=10).json()
    assert listed[member(sandbox)][0]["kind"] == "query_limit"
    sandbox.control("faults/clear", member_id=member(sandbox))
    assert hook_call(sandbox, "profile").status_code == 200
    with pytest.raises(Exception, match="400"):
        _fault(sandbox, kind="no_such_fault")


def test_oauth_server_comes_back_after_the_time_span(sandbox):
    pair = issue(sandbox)
    sandbox.control("faults", scope="oauth", kind="oauth_down", mode="refuse", seconds=0.5)
    with pytest.raises(requests.exceptions.ConnectionError):
        refresh(sandbox, pair["refresh_token"])
    deadline = time.monotonic() + 10
    while True:
        try:
            answer = refresh(sandbox, pair["refresh_token"])
            break
        except requests.exceptions.ConnectionError:
            assert time.monotonic() < deadline, "OAuth server did not reopen"
            time.sleep(0.1)
    assert answer.status_code == 200


def test_oauth_latency_delays_oauth_answers_until_cleared(sandbox):
    pair = issue(sandbox)
    sandbox.control("faults", scope="oauth", kind="oauth_latency", delay=0.4)
    try:
        started = time.monotonic()
        answer = refresh(sandbox, pair["refresh_token"])
        slow = time.monotonic() - started
        assert answer.status_code == 200 and slow >= 0.4  # the grant still succeeds, late
    finally:
        sandbox.control("faults/clear", scope="oauth")
    assert "oauth_latency" not in str(sandbox.control_get("faults"))
    assert refresh(sandbox, answer.json()["refresh_token"]).status_code == 200
