"""Answers a public SDK's integration tests found differing from Bitrix24 (issue "Sandbox fidelity"),
each checked on the wire against the documented shape: field lists, scopes, app.info through a
webhook, sorting and list parameters, placement.list's scope, the previous access token after a
refresh, OAuth client errors, 401 vs 403, and the shapes of generated secrets."""

from __future__ import annotations

import re

import pytest
import requests

from sandbox.config import Config
from sandbox.state import Sandbox
from tests.sandbox.helpers import app_call, hook_call, issue, member, refresh, token_get

FIELD_KEYS = {"type", "isRequired", "isReadOnly", "isImmutable", "isMultiple", "isDynamic", "title"}


def result(answer: requests.Response):
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


# --- 1. field lists ------------------------------------------------------------------------------


@pytest.mark.parametrize("entity", ["deal", "lead", "contact", "company", "currency", "status"])
def test_every_field_is_described_with_the_documented_attributes(sandbox, entity):
    fields = result(hook_call(sandbox, f"crm.{entity}.fields"))
    assert fields
    for name, spec in fields.items():
        assert FIELD_KEYS <= set(spec), name
        assert isinstance(spec["title"], str) and spec["title"], name
        assert not name.startswith("UF_"), "the docs example portal's own custom fields stay out"


def test_deal_company_and_currency_fields_the_sdk_missed(sandbox):
    deal = result(hook_call(sandbox, "crm.deal.fields"))
    assert deal["CONTACT_IDS"]["type"] == "crm_contact" and deal["CONTACT_IDS"]["isMultiple"] is True
    assert deal["STAGE_ID"] == {**deal["STAGE_ID"], "type": "crm_status", "statusType": "DEAL_STAGE"}
    assert deal["ID"]["isReadOnly"] is True and deal["CATEGORY_ID"]["isImmutable"] is True
    company = result(hook_call(sandbox, "crm.company.fields"))
    for name in ("PHONE", "EMAIL", "WEB", "IM"):
        assert company[name]["type"] == "crm_multifield" and company[name]["isMultiple"] is True
    utm = {"UTM_SOURCE", "UTM_MEDIUM", "UTM_CAMPAIGN", "UTM_CONTENT", "UTM_TERM"}
    named = {"ADDRESS_CITY", "ADDRESS_COUNTRY", "ADDRESS_POSTAL_CODE", "REG_ADDRESS"}
    assert named | utm | {"ORIGINATOR_ID", "ORIGIN_ID", "ORIGIN_VERSION"} <= set(company)
    assert company["TITLE"]["isRequired"] is True
    currency = result(hook_call(sandbox, "crm.currency.fields"))
    assert currency["LANG"]["type"] == "currency_localization" and currency["LANG"]["isMultiple"] is True


def test_select_star_returns_every_single_valued_field_and_multifields_round_trip(sandbox):
    described = result(hook_call(sandbox, "crm.company.fields"))
    single = {name for name, spec in described.items() if not spec["isMultiple"]}
    phones = [{"VALUE": "+4930123", "VALUE_TYPE": "WORK"}]
    new_id = result(hook_call(sandbox, "crm.company.add", fields={"TITLE": "Fields Inc", "PHONE": phones}))
    listed = result(hook_call(sandbox, "crm.company.list", filter={"ID": new_id}, select=["*"]))[0]
    assert set(listed) == single  # '*' is every field but the multiple ones (crm-deal-list.md)
    got = result(hook_call(sandbox, "crm.company.get", id=new_id))
    assert got["HAS_PHONE"] == "Y" and got["PHONE"][0]["VALUE"] == "+4930123"
    assert got["PHONE"][0]["TYPE_ID"] == "PHONE" and got["PHONE"][0]["ID"]
    assert "EMAIL" not in got  # a communication field comes back only when it is set
    with_phone = result(hook_call(sandbox, "crm.company.list", filter={"ID": new_id}, select=["ID", "PHONE"]))
    assert with_phone[0]["PHONE"][0]["VALUE"] == "+4930123"
    entry = got["PHONE"][0]["ID"]
    removal = {"PHONE": [{"ID": entry, "DELETE": "Y"}]}
    assert result(hook_call(sandbox, "crm.company.update", id=new_id, fields=removal)) is True
    assert result(hook_call(sandbox, "crm.company.get", id=new_id))["HAS_PHONE"] == "N"


