"""The sandbox's REST 3.0 against protocol §11 (RD api-reference/rest-v3.md), point by point,
over real HTTPS to the sandbox process."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate

from sandbox.testing import SandboxServer
from tests.sandbox.helpers import issue, member, webhook

V3 = "BITRIX_REST_V3_EXCEPTION_"


def api(sandbox: SandboxServer, portal: int = 1, hook: str | None = None) -> str:
    """The portal's 3.0 webhook address: /rest/api/<user>/<secret>/."""
    return (hook or webhook(sandbox, portal)).replace("/rest/", "/rest/api/", 1)


def app_api(sandbox: SandboxServer, portal: int = 1) -> str:
    return sandbox.portal(portal)["client_endpoint"].replace("/rest/", "/rest/api/", 1)


def v3(
    sandbox: SandboxServer, method: str, body: Any = None, *, hook: str | None = None, **headers: str
) -> requests.Response:
    return requests.post(
        api(sandbox, hook=hook) + method,
        json={} if body is None else body,
        headers=headers,
        verify=sandbox.ca_bundle,
        timeout=30,
    )


def add(sandbox: SandboxServer, title: str = "Report", responsible: int = 2, **extra: Any) -> dict[str, Any]:
    answer = v3(
        sandbox,
        "tasks.task.add",
        {"fields": {"title": title, "creatorId": 1, "responsibleId": responsible, **extra}},
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["result"]["item"])


def error(answer: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert "result" not in body
    assert body["error"]["code"] == code and body["error"]["message"]
    return dict(body["error"])


def v3_state(sandbox: SandboxServer, portal: int = 1) -> dict[str, Any]:
    answer = requests.get(
        sandbox.state["control_url"] + "rest_v3/state",
        params={"member_id": member(sandbox, portal)},
        timeout=10,
    )
    return dict(answer.json())


def hook_of(sandbox: SandboxServer, user_id: int, scope: list[str] | None = None) -> str:
    extra: dict[str, Any] = {"scope": scope} if scope else {}
    return str(sandbox.control("webhook", member_id=member(sandbox), user_id=user_id, **extra)["url"])


# --- addresses and bodies ---------------------------------------------------------------------


def test_webhooks_and_apps_have_their_addresses(sandbox) -> None:
    created = add(sandbox)
    token = issue(sandbox)["access_token"]
    answer = requests.post(
        app_api(sandbox) + "tasks.task.get",
        json={"id": created["id"], "auth": token},
        verify=sandbox.ca_bundle,
        timeout=30,
    )
    assert answer.status_code == 200 and answer.json()["result"]["item"]["title"] == "Report"


def test_nothing_is_read_from_the_query_string(sandbox) -> None:
    created = add(sandbox)
    token = issue(sandbox)["access_token"]
    no_auth = requests.post(
        app_api(sandbox) + "tasks.task.get",
        params={"auth": token},
        json={"id": created["id"]},
        verify=sandbox.ca_bundle,
        timeout=30,
    )
    error(no_auth, 401, "NO_AUTH_FOUND")
    # The documented example: GET tasks.task.get?id=51 is a validation error, id not given.
    got = requests.get(
        api(sandbox) + "tasks.task.get", params={"id": created["id"]}, verify=sandbox.ca_bundle, timeout=30
    )
    refused = error(got, 400, V3 + "VALIDATION_REQUESTVALIDATIONEXCEPTION")
    assert refused["validation"] == [{"field": "id", "message": "Required field `id` is missing"}]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("id=1", "application/x-www-form-urlencoded"), ('{"id": 1', "application/json"), ("[1]", "text/plain")],
)
def test_only_json_bodies(sandbox, body, content_type) -> None:
    answer = requests.post(
        api(sandbox) + "tasks.task.get",
        data=body,
        headers={"Content-Type": content_type},
        verify=sandbox.ca_bundle,
        timeout=30,
    )
    error(answer, 400, V3 + "INVALIDJSONEXCEPTION")


def test_versions_do_not_mix(sandbox) -> None:
    # A 3.0-only method on the old address; the old CRM (not migrated) on the 3.0 address.
    for method in ("tasks.task.add", "rest.scope.list", "rest.documentation.openapi"):
        old = requests.post(webhook(sandbox) + method, json={}, verify=sandbox.ca_bundle, timeout=30)
        assert old.status_code == 404 and old.json()["error"] == "ERROR_METHOD_NOT_FOUND"
    error(v3(sandbox, "crm.deal.get", {"id": 1}), 404, "ERROR_METHOD_NOT_FOUND")
    error(v3(sandbox, "crm.deal.list"), 404, "ERROR_METHOD_NOT_FOUND")


