"""Methods apps use that the sandbox lacked, on the wire, against their official pages: app.option.*,
crm.item.*, crm.type.list, crm.currency.base.set and localizations, user.add/update/search/access,
department.fields/add/update/delete, method.get and im.notify.system.add. They go through the same
bucket, operating-time ledger, faults and batch as every method."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
import requests

from tests.sandbox.helpers import app_call, hook_call, issue, member


def result(answer: requests.Response):
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def error(answer: requests.Response, status: int) -> tuple[str, str]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    return body["error"], body["error_description"]


# --- app.option ----------------------------------------------------------------------------------


def test_app_options_are_kept_per_app_and_survive_a_reinstall(sandbox):
    admin = issue(sandbox)["access_token"]
    assert result(app_call(sandbox, "app.option.get", admin)) == {}
    assert result(app_call(sandbox, "app.option.set", admin, options={"mode": "fast", "n": 3})) is True
    assert result(app_call(sandbox, "app.option.get", admin, option="mode")) == "fast"
    assert result(app_call(sandbox, "app.option.get", admin, option="missing")) is None
    assert result(app_call(sandbox, "app.option.get", admin)) == {"mode": "fast", "n": 3}
    ordinary = issue(sandbox, user_id=2)["access_token"]
    assert result(app_call(sandbox, "app.option.get", ordinary, option="n")) == 3
    refused = app_call(sandbox, "app.option.set", ordinary, options={"mode": "slow"})
    assert error(refused, 400) == ("AccessException", "Administrator authorization required")
    assert error(app_call(sandbox, "app.option.set", admin, options={}), 400)[0] == "ArgumentNullException"
    assert error(hook_call(sandbox, "app.option.get"), 400) == (
        "AccessException",
        "Application context required",
    )
    local = sandbox.control("app/local", member_id=member(sandbox))
    other = sandbox.control("oauth/issue", member_id=member(sandbox), client_id=local["client_id"])
    assert result(app_call(sandbox, "app.option.get", other["access_token"])) == {}
    sandbox.control("app/uninstall", member_id=member(sandbox))
    sandbox.control("app/install", member_id=member(sandbox))
    again = issue(sandbox)["access_token"]
    assert result(app_call(sandbox, "app.option.get", again, option="mode")) == "fast"


# --- crm.item.* ----------------------------------------------------------------------------------


def test_crm_item_add_get_update_list_delete_over_the_same_rows(sandbox):
    added = result(
        hook_call(
            sandbox,
            "crm.item.add",
            entityTypeId=2,
            fields={"title": "Universal", "opportunity": 12.5, "contactIds": [2, 3], "noSuchField": 1},
        )
    )["item"]
    item_id = added["id"]
    assert isinstance(item_id, int) and added["title"] == "Universal" and added["opportunity"] == 12.5
    assert added["entityTypeId"] == 2 and added["contactIds"] == [2, 3] and added["stageId"] == "NEW"
    assert isinstance(added["createdBy"], int) and added["createdTime"].endswith("+03:00")
    assert "noSuchField" not in added
    assert result(hook_call(sandbox, "crm.deal.get", id=item_id))["TITLE"] == "Universal"
    updated = result(
        hook_call(sandbox, "crm.item.update", entityTypeId=2, id=item_id, fields={"stageId": "WON"})
    )
    assert updated["item"]["stageId"] == "WON" and updated["item"]["stageSemanticId"] == "S"
    page = hook_call(
        sandbox,
        "crm.item.list",
        entityTypeId=2,
        filter={">=id": item_id},
        select=["id", "title"],
        order={"id": "DESC"},
    ).json()
    assert page["result"]["items"] == [{"id": item_id, "title": "Universal", "entityTypeId": 2}]
    assert page["total"] == 1
    assert result(hook_call(sandbox, "crm.item.delete", entityTypeId=2, id=item_id)) == []
    gone = hook_call(sandbox, "crm.item.get", entityTypeId=2, id=item_id)
    assert error(gone, 400) == ("NOT_FOUND", "Element not found")
    assert error(hook_call(sandbox, "crm.item.delete", entityTypeId=2, id=item_id), 400)[0] == "NOT_FOUND"


def test_crm_item_list_pages_and_communications(sandbox):
    first = hook_call(sandbox, "crm.item.list", entityTypeId=2).json()
    assert len(first["result"]["items"]) == 50 and first["next"] == 50 and first["total"] == 120
    assert all(isinstance(i["id"], int) for i in first["result"]["items"])
    fm = [{"typeId": "EMAIL", "valueType": "WORK", "value": "a@example.com"}]
    contact = result(hook_call(sandbox, "crm.item.add", entityTypeId=3, fields={"name": "Ann", "fm": fm}))[
        "item"
    ]
    assert contact["fm"][0]["value"] == "a@example.com" and contact["hasEmail"] == "Y"
    assert (
        result(hook_call(sandbox, "crm.contact.get", id=contact["id"]))["EMAIL"][0]["VALUE"]
        == "a@example.com"
    )
    listed = result(
        hook_call(sandbox, "crm.item.list", entityTypeId=3, filter={"id": contact["id"]}, select=["*"])
    )
    assert listed["items"][0]["fm"] == contact["fm"]


def test_crm_item_errors_are_documented_ones(sandbox):
    assert error(hook_call(sandbox, "crm.item.list", entityTypeId=1038), 400) == (
        "NOT_FOUND",
        "Smart process not found",
    )
    bad_field = hook_call(sandbox, "crm.item.list", entityTypeId=2, filter={"nope": 1})
    assert error(bad_field, 400) == (
        "INVALID_ARG_VALUE",
        "Invalid filter: field 'nope' is not allowed in filter",
    )
    bad_order = hook_call(sandbox, "crm.item.list", entityTypeId=2, order={"id": "UP"})
    assert error(bad_order, 400)[1].startswith("Invalid order: allowed sort directions are ASC, DESC")
    limited = sandbox.control("webhook", member_id=member(sandbox), scope=["user"])
    refused = requests.post(
        limited["url"] + "crm.item.get",
        json={"entityTypeId": 2, "id": 1},
        verify=sandbox.ca_bundle,
        timeout=10,
    )
    assert error(refused, 403)[0] == "insufficient_scope"


def test_crm_item_fields_are_the_entity_fields_renamed(sandbox):
    fields = result(hook_call(sandbox, "crm.item.fields", entityTypeId=2))["fields"]
    assert fields["stageId"]["upperName"] == "STAGE_ID" and fields["stageId"]["type"] == "crm_status"
    assert fields["opened"]["type"] == "boolean" and fields["createdTime"]["upperName"] == "DATE_CREATE"
    assert fields["contactIds"]["isMultiple"] is True
    lead = result(hook_call(sandbox, "crm.item.fields", entityTypeId=1))["fields"]
    assert lead["stageId"]["upperName"] == "STATUS_ID"


def test_crm_item_add_fires_the_entity_event(sandbox):
    hook_call(sandbox, "crm.item.add", entityTypeId=4, fields={"title": "Evented"})
    assert sandbox.counters()["writes"][member(sandbox)]["crm.item.add"] == 1


# --- crm.type.list and currencies ----------------------------------------------------------------


def test_crm_type_list_has_no_smart_processes_on_a_fresh_portal(sandbox):
    answer = hook_call(sandbox, "crm.type.list", order={"id": "DESC"}).json()
    assert answer["result"] == {"types": []} and answer["total"] == 0
    ordinary = issue(sandbox, user_id=2)["access_token"]
    assert error(app_call(sandbox, "crm.type.list", ordinary), 400) == ("ACCESS_DENIED", "Access denied")


def test_currency_base_set_and_localizations(sandbox):
    assert result(hook_call(sandbox, "crm.currency.base.set", id="EUR")) is True
    assert result(hook_call(sandbox, "crm.currency.base.get")) == "EUR"
    assert result(hook_call(sandbox, "crm.currency.get", id="USD"))["BASE"] == "N"
    assert result(hook_call(sandbox, "crm.currency.base.set", id="XXX")) is False
    assert (
        error(hook_call(sandbox, "crm.currency.base.set"), 400)[1]
        == "The parameter id is invalid or not defined."
    )
    german = {"de": {"FULL_NAME": "Euro (de)", "FORMAT_STRING": "# €", "DECIMALS": 2}}
    assert (
        result(hook_call(sandbox, "crm.currency.localizations.set", id="EUR", localizations=german)) is True
    )
    got = result(hook_call(sandbox, "crm.currency.localizations.get", id="EUR"))
    assert set(got) == {"en", "de"} and got["de"]["FULL_NAME"] == "Euro (de)" and got["de"]["DECIMALS"] == "2"
    assert result(hook_call(sandbox, "crm.currency.localizations.delete", id="EUR", lids=["de"])) is True
    assert result(hook_call(sandbox, "crm.currency.localizations.delete", id="EUR", lids=["de"])) is False
    assert set(result(hook_call(sandbox, "crm.currency.localizations.get", id="EUR"))) == {"en"}
    # Each portal keeps its own localizations.
    assert set(result(hook_call(sandbox, "crm.currency.localizations.get", portal=2, id="EUR"))) == {"en"}
    ordinary = issue(sandbox, user_id=2)["access_token"]
    assert error(app_call(sandbox, "crm.currency.base.set", ordinary, id="USD"), 400) == (
        "",
        "Access denied.",
    )


# --- users ---------------------------------------------------------------------------------------


def test_user_add_update_and_search(sandbox):
    new_id = result(
        hook_call(sandbox, "user.add", EMAIL="new.hire@example.com", NAME="Nora", UF_DEPARTMENT=[3])
    )
    assert isinstance(new_id, int)
    again = hook_call(sandbox, "user.add", EMAIL="NEW.HIRE@example.com")
    assert error(again, 400) == ("ERROR_ARGUMENT", "A user with this email already exists")
    assert error(hook_call(sandbox, "user.add", EMAIL="not-an-email"), 400) == (
        "ERROR_ARGUMENT",
        "wrong_email",
    )
    assert result(hook_call(sandbox, "user.update", ID=new_id, WORK_POSITION="Analyst", ACTIVE="N")) is True
    user = result(hook_call(sandbox, "user.get", ID=new_id))[0]
    assert user["NAME"] == "Nora" and user["WORK_POSITION"] == "Analyst" and user["ACTIVE"] is False
    assert user["UF_DEPARTMENT"] == [3]
    assert error(hook_call(sandbox, "user.update", ID=9999), 400) == ("ERROR_CORE", "access_denied")
    by_department = result(hook_call(sandbox, "user.search", FILTER={"UF_DEPARTMENT_NAME": "market"}))
    assert new_id in [int(u["ID"]) for u in by_department]
    by_find = result(hook_call(sandbox, "user.search", FILTER={"FIND": "nora"}))
    assert [int(u["ID"]) for u in by_find] == [new_id]
    mixed = hook_call(sandbox, "user.search", FILTER={"FIND": "x", "NAME": "y"})
    assert error(mixed, 400)[0] == "INVALID_FILTER"
    ordinary = issue(sandbox, user_id=2)["access_token"]
    assert error(app_call(sandbox, "user.add", ordinary, EMAIL="x@example.com"), 400) == (
        "ERROR_CORE",
        "access_denied",
    )
    limited = sandbox.control("webhook", member_id=member(sandbox), scope=["user_brief"])
    search = requests.post(limited["url"] + "user.search", json={}, verify=sandbox.ca_bundle, timeout=10)
    assert search.status_code == 200 and search.json()["total"] == 6  # any of its three scopes will do


def test_user_access_checks_the_calling_users_codes(sandbox):
    ordinary = issue(sandbox, user_id=2)["access_token"]
    department = result(app_call(sandbox, "user.current", ordinary))["UF_DEPARTMENT"][0]
    assert result(app_call(sandbox, "user.access", ordinary, ACCESS=["U2"])) is True
    assert result(app_call(sandbox, "user.access", ordinary, ACCESS=["U3", "G1"])) is False
    assert result(app_call(sandbox, "user.access", ordinary, ACCESS=[f"D{department}"])) is True
    assert result(app_call(sandbox, "user.access", ordinary, ACCESS=["DR1"])) is True  # under the head
    assert result(app_call(sandbox, "user.access", ordinary, ACCESS=["AU"])) is True
    admin = issue(sandbox)["access_token"]
    assert result(app_call(sandbox, "user.access", admin, ACCESS=["U99"])) is True


# --- departments ---------------------------------------------------------------------------------


def test_department_add_update_delete(sandbox):
    new_id = result(hook_call(sandbox, "department.add", NAME="Research", PARENT=5, UF_HEAD=2))
    child = result(hook_call(sandbox, "department.add", NAME="Lab", PARENT=new_id))
    row = result(hook_call(sandbox, "department.get", ID=new_id))[0]
    assert row == {"ID": str(new_id), "NAME": "Research", "SORT": 500, "PARENT": "5", "UF_HEAD": "2"}
    assert result(hook_call(sandbox, "department.update", ID=new_id, NAME="R&D", SORT=100)) is True
    assert result(hook_call(sandbox, "department.get", ID=new_id))[0]["NAME"] == "R&D"
    no_name = hook_call(sandbox, "department.add", PARENT=1)
    assert error(no_name, 400) == ("ERROR_CORE", "Department name not provided.<br>")
    second_root = hook_call(sandbox, "department.add", NAME="Another company")
    assert error(second_root, 400)[1] == "There can only be one top-level department in the company structure"
    assert error(hook_call(sandbox, "department.update", ID=999, NAME="x"), 400) == (
        "ERROR_CORE",
        "Department not found",
    )
    cycle = hook_call(sandbox, "department.update", ID=new_id, PARENT=child)
    assert error(cycle, 400)[0] == "ERROR_CORE"
    ordinary = issue(sandbox, user_id=2)["access_token"]
    assert error(app_call(sandbox, "department.add", ordinary, NAME="x", PARENT=1), 400) == (
        "ERROR_CORE",
        "Access denied",
    )
    assert result(hook_call(sandbox, "department.delete", ID=new_id)) is True
    assert result(hook_call(sandbox, "department.get", ID=child)) == []  # gone with its parent
    assert error(hook_call(sandbox, "department.delete", ID=new_id), 400) == (
        "ERROR_CORE",
        "Department not found",
    )


# --- method.get and notifications ----------------------------------------------------------------


def test_method_get_tells_existing_from_available(sandbox):
    assert result(hook_call(sandbox, "method.get", name="crm.deal.list")) == {
        "isExisting": True,
        "isAvailable": True,
    }
    assert result(hook_call(sandbox, "method.get", name="no.such.method")) == {
        "isExisting": False,
        "isAvailable": False,
    }
    assert result(hook_call(sandbox, "method.get")) == {"isExisting": False, "isAvailable": False}
    limited = sandbox.control("webhook", member_id=member(sandbox), scope=["user"])
    answer = requests.post(
        limited["url"] + "method.get", json={"name": "crm.deal.list"}, verify=sandbox.ca_bundle, timeout=10
    )
    assert answer.json()["result"] == {"isExisting": True, "isAvailable": False}
    app_only = result(hook_call(sandbox, "method.get", name="event.bind"))
    assert app_only == {"isExisting": True, "isAvailable": False}  # webhooks can't call it


def test_im_notify_system_add(sandbox):
    token = issue(sandbox)["access_token"]
    first = result(
        app_call(sandbox, "im.notify.system.add", token, USER_ID=2, MESSAGE="  Hello [b]you[/b] ", TAG="t")
    )
    second = result(app_call(sandbox, "im.notify.system.add", token, USER_ID=2, MESSAGE="Replaced", TAG="t"))
    assert isinstance(first, int) and second == first + 1
    notes = sandbox.control_get(f"notifications?member_id={member(sandbox)}&user_id=2")["notifications"]
    assert [n["MESSAGE"] for n in notes] == ["Replaced"]  # a TAG replaces the app's earlier one
    assert notes[0]["CLIENT_ID"] == sandbox.state["client_id"]
    assert result(app_call(sandbox, "im.notify.system.add", token, USER_ID=999, MESSAGE="x")) is False
    assert error(app_call(sandbox, "im.notify.system.add", token, MESSAGE="x"), 400)[0] == "USER_ID_EMPTY"
    assert (
        error(app_call(sandbox, "im.notify.system.add", token, USER_ID=2, MESSAGE=" "), 400)[0]
        == "MESSAGE_EMPTY"
    )
    huge = app_call(sandbox, "im.notify.system.add", token, USER_ID=2, MESSAGE="x", ATTACH="a" * 60_001)
    assert error(huge, 400)[0] == "ATTACH_OVERSIZE"
    limited = sandbox.control("webhook", member_id=member(sandbox), scope=["crm"])
    refused = requests.post(
        limited["url"] + "im.notify.system.add",
        json={"USER_ID": 2, "MESSAGE": "x"},
        verify=sandbox.ca_bundle,
        timeout=10,
    )
    assert error(refused, 403)[0] == "insufficient_scope"


# --- the same limits, accounting and faults as every method --------------------------------------


NEW_CALLS = [
    ("app.option.get", {}),
    ("crm.item.list", {"entityTypeId": 2, "select": ["id"]}),
    ("crm.type.list", {}),
    ("crm.currency.localizations.get", {"id": "USD"}),
    ("user.search", {}),
    ("user.access", {"ACCESS": ["AU"]}),
    ("department.fields", {}),
    ("method.get", {"name": "user.get"}),
]


@pytest.mark.parametrize(("name", "params"), NEW_CALLS)
def test_new_methods_are_charged_limited_and_faulted_like_the_others(sandbox, name, params):
    token = issue(sandbox)["access_token"]
    answer = app_call(sandbox, name, token, **params).json()
    assert "result" in answer and answer["time"]["operating"] > 0
    counters = sandbox.counters()
    assert (
        counters["calls"][member(sandbox)][name] == 1
        and counters["operating_seconds"][member(sandbox)][name] > 0
    )
    sandbox.control("faults", member_id=member(sandbox), kind="query_limit", count=1)
    assert error(app_call(sandbox, name, token, **params), 503)[0] == "QUERY_LIMIT_EXCEEDED"
    sandbox.control("config", operating_limit=0.0)
    assert error(app_call(sandbox, name, token, **params), 429)[0] == "OPERATION_TIME_LIMIT"
    sandbox.control("config", operating_limit=480.0)
    batch = app_call(sandbox, "batch", token, cmd={"a": f"{name}?{_query(params)}"}).json()["result"]
    assert "a" in batch["result"] and batch["result_time"]["a"]["operating"] > 0


def _query(params: dict) -> str:
    flat = {}
    for key, value in params.items():
        if isinstance(value, list):
            flat.update({f"{key}[{i}]": v for i, v in enumerate(value)})
        else:
            flat[key] = value
    return urlencode(flat)