def test_deal_contact_ids_set_the_first_contact(sandbox):
    new_id = result(
        hook_call(sandbox, "crm.deal.add", fields={"TITLE": "two contacts", "CONTACT_IDS": [3, 2]})
    )
    deal = result(hook_call(sandbox, "crm.deal.get", id=new_id))
    assert deal["CONTACT_ID"] == "3"


def test_currency_get_has_its_localizations(sandbox):
    usd = result(hook_call(sandbox, "crm.currency.get", id="USD"))
    localization = usd["LANG"]["en"]
    assert localization["FULL_NAME"] == usd["FULL_NAME"]
    assert set(localization) == set(result(hook_call(sandbox, "crm.currency.localizations.fields")))


def test_user_and_department_field_lists(sandbox):
    users = result(hook_call(sandbox, "user.fields"))
    assert {"PERSONAL_PHONE", "WORK_COMPANY", "UF_SKILLS", "UF_DEPARTMENT", "USER_TYPE"} <= set(users)
    assert all(isinstance(title, str) for title in users.values())
    departments = result(hook_call(sandbox, "department.fields"))
    assert set(departments) == {"ID", "NAME", "SORT", "PARENT", "UF_HEAD"}


# --- 2. scopes -----------------------------------------------------------------------------------


def test_scope_full_lists_every_scope_of_the_portal(sandbox):
    granted = result(hook_call(sandbox, "scope"))
    everything = result(hook_call(sandbox, "scope", full=True))
    assert set(granted) < set(everything)
    assert {"calendar", "disk", "task", "im", "imopenlines", "telephony", "bizproc"} <= set(everything)
    limited = sandbox.control("webhook", member_id=member(sandbox), scope=["crm"])
    mine = requests.post(limited["url"] + "scope", json={}, verify=sandbox.ca_bundle, timeout=10).json()
    assert mine["result"] == ["crm"]
    full = requests.post(limited["url"] + "scope", json={"full": True}, verify=sandbox.ca_bundle, timeout=10)
    assert full.json()["result"] == everything


# --- 3. app.info through a webhook ---------------------------------------------------------------