# --- shapes ---------------------------------------------------------------------------------


def test_success_shapes_item_items_and_result_with_time(sandbox) -> None:
    created = add(sandbox, deadline="2026-12-31T23:59:59+02:00")
    assert created["deadline"] == "2027-01-01T00:59:59+03:00"  # the portal's offset
    get = v3(sandbox, "tasks.task.get", {"id": created["id"]}).json()
    listed = v3(sandbox, "tasks.task.list").json()
    updated = v3(
        sandbox, "tasks.task.update", {"id": created["id"], "fields": {"status": "in_progress"}}
    ).json()
    for body in (get, listed, updated):
        assert set(body) == {"result", "time"}
        assert {"start", "finish", "duration", "processing", "operating", "operating_reset_at"} <= set(
            body["time"]
        )
    assert get["result"]["item"]["status"] == "pending"
    assert "responsible" not in get["result"]["item"]  # the basic set has no related objects
    assert listed["result"] == {"items": [{"id": created["id"]}]}  # list without select: ids only
    assert updated["result"] == {"result": True}
    after = v3(sandbox, "tasks.task.get", {"id": created["id"], "select": ["status", "started"]}).json()
    assert after["result"]["item"]["status"] == "in_progress" and after["result"]["item"]["started"]
    deleted = v3(sandbox, "tasks.task.delete", {"id": created["id"]}).json()
    assert deleted["result"] == {"result": True}
    error(v3(sandbox, "tasks.task.get", {"id": created["id"]}), 400, V3 + "ENTITYNOTFOUNDEXCEPTION")


def test_documented_errors(sandbox) -> None:
    created = add(sandbox)
    missing = error(
        v3(sandbox, "tasks.task.add", {"fields": {"creatorId": 1, "responsibleId": 1}}),
        400,
        V3 + "VALIDATION_REQUESTVALIDATIONEXCEPTION",
    )
    assert missing["validation"][0]["field"] == "title"
    typed = error(
        v3(sandbox, "tasks.task.get", {"id": "7"}), 400, V3 + "VALIDATION_REQUESTVALIDATIONEXCEPTION"
    )
    assert typed["validation"][0] == {
        "field": "id",
        "message": "Field `id` requires data type `int` for this request",
    }
    frozen = error(
        v3(sandbox, "tasks.task.update", {"id": created["id"], "fields": {"creatorId": 2}}),
        400,
        V3 + "VALIDATION_REQUESTVALIDATIONEXCEPTION",
    )
    assert "Editable" in frozen["validation"][0]["message"]
    nobody = error(
        v3(sandbox, "tasks.task.add", {"fields": {"title": "x", "creatorId": 1, "responsibleId": 999}}),
        400,
        V3 + "VALIDATION_REQUESTVALIDATIONEXCEPTION",
    )
    assert nobody["validation"][0]["field"] == "responsibleId"
    unknown = error(
        v3(
            sandbox,
            "tasks.task.add",
            {"fields": {"title": "x", "creatorId": 1, "responsibleId": 1, "colour": 1}},
        ),
        400,
        V3 + "UNKNOWNDTOPROPERTYEXCEPTION",
    )
    assert "colour" in unknown["message"]
    error(v3(sandbox, "tasks.task.get", {"id": 10_000}), 400, V3 + "ENTITYNOTFOUNDEXCEPTION")
    # Update and delete of a task that isn't there: "no access to the task or it does not exist".
    error(
        v3(sandbox, "tasks.task.update", {"id": 10_000, "fields": {"title": "y"}}),
        403,
        V3 + "ACCESSDENIEDEXCEPTION",
    )
    error(v3(sandbox, "tasks.task.delete", {"id": 10_000}), 403, V3 + "ACCESSDENIEDEXCEPTION")


