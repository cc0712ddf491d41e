"""The OAuth server: code flow with consent, token grants (GET and POST), rotation, lifetimes,
documented errors, app.info on the server endpoint."""

from __future__ import annotations

import struct
from urllib.parse import parse_qs, urlsplit

import requests

from tests.sandbox.helpers import app_call, issue, member, refresh, token_get

TOKEN_FIELDS = [
    "access_token",
    "expires",
    "expires_in",
    "scope",
    "domain",
    "server_endpoint",
    "status",
    "client_endpoint",
    "member_id",
    "user_id",
    "refresh_token",
]


def _authorize(sandbox, portal=1, **params):
    url = f"https://{sandbox.portal(portal)['domain']}/oauth/authorize/"
    return requests.post(
        url,
        data={"client_id": sandbox.state["client_id"], "state": "xyz", **params},
        verify=sandbox.ca_bundle,
        allow_redirects=False,
        timeout=10,
    )


def _code(sandbox, portal=1, **params):
    location = _authorize(sandbox, portal, **params).headers["Location"]
    return parse_qs(urlsplit(location).query)


def test_authorize_shows_a_consent_page_then_redirects_with_a_code(sandbox):
    url = f"https://{sandbox.portal(1)['domain']}/oauth/authorize/"
    page = requests.get(
        url,
        params={"client_id": sandbox.state["client_id"], "state": "s1"},
        verify=sandbox.ca_bundle,
        timeout=10,
    )
    assert page.status_code == 200 and "<form" in page.text and 'value="s1"' in page.text
    answer = _authorize(sandbox)
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == ["xyz"]
    assert query["member_id"] == [member(sandbox)]
    assert query["domain"] == [sandbox.portal(1)["domain"]]
    assert query["server_domain"] == [urlsplit(sandbox.state["oauth_server"]).netloc]
    assert "crm" in query["scope"][0].split(",")


def test_authorize_fails_on_a_page_when_the_app_is_not_installed(sandbox):
    sandbox.control("app/uninstall", member_id=member(sandbox))
    answer = _authorize(sandbox)
    assert answer.status_code == 400
    assert "Location" not in answer.headers
    assert "not installed" in answer.text