def test_app_info_through_a_webhook_gives_scope_and_license(sandbox):
    limited = sandbox.control("webhook", member_id=member(sandbox), scope=["crm", "user"])
    answer = requests.post(limited["url"] + "app.info", json={}, verify=sandbox.ca_bundle, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["result"] == {"SCOPE": ["crm", "user"], "LICENSE": "en_basic"}
    sandbox.control("portal/plan", member_id=member(sandbox), plan="enterprise")
    assert result(hook_call(sandbox, "app.info"))["LICENSE"] == "en_ent"


# --- 4. sorting and list parameters --------------------------------------------------------------


def test_department_get_sorts_and_orders(sandbox):
    ascending = result(hook_call(sandbox, "department.get", sort="NAME", order="ASC"))
    names = [d["NAME"] for d in ascending]
    assert names == sorted(names)
    descending = result(hook_call(sandbox, "department.get", SORT="ID", ORDER="DESC"))
    assert [d["ID"] for d in descending] == sorted((d["ID"] for d in ascending), key=int, reverse=True)
    by_sort_value = result(hook_call(sandbox, "department.get", SORT=20))
    assert [d["SORT"] for d in by_sort_value] == [20]
    children = result(hook_call(sandbox, "department.get", PARENT=1))
    assert children and all(d["PARENT"] == "1" for d in children)
    assert (
        "UF_HEAD" not in children[0]
        and result(hook_call(sandbox, "department.get", ID=1))[0]["UF_HEAD"] == "1"
    )


def test_list_parameters_are_read_in_either_case(sandbox):
    lower = hook_call(sandbox, "crm.deal.list", filter={"<=ID": 3}, order={"ID": "DESC"}, select=["ID"])
    upper = hook_call(sandbox, "crm.deal.list", FILTER={"<=ID": 3}, ORDER={"ID": "DESC"}, SELECT=["ID"])
    assert result(lower) == result(upper) == [{"ID": "3"}, {"ID": "2"}, {"ID": "1"}]
    currencies = result(hook_call(sandbox, "crm.currency.list", ORDER={"SORT": "DESC"}))
    assert currencies[0]["CURRENCY"] == "BYN"
    statuses = result(hook_call(sandbox, "crm.status.list", FILTER={"ENTITY_ID": "SOURCE"}))
    assert statuses and {s["ENTITY_ID"] for s in statuses} == {"SOURCE"}


def test_not_like_with_a_pattern(sandbox):
    rows = result(
        hook_call(sandbox, "crm.deal.list", filter={"!=%TITLE": "Deal #1%", "<=ID": 12}, select=["ID"])
    )
    assert [r["ID"] for r in rows] == [str(i) for i in range(2, 10)]


def test_user_get_sorts_selects_and_searches_by_name(sandbox):
    rows = result(hook_call(sandbox, "user.get", sort="LAST_NAME", order="DESC", select=["ID", "LAST_NAME"]))
    assert [r["LAST_NAME"] for r in rows] == sorted((r["LAST_NAME"] for r in rows), reverse=True)
    assert all(set(r) == {"ID", "LAST_NAME"} for r in rows)
    someone = rows[0]["LAST_NAME"]
    found = result(hook_call(sandbox, "user.get", FILTER={"NAME_SEARCH": someone[:4]}))
    assert found and all(
        someone[:4].lower() in (u["NAME"] + u["LAST_NAME"] + u["EMAIL"]).lower() for u in found
    )


# --- 5. placement.list's scope -------------------------------------------------------------------


def test_placement_list_follows_its_scope_parameter(sandbox):
    token = issue(sandbox)["access_token"]
    crm = result(app_call(sandbox, "placement.list", token, scope="crm"))
    assert crm and all(code.startswith("CRM_") for code in crm)
    assert result(app_call(sandbox, "placement.list", token, SCOPE="task")) == []
    users = result(app_call(sandbox, "placement.list", token, SCOPE="user"))
    assert users == ["USER_PROFILE_MENU", "USER_PROFILE_TOOLBAR"]
    everything = result(app_call(sandbox, "placement.list", token))
    assert {"LEFT_MENU", "CRM_DEAL_DETAIL_TAB"} <= set(everything)
    local = sandbox.control("app/local", member_id=member(sandbox), scope=["placement"])
    grant = sandbox.control("oauth/issue", member_id=member(sandbox), client_id=local["client_id"])
    own = result(app_call(sandbox, "placement.list", grant["access_token"]))
    assert "LEFT_MENU" in own and not any(code.startswith("CRM_") for code in own)
    full = result(app_call(sandbox, "placement.list", grant["access_token"], FULL=True))
    assert set(full) == set(everything)


# --- 6. the previous access token after a refresh ------------------------------------------------


def test_previous_access_token_lives_until_its_own_expiry_by_default(sandbox):
    pair = issue(sandbox)
    new = refresh(sandbox, pair["refresh_token"]).json()
    assert app_call(sandbox, "profile", pair["access_token"]).status_code == 200
    assert app_call(sandbox, "profile", new["access_token"]).status_code == 200
    assert refresh(sandbox, pair["refresh_token"]).json()["error"] == "invalid_grant"
    sandbox.control("clock", advance=3601)
    expired = app_call(sandbox, "profile", pair["access_token"])
    assert expired.status_code == 401 and expired.json()["error"] == "expired_token"


def test_the_switch_kills_the_previous_access_token_at_once(sandbox):
    sandbox.control("config", refresh_revokes_access=True)
    pair = issue(sandbox)
    new = refresh(sandbox, pair["refresh_token"]).json()
    old = app_call(sandbox, "profile", pair["access_token"])
    assert old.status_code == 401 and old.json()["error"] == "invalid_token"
    assert app_call(sandbox, "profile", new["access_token"]).status_code == 200


def test_the_switch_takes_only_a_boolean(sandbox):
    answer = requests.post(
        sandbox.state["control_url"] + "config", json={"refresh_revokes_access": "false"}, timeout=10
    )
    assert answer.status_code == 400 and "true or false" in answer.json()["error"]


# --- 7. OAuth client errors ----------------------------------------------------------------------


def test_unknown_client_id_is_wrong_client_with_http_200(sandbox):
    pair = issue(sandbox)
    for grant in (
        {"grant_type": "authorization_code", "code": "any_code"},
        {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]},
    ):
        answer = token_get(
            sandbox, client_id="WRONG_CLIENT_ID_12345", client_secret=sandbox.state["client_secret"], **grant
        )
        assert answer.status_code == 200 and answer.json()["error"] == "wrong_client"
    wrong_secret = token_get(
        sandbox,
        grant_type="authorization_code",
        client_id=sandbox.state["client_id"],
        client_secret="WRONG_SECRET_12345",
        code="any_code",
    )
    assert wrong_secret.status_code == 400 and wrong_secret.json()["error"] == "invalid_client"
    assert refresh(sandbox, pair["refresh_token"]).status_code == 200  # nothing was spent