def test_access_denied_and_insufficient_scope(sandbox) -> None:
    mine = add(sandbox, responsible=2)
    outsider = hook_of(sandbox, user_id=3)
    error(v3(sandbox, "tasks.task.get", {"id": mine["id"]}, hook=outsider), 403, V3 + "ACCESSDENIEDEXCEPTION")
    error(
        v3(sandbox, "tasks.task.delete", {"id": mine["id"]}, hook=outsider), 403, V3 + "ACCESSDENIEDEXCEPTION"
    )
    assert v3(sandbox, "tasks.task.list", hook=outsider).json()["result"]["items"] == []
    assignee = hook_of(sandbox, user_id=2)
    assert v3(sandbox, "tasks.task.get", {"id": mine["id"]}, hook=assignee).status_code == 200
    crm_only = hook_of(sandbox, user_id=1, scope=["crm"])
    error(
        v3(sandbox, "tasks.task.get", {"id": mine["id"]}, hook=crm_only),
        403,
        V3 + "INSUFFICIENTSCOPEEXCEPTION",
    )
    # The documentation's deprecated alias of the scope opens the methods too.
    alias = hook_of(sandbox, user_id=1, scope=["tasks"])
    assert v3(sandbox, "tasks.task.get", {"id": mine["id"]}, hook=alias).status_code == 200


# --- select, filter, order, paging ---------------------------------------------------------


def test_select_with_related_fields(sandbox) -> None:
    created = add(sandbox, responsible=2)
    body = v3(
        sandbox,
        "tasks.task.get",
        {
            "id": created["id"],
            "select": ["id", "title", "responsible.name", "responsible.email", "creator", "stageIdd"],
        },
    ).json()
    item = body["result"]["item"]
    assert set(item) == {"id", "title", "responsible", "creator"}  # an unknown own field is left out
    assert set(item["responsible"]) == {"name", "email"} and item["responsible"]["email"].endswith(
        "@example.com"
    )
    assert item["creator"]["id"] == 1 and item["creator"]["name"]
    unknown = error(
        v3(sandbox, "tasks.task.get", {"id": created["id"], "select": ["responsible.stageId"]}),
        400,
        V3 + "UNKNOWNDTOPROPERTYEXCEPTION",
    )
    assert unknown["message"] == "Unknown field `stageId` for entity `UserDto`"
    error(
        v3(sandbox, "tasks.task.get", {"id": created["id"], "select": "title"}),
        400,
        V3 + "INVALIDSELECTEXCEPTION",
    )


def ids(sandbox: SandboxServer, **body: Any) -> list[int]:
    answer = v3(sandbox, "tasks.task.list", {"pagination": {"limit": 1000}, **body})
    assert answer.status_code == 200, answer.text
    return [row["id"] for row in answer.json()["result"]["items"]]


def test_filter_grammar(sandbox) -> None:
    sandbox.control("rest_v3/tasks/seed", member_id=member(sandbox), tasks=12)
    assert ids(sandbox, filter=[["id", "=", 3]]) == [3]
    assert ids(sandbox, filter=[["id", "!=", 3], ["id", "<=", 5]]) == [1, 2, 4, 5]
    assert ids(sandbox, filter=[["id", ">", 10]]) == [11, 12]
    assert ids(sandbox, filter=[["id", ">=", 11]]) == [11, 12]
    assert ids(sandbox, filter=[["id", "<", 3]]) == [1, 2]
    assert ids(sandbox, filter=[["id", "in", [2, 9, 40]]]) == [2, 9]
    assert ids(sandbox, filter=[["id", "between", [4, 6]]]) == [4, 5, 6]
    assert ids(sandbox, filter=[["id", [7, 8]]]) == [7, 8]  # shorthand for in
    assert ids(sandbox, filter=[["id", 7]]) == [7]  # shorthand for =
    either = {"logic": "or", "conditions": [["id", [1, 2]], ["id", "in", [11, 12]]]}
    assert ids(sandbox, filter=[either]) == [1, 2, 11, 12]
    assert ids(sandbox, filter=[["id", "<", 12], either]) == [1, 2, 11]  # AND across levels
    error(
        v3(sandbox, "tasks.task.list", {"filter": [["id", "like", 1]]}),
        400,
        V3 + "UNKNOWNFILTEROPERATOREXCEPTION",
    )
    error(
        v3(sandbox, "tasks.task.list", {"filter": [["colour", "=", 1]]}),
        400,
        V3 + "UNKNOWNDTOPROPERTYEXCEPTION",
    )
    not_filterable = error(
        v3(sandbox, "tasks.task.list", {"filter": [["status", "=", "pending"]]}),
        400,
        V3 + "VALIDATION_REQUESTVALIDATIONEXCEPTION",
    )
    assert "Filterable" in not_filterable["validation"][0]["message"]
    error(
        v3(sandbox, "tasks.task.list", {"filter": [["id", ">", "five"]]}),
        400,
        V3 + "VALIDATION_REQUESTVALIDATIONEXCEPTION",
    )
    error(v3(sandbox, "tasks.task.list", {"filter": {"id": 1}}), 400, V3 + "INVALIDFILTEREXCEPTION")


