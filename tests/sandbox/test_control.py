"""The control API: reset, seed, clock, counters shape, webhooks, token minting, rename."""

from __future__ import annotations

import requests

from tests.sandbox.helpers import app_call, hook_call, issue, member


def test_reset_restores_data_tokens_and_counters_with_the_same_identities(sandbox):
    before = sandbox.control_get("state")
    pair = issue(sandbox)
    hook_call(sandbox, "crm.deal.delete", id=1)
    sandbox.reset()
    assert sandbox.control_get("state")["portals"] == before["portals"]
    assert hook_call(sandbox, "crm.deal.get", id=1).status_code == 200
    assert app_call(sandbox, "profile", pair["access_token"]).json()["error"] == "invalid_token"
    assert sandbox.counters()["requests"]["total"] == 2


def test_seed_replaces_generated_rows_quickly(sandbox):
    counts = sandbox.control("seed", member_id=member(sandbox), deals=500_000, contacts=1000)
    assert counts["counts"][member(sandbox)]["deal"] == 500_000
    page = hook_call(sandbox, "crm.deal.list", select=["ID"]).json()
    assert page["total"] == 500_000 and page["next"] == 50
    tail = hook_call(
        sandbox, "crm.deal.list", order={"ID": "DESC"}, select=["ID", "CONTACT_ID"], start=-1
    ).json()
    assert tail["result"][0]["ID"] == "500000"
    assert 1 <= int(tail["result"][0]["CONTACT_ID"]) <= 1000
    # The same id reads back the same row.
    first = hook_call(sandbox, "crm.deal.get", id=123_456).json()["result"]
    assert hook_call(sandbox, "crm.deal.get", id=123_456).json()["result"] == first


def test_clock_offset_moves_server_time(sandbox):
    before = hook_call(sandbox, "server.time").json()["time"]["start"]
    assert sandbox.control("clock", advance=7200)["offset"] == 7200
    after = hook_call(sandbox, "server.time").json()["time"]["start"]
    assert 7190 <= after - before <= 7300
    assert sandbox.control("clock", offset=0)["offset"] == 0


def test_counters_have_the_documented_shape(sandbox):
    pair = issue(sandbox)
    app_call(sandbox, "crm.deal.list", pair["access_token"])
    hook_call(sandbox, "batch", cmd={"a": "crm.deal.get?id=1"})
    hook_call(sandbox, "no.such")
    counters = sandbox.counters()
    assert set(counters) == {
        "requests",
        "answers",
        "token_grants",
        "refresh_token_reuse",
        "operating_seconds",
        "calls",
        "writes",
        "buckets",
        "in_flight",
        "max_in_flight",
        "batch",
        "dropped",
        "oauth",
    }
    mid = member(sandbox)
    assert counters["requests"] == {"total": 3, "by_portal": {mid: 3}}
    assert counters["answers"]["by_code"] == {"OK": 2, "ERROR_METHOD_NOT_FOUND": 1}
    assert counters["token_grants"] == {mid: {"issue": 1}}
    assert set(counters["operating_seconds"][mid]) == {"crm.deal.list", "crm.deal.get"}
    assert counters["calls"][mid] == {"crm.deal.list": 1, "crm.deal.get": 1}
    assert counters["batch"] == {"requests": 1, "sub_calls": 1}
    assert 0 < counters["buckets"][mid] <= 3


def test_extra_webhook_for_another_user(sandbox):
    hook = sandbox.control("webhook", member_id=member(sandbox), user_id=4, scope=["crm", "user_brief"])
    me = requests.get(hook["url"] + "user.current", verify=sandbox.ca_bundle).json()["result"]
    assert me["ID"] == "4"
    created = requests.post(
        hook["url"] + "crm.deal.add", json={"fields": {"TITLE": "by 4"}}, verify=sandbox.ca_bundle
    ).json()["result"]
    assert hook_call(sandbox, "crm.deal.get", id=created).json()["result"]["CREATED_BY_ID"] == "4"


def test_oauth_issue_mints_an_installed_apps_pair(sandbox):
    pair = issue(sandbox, user_id=2)
    assert pair["user_id"] == 2 and pair["member_id"] == member(sandbox)
    assert len(pair["application_token"]) == 32
    assert app_call(sandbox, "user.current", pair["access_token"]).json()["result"]["ID"] == "2"


def test_rename_redirects_every_path_of_the_old_host(sandbox):
    old = sandbox.portal(1)
    renamed = sandbox.control("portal/rename", member_id=member(sandbox))
    assert renamed["domain"] != old["domain"]
    answer = requests.post(
        old["webhook_url"] + "crm.deal.get?id=1", json={}, verify=sandbox.ca_bundle, allow_redirects=False
    )
    assert answer.status_code == 302
    new_url = answer.headers["Location"]
    assert new_url.startswith(f"https://{renamed['domain']}/rest/") and new_url.endswith("crm.deal.get?id=1")
    moved = requests.post(new_url, json={}, verify=sandbox.ca_bundle)
    assert moved.status_code == 200 and moved.json()["result"]["ID"] == "1"
    pair = issue(sandbox)
    assert pair["client_endpoint"] == renamed["client_endpoint"]