def test_code_exchange_by_get_and_post_returns_the_documented_fields(sandbox):
    code = _code(sandbox)["code"][0]
    by_get = token_get(
        sandbox,
        grant_type="authorization_code",
        client_id=sandbox.state["client_id"],
        client_secret=sandbox.state["client_secret"],
        code=code,
    )
    assert by_get.status_code == 200
    body = by_get.json()
    assert list(body) == TOKEN_FIELDS
    assert body["expires_in"] == 3600 and body["member_id"] == member(sandbox) and body["user_id"] == 1
    assert body["client_endpoint"] == sandbox.portal(1)["client_endpoint"]
    assert body["server_endpoint"] == sandbox.state["server_endpoint"]
    # Modern token shape: lower-case hex, first 4 bytes the expiry (little-endian), bytes 12-15 the user.
    raw = bytes.fromhex(body["access_token"])
    assert 64 <= len(body["access_token"]) <= 70
    assert struct.unpack("<I", raw[:4])[0] == body["expires"]
    assert struct.unpack(">I", raw[12:16])[0] == 1
    # A code is single-use; a new one works by POST as well.
    again = token_get(
        sandbox,
        grant_type="authorization_code",
        client_id=sandbox.state["client_id"],
        client_secret=sandbox.state["client_secret"],
        code=code,
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    code2 = _code(sandbox, user_id=2)["code"][0]
    by_post = requests.post(
        sandbox.state["oauth_server"] + "oauth/token/",
        data={
            "grant_type": "authorization_code",
            "client_id": sandbox.state["client_id"],
            "client_secret": sandbox.state["client_secret"],
            "code": code2,
        },
        verify=sandbox.ca_bundle,
        timeout=10,
    )
    assert by_post.status_code == 200 and by_post.json()["user_id"] == 2


def test_code_lives_thirty_seconds(sandbox):
    code = _code(sandbox)["code"][0]
    sandbox.control("clock", advance=31)
    answer = token_get(
        sandbox,
        grant_type="authorization_code",
        client_id=sandbox.state["client_id"],
        client_secret=sandbox.state["client_secret"],
        code=code,
    )
    assert answer.json()["error"] == "invalid_grant"


def test_refresh_rotates_the_pair_and_a_used_refresh_token_is_invalid_grant(sandbox):
    pair = issue(sandbox)
    rotated = refresh(sandbox, pair["refresh_token"])
    assert rotated.status_code == 200
    new = rotated.json()
    assert new["refresh_token"] != pair["refresh_token"] and new["access_token"] != pair["access_token"]
    # The used refresh token is dead; the old access token lives on until its own expiry
    # (docs/sandbox.md: the default; tests/sandbox/test_fidelity.py covers both behaviours).
    assert app_call(sandbox, "profile", pair["access_token"]).status_code == 200
    reused = refresh(sandbox, pair["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert app_call(sandbox, "profile", new["access_token"]).status_code == 200
    counters = sandbox.counters()
    assert counters["refresh_token_reuse"]["by_portal"][member(sandbox)] == 1
    assert counters["token_grants"][member(sandbox)] == {"issue": 1, "refresh_token": 1}
    assert counters["oauth"]["by_code"] == {"OK": 1, "invalid_grant": 1}


def test_access_token_expires_after_its_lifetime(sandbox):
    pair = issue(sandbox)
    assert app_call(sandbox, "profile", pair["access_token"]).status_code == 200
    sandbox.control("clock", advance=3601)
    expired = app_call(sandbox, "profile", pair["access_token"])
    assert expired.status_code == 401 and expired.json()["error"] == "expired_token"
    assert refresh(sandbox, pair["refresh_token"]).status_code == 200


def test_access_lifetime_is_configurable(sandbox):
    sandbox.control("config", access_lifetime=60)
    pair = issue(sandbox)
    assert pair["expires_in"] == 60
    sandbox.control("clock", advance=61)
    assert app_call(sandbox, "profile", pair["access_token"]).json()["error"] == "expired_token"


def test_refresh_token_expires_after_its_lifetime(sandbox):
    pair = issue(sandbox)
    sandbox.control("clock", advance=31 * 86400)
    answer = refresh(sandbox, pair["refresh_token"])
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_wrong_secret_is_invalid_client_and_other_apps_token_is_wrong_client(sandbox):
    pair = issue(sandbox)
    wrong = token_get(
        sandbox,
        grant_type="refresh_token",
        client_id=sandbox.state["client_id"],
        client_secret="not-the-secret",
        refresh_token=pair["refresh_token"],
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_client"
    local = sandbox.control("app/local", member_id=member(sandbox))
    other = token_get(
        sandbox,
        grant_type="refresh_token",
        client_id=local["client_id"],
        client_secret=local["client_secret"],
        refresh_token=pair["refresh_token"],
    )
    assert other.json()["error"] == "wrong_client"
    missing = token_get(
        sandbox,
        grant_type="refresh_token",
        client_id=sandbox.state["client_id"],
        client_secret=sandbox.state["client_secret"],
    )
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


def test_unpaid_app_gets_payment_required(sandbox):
    pair = issue(sandbox)
    sandbox.control("app/payment", member_id=member(sandbox), expired=True)
    answer = refresh(sandbox, pair["refresh_token"])
    assert answer.json()["error"] == "PAYMENT_REQUIRED"
    rest = app_call(sandbox, "profile", pair["access_token"])
    assert rest.status_code == 401 and rest.json()["error"] == "PAYMENT_REQUIRED"


def test_uninstalled_app_cannot_refresh_or_call(sandbox):
    pair = issue(sandbox)
    sandbox.control("app/uninstall", member_id=member(sandbox))
    assert refresh(sandbox, pair["refresh_token"]).json()["error"] == "invalid_client"
    gone = app_call(sandbox, "profile", pair["access_token"])
    assert gone.status_code == 401 and gone.json()["error"] == "NOT_INSTALLED"
    refused = requests.post(
        sandbox.state["control_url"] + "oauth/issue", json={"member_id": member(sandbox)}, timeout=10
    )
    assert refused.status_code == 409
    # Reinstalling does not revive the old pair.
    sandbox.control("app/install", member_id=member(sandbox))
    assert app_call(sandbox, "profile", pair["access_token"]).json()["error"] == "invalid_token"
    assert refresh(sandbox, pair["refresh_token"]).json()["error"] == "invalid_grant"


def test_server_endpoint_app_info_reports_license_of_the_plan(sandbox):
    pair = issue(sandbox)
    url = sandbox.state["server_endpoint"] + "app.info"
    info = requests.get(
        url, params={"auth": pair["access_token"]}, verify=sandbox.ca_bundle, timeout=10
    ).json()
    result = info["result"]
    assert result["client_id"] == sandbox.state["client_id"] and result["user_id"] == 1
    assert result["install"]["member_id"] == member(sandbox)
    assert result["install"]["installed"] is True and result["install"]["status"] == "F"
    assert result["install"]["LICENSE_FAMILY"] == "basic"
    sandbox.control("portal/plan", member_id=member(sandbox), plan="enterprise")
    info = requests.get(
        url, params={"auth": pair["access_token"]}, verify=sandbox.ca_bundle, timeout=10
    ).json()
    assert info["result"]["install"]["LICENSE_FAMILY"] == "ent"


def test_local_app_gets_status_l_and_its_own_tokens(sandbox):
    local = sandbox.control("app/local", member_id=member(sandbox))
    assert local["client_id"].startswith("local.") and local["status"] == "L"
    pair = issue(sandbox, client_id=local["client_id"])
    assert pair["status"] == "L"
    info = app_call(sandbox, "app.info", pair["access_token"]).json()["result"]
    assert info["STATUS"] == "L"
    rotated = token_get(
        sandbox,
        grant_type="refresh_token",
        client_id=local["client_id"],
        client_secret=local["client_secret"],
        refresh_token=pair["refresh_token"],
    )
    assert rotated.status_code == 200