def test_order_and_paging(sandbox) -> None:
    sandbox.control("rest_v3/tasks/seed", member_id=member(sandbox), tasks=60)
    assert ids(sandbox, order={"id": "DESC"})[:3] == [60, 59, 58]
    titles = v3(
        sandbox,
        "tasks.task.list",
        {"select": ["title"], "order": {"title": "ASC"}, "pagination": {"limit": 3}},
    ).json()["result"]["items"]
    assert [t["title"] for t in titles] == ["Task 1", "Task 10", "Task 11"]
    assert ids(sandbox, pagination={"page": 2, "limit": 7}) == list(range(8, 15))
    assert ids(sandbox, pagination={"offset": 25, "limit": 50}) == list(range(26, 61))
    assert len(v3(sandbox, "tasks.task.list").json()["result"]["items"]) == 50  # the default limit
    for bad in ({"limit": 0}, {"limit": "abc"}, {"page": 0}, "all"):
        error(v3(sandbox, "tasks.task.list", {"pagination": bad}), 400, V3 + "INVALIDPAGINATIONEXCEPTION")
    for bad in ({"status": "UP"}, {"description": "ASC"}, ["id"]):
        error(v3(sandbox, "tasks.task.list", {"order": bad}), 400, V3 + "INVALIDORDEREXCEPTION")


# --- batch, documentation, scopes ----------------------------------------------------------------


def test_batch_in_its_3_0_form(sandbox) -> None:
    first, second = add(sandbox, "one"), add(sandbox, "two")
    answer = v3(
        sandbox,
        "batch",
        [
            {"method": "tasks.task.get", "query": {"id": second["id"], "select": ["title"]}},
            {"method": "tasks.task.get", "query": {"id": 9_999}},
            {"method": "crm.deal.get", "query": {"id": 1}},
            {"method": "tasks.task.get", "query": {"id": first["id"], "select": ["title"]}},
        ],
    )
    assert answer.status_code == 200 and "time" in answer.json()
    results = answer.json()["result"]
    assert results[0] == {"item": {"title": "two"}} and results[3] == {"item": {"title": "one"}}
    assert results[1]["error"]["code"] == V3 + "ENTITYNOTFOUNDEXCEPTION"
    assert results[2]["error"]["code"] == "ERROR_METHOD_NOT_FOUND"
    old_form = v3(sandbox, "batch", {"cmd": {"a": f"tasks.task.get?id={first['id']}"}})
    error(old_form, 400, V3 + "INVALIDSELECTEXCEPTION")
    too_long = [{"method": "tasks.task.get", "query": {"id": 1}}] * 51
    error(v3(sandbox, "batch", too_long), 400, "ERROR_BATCH_LENGTH_EXCEEDED")


def test_an_app_sends_its_batch_with_a_bearer_token(sandbox) -> None:
    created = add(sandbox)
    token = issue(sandbox)["access_token"]
    calls = [{"method": "tasks.task.get", "query": {"id": created["id"], "select": ["id"]}}]
    answer = requests.post(
        app_api(sandbox) + "batch",
        json=calls,
        headers={"Authorization": f"Bearer {token}"},
        verify=sandbox.ca_bundle,
        timeout=30,
    )
    assert answer.json()["result"] == [{"item": {"id": created["id"]}}]
    anonymous = requests.post(app_api(sandbox) + "batch", json=calls, verify=sandbox.ca_bundle, timeout=30)
    error(anonymous, 401, "NO_AUTH_FOUND")