# --- 8. 401 or 403 -------------------------------------------------------------------------------


def test_scope_and_credential_refusals_are_403_token_refusals_401(sandbox):
    limited = sandbox.control("webhook", member_id=member(sandbox), scope=["user"])
    scope = requests.post(
        limited["url"] + "crm.deal.get", json={"id": 1}, verify=sandbox.ca_bundle, timeout=10
    )
    assert scope.status_code == 403 and scope.json()["error"] == "insufficient_scope"
    bad_secret = re.sub(r"/[a-z0-9]{16}/$", "/0000000000000000/", sandbox.portal(1)["webhook_url"])
    credentials = requests.post(bad_secret + "profile", json={}, verify=sandbox.ca_bundle, timeout=10)
    assert credentials.status_code == 403 and credentials.json()["error"] == "INVALID_CREDENTIALS"
    unknown = app_call(sandbox, "profile", "0" * 70)
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_token"


# --- 9. generated identities take Bitrix24's shapes ----------------------------------------------


def test_a_generated_registration_has_bitrix24_shapes():
    # The session sandbox runs with the test settings' registration; a sandbox given none makes its own.
    world = Sandbox(Config(portals=2, deals=0, client_id="", client_secret=""))
    state = world.state("")
    assert re.fullmatch(r"[A-Za-z0-9]{50}", state["client_secret"])
    assert re.fullmatch(r"app\.[0-9a-f]{14}\.[0-9]{8}", state["client_id"])
    for portal in state["portals"]:
        assert re.fullmatch(r"[0-9a-f]{32}", portal["member_id"])
        assert re.fullmatch(r"https://[^/]+/rest/1/[a-z0-9]{16}/", portal["webhook_url"])


def test_generated_ids_secrets_and_tokens_have_bitrix24_shapes(sandbox):
    state = sandbox.state
    for portal in state["portals"]:
        assert re.fullmatch(r"[0-9a-f]{32}", portal["member_id"])
        assert re.fullmatch(r"https://[^/]+/rest/1/[a-z0-9]{16}/", portal["webhook_url"])
    local = sandbox.control("app/local", member_id=member(sandbox))
    assert re.fullmatch(r"local\.[0-9a-f]{14}\.[0-9]{8}", local["client_id"])
    assert re.fullmatch(r"[A-Za-z0-9]{50}", local["client_secret"])
    hook = sandbox.control("webhook", member_id=member(sandbox), user_id=2)
    assert re.fullmatch(r"https://[^/]+/rest/2/[a-z0-9]{16}/", hook["url"])
    pair = issue(sandbox)
    assert re.fullmatch(r"[0-9a-f]{70}", pair["access_token"]) and re.fullmatch(
        r"[0-9a-f]{70}", pair["refresh_token"]
    )
    assert re.fullmatch(r"[0-9a-f]{32}", pair["application_token"])
