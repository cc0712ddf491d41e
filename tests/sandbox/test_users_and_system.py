"""Users as Bitrix24 has them, and the methods every caller has."""

from __future__ import annotations

from tests.sandbox.helpers import app_call, hook_call, issue


def test_user_get_filters_sorts_and_pages(sandbox):
    everyone = hook_call(sandbox, "user.get").json()
    assert everyone["total"] == 5 and len(everyone["result"]) == 5
    assert all(u["ACTIVE"] is True and isinstance(u["UF_DEPARTMENT"], list) for u in everyone["result"])
    assert "IS_ADMIN" not in everyone["result"][0]
    one = hook_call(sandbox, "user.get", FILTER={"ID": 3}).json()["result"]
    assert [u["ID"] for u in one] == ["3"]
    by_top_level_key = hook_call(sandbox, "user.get", ID=2).json()["result"]
    assert [u["ID"] for u in by_top_level_key] == ["2"]
    department = everyone["result"][1]["UF_DEPARTMENT"][0]
    in_department = hook_call(sandbox, "user.get", FILTER={"UF_DEPARTMENT": department}).json()["result"]
    assert in_department and all(department in u["UF_DEPARTMENT"] for u in in_department)
    desc = hook_call(sandbox, "user.get", sort="ID", order="DESC").json()["result"]
    assert [u["ID"] for u in desc] == ["5", "4", "3", "2", "1"]


def test_user_current_and_fields_and_no_list_or_delete(sandbox):
    pair = issue(sandbox, user_id=3)
    me = app_call(sandbox, "user.current", pair["access_token"]).json()["result"]
    assert me["ID"] == "3"
    fields = hook_call(sandbox, "user.fields").json()["result"]
    assert fields["EMAIL"] and "UF_DEPARTMENT" in fields
    for missing in ("user.list", "user.delete"):
        answer = hook_call(sandbox, missing)
        assert answer.status_code == 404 and answer.json()["error"] == "ERROR_METHOD_NOT_FOUND"


def test_departments(sandbox):
    departments = hook_call(sandbox, "department.get").json()["result"]
    assert departments[0]["NAME"] == "Company" and departments[1]["PARENT"] == "1"


def test_profile_scope_methods_and_server_time(sandbox):
    pair = issue(sandbox, user_id=2)
    profile = app_call(sandbox, "profile", pair["access_token"]).json()["result"]
    assert profile["ID"] == "2" and profile["ADMIN"] is False
    assert hook_call(sandbox, "profile").json()["result"]["ADMIN"] is True
    scopes = app_call(sandbox, "scope", pair["access_token"]).json()["result"]
    assert "crm" in scopes and "user" in scopes
    names = hook_call(sandbox, "methods").json()["result"]
    assert {"batch", "crm.deal.list", "user.get", "profile"} <= set(names)
    crm_only = hook_call(sandbox, "methods", scope="crm").json()["result"]
    assert crm_only and all(n.startswith("crm.") for n in crm_only)
    sandbox.control("clock", offset=86400)
    server_time = hook_call(sandbox, "server.time").json()
    assert server_time["result"].endswith("+03:00")
    assert server_time["time"]["start"] > server_time["time"]["start"] - 1  # a float timestamp
    assert abs(server_time["time"]["start"] - (sandbox.control("clock")["now"])) < 5


def test_app_info_of_an_app_and_of_a_webhook(sandbox):
    pair = issue(sandbox)
    info = app_call(sandbox, "app.info", pair["access_token"]).json()["result"]
    assert info["INSTALLED"] is True and info["STATUS"] == "F" and info["LICENSE_FAMILY"] == "basic"
    # A webhook gets its scopes and the licence (docs/sandbox.md, "Where sources disagree").
    by_webhook = hook_call(sandbox, "app.info").json()["result"]
    assert set(by_webhook) == {"SCOPE", "LICENSE"} and by_webhook["LICENSE"] == info["LICENSE"]
    assert "crm" in by_webhook["SCOPE"]


def test_feature_get_answers_a_value(sandbox):
    # The lifecycle extension may refine feature values per portal; the wire shape is fixed.
    answer = hook_call(sandbox, "feature.get", CODE="rest_offline_extended").json()["result"]
    assert answer["value"] in ("Y", "N")
    connector = hook_call(sandbox, "feature.get", CODE="rest_auth_connector").json()["result"]
    assert connector == {"value": "N"}  # needs a higher plan than the default standard