def test_openapi_document_of_the_served_methods(sandbox) -> None:
    posted = v3(sandbox, "rest.documentation.openapi").json()
    got = requests.get(api(sandbox) + "documentation", verify=sandbox.ca_bundle, timeout=30).json()
    assert posted == got
    validate(posted)  # a valid OpenAPI 3.0 document
    assert posted["info"]["title"] == "Bitrix24 REST V3 API"
    paths = set(posted["paths"])
    assert {f"/tasks.task.{verb}" for verb in ("add", "update", "get", "list", "delete")} <= paths
    assert "/batch" in paths and not any(p.startswith("/crm.") for p in paths)
    task = posted["components"]["schemas"]["TaskDto"]["properties"]
    assert task["id"]["x-filterable"] and not task["title"].get("x-filterable")
    assert task["responsible"] == {"$ref": "#/components/schemas/UserDto"}


def test_scope_list_maps_methods_to_scopes(sandbox) -> None:
    answer = requests.get(api(sandbox) + "rest.scope.list", verify=sandbox.ca_bundle, timeout=30)
    scopes = {row["method"]: row["scope"] for row in answer.json()["result"]["items"]}
    assert scopes["tasks.task.add"] == "task" and scopes["crm.deal.list"] == "crm"


# --- Idempotency-Key ----------------------------------------------------------------------------


def test_a_repeat_with_the_same_key_and_body_is_replayed(sandbox) -> None:
    body = {"fields": {"title": "once", "creatorId": 1, "responsibleId": 2}}
    first = v3(sandbox, "tasks.task.add", body, **{"Idempotency-Key": "order-17"})
    again = v3(sandbox, "tasks.task.add", body, **{"Idempotency-Key": "order-17"})
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()  # the stored answer, time block included
    assert first.headers["Idempotency-Key"] == again.headers["Idempotency-Key"] == "order-17"
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    state = v3_state(sandbox)
    assert state["tasks"] == 1 and state["idempotency"]["replayed"] == 1
    other = dict(body, fields={**body["fields"], "title": "twice"})
    error(
        v3(sandbox, "tasks.task.add", other, **{"Idempotency-Key": "order-17"}),
        422,
        V3 + "IDEMPOTENCYKEYREUSEDEXCEPTION",
    )
    assert v3_state(sandbox)["tasks"] == 1


@pytest.mark.parametrize("key", ["k" * 256, "clé"])
def test_a_malformed_key_is_refused(sandbox, key) -> None:
    body = {"fields": {"title": "x", "creatorId": 1, "responsibleId": 1}}
    answer = requests.post(
        api(sandbox) + "tasks.task.add",
        json=body,
        headers={"Idempotency-Key": key.encode("latin-1")},
        verify=sandbox.ca_bundle,
        timeout=30,
    )
    error(answer, 400, V3 + "INVALIDIDEMPOTENCYKEYEXCEPTION")
    assert v3_state(sandbox)["tasks"] == 0
    # Reads ignore the header.
    assert v3(sandbox, "tasks.task.list", **{"Idempotency-Key": "k" * 256}).status_code == 200


def test_keys_are_scoped_per_caller_user_and_method(sandbox) -> None:
    body = {"fields": {"title": "x", "creatorId": 1, "responsibleId": 2}}
    v3(sandbox, "tasks.task.add", body, **{"Idempotency-Key": "same"})
    v3(sandbox, "tasks.task.add", body, hook=hook_of(sandbox, user_id=2), **{"Idempotency-Key": "same"})
    token = issue(sandbox)["access_token"]
    requests.post(
        app_api(sandbox) + "tasks.task.add",
        json={**body, "auth": token},
        headers={"Idempotency-Key": "same"},
        verify=sandbox.ca_bundle,
        timeout=30,
    )
    assert v3_state(sandbox)["tasks"] == 3  # admin's webhook, user 2's webhook, the app
    # Another method with the same key is another call.
    updated = v3(
        sandbox, "tasks.task.update", {"id": 1, "fields": {"title": "y"}}, **{"Idempotency-Key": "same"}
    )
    assert updated.status_code == 200 and "Idempotent-Replayed" not in updated.headers


def test_errors_are_not_stored_and_answers_expire_after_a_day(sandbox) -> None:
    body = {"fields": {"title": "child", "creatorId": 1, "responsibleId": 1, "parentId": 1}}
    error(
        v3(sandbox, "tasks.task.add", body, **{"Idempotency-Key": "child"}),
        400,
        V3 + "VALIDATION_REQUESTVALIDATIONEXCEPTION",
    )
    add(sandbox, "parent")  # now task 1 exists: the same call succeeds when repeated
    ran = v3(sandbox, "tasks.task.add", body, **{"Idempotency-Key": "child"})
    assert ran.status_code == 200 and "Idempotent-Replayed" not in ran.headers
    assert (
        v3(sandbox, "tasks.task.add", body, **{"Idempotency-Key": "child"}).headers["Idempotent-Replayed"]
        == "true"
    )
    sandbox.control("clock", advance=24 * 3600 + 1)
    later = v3(sandbox, "tasks.task.add", body, **{"Idempotency-Key": "child"})
    assert later.status_code == 200 and "Idempotent-Replayed" not in later.headers
    assert v3_state(sandbox)["tasks"] == 3


