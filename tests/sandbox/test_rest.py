"""REST on the wire: URL forms, parameter encodings, envelopes and the documented error statuses."""

from __future__ import annotations

import requests

from tests.sandbox.helpers import hook_call, issue, member, webhook

TIME_FIELDS = {
    "start",
    "finish",
    "duration",
    "processing",
    "date_start",
    "date_finish",
    "operating_reset_at",
    "operating",
}


def test_oauth_call_with_auth_in_query_form_or_json_and_json_suffix(sandbox):
    pair = issue(sandbox)
    base = sandbox.portal(1)["client_endpoint"]
    ca = sandbox.ca_bundle
    by_query = requests.get(
        base + "crm.deal.get.json", params={"auth": pair["access_token"], "id": 2}, verify=ca
    )
    by_form = requests.post(base + "crm.deal.get", data={"auth": pair["access_token"], "id": 2}, verify=ca)
    by_json = requests.post(base + "crm.deal.get", json={"auth": pair["access_token"], "id": 2}, verify=ca)
    assert by_query.json()["result"] == by_form.json()["result"] == by_json.json()["result"]
    assert by_query.json()["result"]["ID"] == "2"


def test_php_style_nested_form_keys_and_json_bodies_mean_the_same(sandbox):
    url = webhook(sandbox) + "crm.deal.list"
    ca = sandbox.ca_bundle
    form = requests.post(
        url,
        data={"filter[>ID]": "5", "filter[<=ID]": "8", "select[]": ["ID", "TITLE"], "order[ID]": "DESC"},
        verify=ca,
    ).json()
    body = requests.post(
        url,
        json={"filter": {">ID": 5, "<=ID": 8}, "select": ["ID", "TITLE"], "order": {"ID": "DESC"}},
        verify=ca,
    ).json()
    query = requests.get(
        url + "?filter%5B%3EID%5D=5&filter%5B%3C%3DID%5D=8&select%5B0%5D=ID&select%5B1%5D=TITLE"
        "&order%5BID%5D=DESC",
        verify=ca,
    ).json()
    assert [r["ID"] for r in form["result"]] == ["8", "7", "6"]
    assert form["result"] == body["result"] == query["result"]
    assert set(form["result"][0]) == {"ID", "TITLE"}


def test_success_envelope_has_result_next_total_and_the_full_time_block(sandbox):
    page = hook_call(sandbox, "crm.deal.list").json()
    assert len(page["result"]) == 50 and page["next"] == 50 and page["total"] == 120
    assert set(page["time"]) == TIME_FIELDS
    assert page["time"]["finish"] >= page["time"]["start"]
    single = hook_call(sandbox, "server.time").json()
    assert "next" not in single and "total" not in single and set(single["time"]) == TIME_FIELDS


def test_error_statuses_follow_the_documentation(sandbox):
    pair = issue(sandbox)
    base = sandbox.portal(1)["client_endpoint"]
    ca = sandbox.ca_bundle
    cases = [
        (
            requests.post(base + "no.such.method", json={"auth": pair["access_token"]}, verify=ca),
            404,
            "ERROR_METHOD_NOT_FOUND",
        ),
        (requests.post(base + "crm.deal.get", json={"id": 1}, verify=ca), 401, "NO_AUTH_FOUND"),
        (
            requests.post(base + "crm.deal.get", json={"auth": "0" * 70, "id": 1}, verify=ca),
            401,
            "invalid_token",
        ),
        (hook_call(sandbox, "crm.deal.get", id=99999), 400, ""),
        (hook_call(sandbox, "crm.deal.get"), 400, ""),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"] == code
    assert hook_call(sandbox, "crm.deal.get", id=99999).json()["error_description"] == "Not found"


def test_insufficient_scope_and_access_denied_are_403(sandbox):
    limited = sandbox.control("webhook", member_id=member(sandbox), user_id=1, scope=["user"])
    denied = requests.post(limited["url"] + "crm.deal.list", json={}, verify=sandbox.ca_bundle)
    assert denied.status_code == 403 and denied.json()["error"] == "insufficient_scope"
    employee = sandbox.control("webhook", member_id=member(sandbox), user_id=2)
    admin_only = requests.post(
        employee["url"] + "user.get", json={"ADMIN_MODE": True}, verify=sandbox.ca_bundle
    )
    assert admin_only.status_code == 403 and admin_only.json()["error"] == "ACCESS_DENIED"


def test_wrong_webhook_secret_is_refused(sandbox):
    url = webhook(sandbox).rsplit("/", 2)[0] + "/wrongsecret/profile"
    answer = requests.get(url, verify=sandbox.ca_bundle)
    assert answer.status_code == 403 and answer.json()["error"] == "INVALID_CREDENTIALS"


def test_overload_limit_and_portal_deleted(sandbox):
    sandbox.control("faults", member_id=member(sandbox), kind="overload", count=1)
    overloaded = hook_call(sandbox, "profile")
    assert overloaded.status_code == 503 and overloaded.json()["error"] == "OVERLOAD_LIMIT"
    assert hook_call(sandbox, "profile").status_code == 200
    sandbox.control("portal/delete", member_id=member(sandbox))
    deleted = hook_call(sandbox, "profile")
    assert deleted.status_code == 500 and deleted.json()["error"] == "PORTAL_DELETED"
    assert hook_call(sandbox, "profile", portal=2).status_code == 200


def test_requests_longer_than_the_cut_off_are_cut(sandbox):
    sandbox.control("config", request_timeout=0.3)
    sandbox.control("config", cost={"per_call": 1.0, "scale": 1.0})
    cut = hook_call(sandbox, "profile")
    assert cut.status_code == 504
    assert sandbox.counters()["answers"]["by_code"]["TIMEOUT"] == 1