def test_two_simultaneous_requests_with_one_key_may_both_run(sandbox) -> None:
    sandbox.control("faults", member_id=member(sandbox), kind="latency", delay=0.5, count=2)
    body = {"fields": {"title": "raced", "creatorId": 1, "responsibleId": 1}}
    answers: list[requests.Response] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(v3(sandbox, "tasks.task.add", body, **{"Idempotency-Key": "race"}))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [200, 200]
    state = v3_state(sandbox)
    assert state["tasks"] == 2 and state["idempotency"]["overlapping"] == 1


def test_the_header_is_ignored_on_the_old_address(sandbox) -> None:
    deals = [
        requests.post(
            webhook(sandbox) + "crm.deal.add",
            json={"fields": {"TITLE": "twice"}},
            headers={"Idempotency-Key": "old"},
            verify=sandbox.ca_bundle,
            timeout=30,
        ).json()["result"]
        for _ in range(2)
    ]
    assert deals[0] != deals[1]


# --- limits and faults ---------------------------------------------------------------------------


def test_the_same_bucket_and_operating_limit_as_the_old_rest(sandbox) -> None:
    sandbox.control("config", drain=0.001, burst=3)
    requests.post(webhook(sandbox) + "profile", json={}, verify=sandbox.ca_bundle, timeout=30)
    for _ in range(2):
        assert v3(sandbox, "tasks.task.list").status_code == 200
    error(v3(sandbox, "tasks.task.list"), 503, "QUERY_LIMIT_EXCEEDED")  # the old call counted too
    sandbox.control("config", drain=None, burst=None, operating_limit=0.0001)
    error(v3(sandbox, "tasks.task.list"), 429, "OPERATION_TIME_LIMIT")  # its two calls passed it
    # Per method: the first call of another one completes (and crosses the limit), the next is refused.
    assert v3(sandbox, "rest.scope.list").status_code == 200
    error(v3(sandbox, "rest.scope.list"), 429, "OPERATION_TIME_LIMIT")
    batched = v3(sandbox, "batch", [{"method": "tasks.task.list", "query": {}}]).json()["result"]
    assert batched[0]["error"]["code"] == "OPERATION_TIME_LIMIT"


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("query_limit", 503, "QUERY_LIMIT_EXCEEDED"),
        ("overload", 503, "OVERLOAD_LIMIT"),
        ("deleted", 500, "PORTAL_DELETED"),
    ],
)
def test_faults_reach_rest_v3(sandbox, kind, status, code) -> None:
    sandbox.control("faults", member_id=member(sandbox), kind=kind, count=1)
    error(v3(sandbox, "tasks.task.list"), status, code)
    assert v3(sandbox, "tasks.task.list").status_code == 200


def test_a_write_whose_answer_is_lost_ran_and_its_retry_is_replayed(sandbox) -> None:
    sandbox.control("faults", member_id=member(sandbox), kind="drop_after", replays=False)
    body = {"fields": {"title": "lost", "creatorId": 1, "responsibleId": 1}}
    with pytest.raises(requests.ConnectionError):
        v3(sandbox, "tasks.task.add", body, **{"Idempotency-Key": "lost-1"})
    assert v3_state(sandbox)["tasks"] == 1  # it ran
    retry = v3(sandbox, "tasks.task.add", body, **{"Idempotency-Key": "lost-1"})
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["result"]["item"]["title"] == "lost"
    assert v3_state(sandbox)["tasks"] == 1
    sandbox.control("faults/clear")
    sandbox.control("faults", member_id=member(sandbox), kind="drop_before", count=1)
    with pytest.raises(requests.ConnectionError):
        v3(sandbox, "tasks.task.add", body, **{"Idempotency-Key": "lost-2"})
    assert v3_state(sandbox)["tasks"] == 1  # dropped before it ran
