"""Install, installFinish, ONAPPINSTALL, update, payment and uninstall, asserted on the wire."""

from __future__ import annotations

import subprocess
import sys

# The fixtures live beside the recording app; test arguments shadow these imports by design.
# ruff: noqa: F811
from tests.sandbox.recording_app import Life, life, recording_app  # noqa: F401

FRAME_QUERY = {"DOMAIN", "PROTOCOL", "LANG", "APP_SID"}
FRAME_BODY = {
    "AUTH_ID",
    "AUTH_EXPIRES",
    "REFRESH_ID",
    "SERVER_ENDPOINT",
    "member_id",
    "status",
    "PLACEMENT",
    "APPLICATION_TOKEN",
    "APPLICATION_SCOPE",
}


def test_command_line_install_posts_the_frame_then_onappinstall(life: Life):
    portal = life.portal(1)
    answer = life.control("lifecycle/install", portal=1)
    assert (
        answer["installer_status"] == 200 and answer["installed"] is True and answer["state"] == "installed"
    )
    life.wait()
    frame, install_event = life.app.received("/bitrix/install/")
    # The frame POST: context in the query string, tokens in the form body (protocol §1.2).
    assert frame.method == "POST"
    assert set(frame.query) == FRAME_QUERY
    assert frame.query["DOMAIN"] == [portal["domain"]]
    assert set(frame.form) == FRAME_BODY
    assert frame.form["member_id"] == portal["member_id"] and frame.form["PLACEMENT"] == "DEFAULT"
    assert frame.headers["content-type"] == "application/x-www-form-urlencoded"
    # ONAPPINSTALL: form-encoded, nested auth with refresh_token and the same application_token.
    assert install_event.headers["content-type"] == "application/x-www-form-urlencoded"
    assert b"auth%5Baccess_token%5D=" in install_event.body
    form = install_event.form
    assert form["event"] == "ONAPPINSTALL" and form["event_handler_id"].isdigit() and form["ts"].isdigit()
    assert form["data"] == {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"}
    auth = form["auth"]
    assert auth["application_token"] == frame.form["APPLICATION_TOKEN"]
    assert auth["refresh_token"] and auth["access_token"] and auth["member_id"] == portal["member_id"]
    assert auth["domain"] == portal["domain"] and auth["client_endpoint"] == portal["client_endpoint"]
    # The token handed out in the install event works against REST.
    assert life.rest("event.get", auth["access_token"]).status_code == 200


def test_explicit_finish_holds_events_until_installfinish(life: Life):
    life.control("lifecycle", finish_mode="explicit")
    assert life.control("lifecycle/install", portal=1)["state"] == "installing"
    token = life.token()
    assert life.rest("app.info", token).json()["result"]["INSTALLED"] is False
    # The installer binds its handler (allowed before installFinish) ...
    bound = life.rest("event.bind", token, event="ONCRMDEALADD", handler=f"{life.app.url}/bitrix/events/")
    assert bound.json()["result"] is True
    # ... but nothing is delivered until installFinish: not ONAPPINSTALL, not the CRM event.
    life.crm("deal-add", title="before finish")
    life.wait()
    assert life.app.received(event="ONAPPINSTALL") == [] and life.app.received("/bitrix/events/") == []
    assert life.control("lifecycle/install-finish", portal=1)["finished_now"] is True
    assert life.rest("app.info", token).json()["result"]["INSTALLED"] is True
    life.crm("deal-add", title="after finish")
    life.wait()
    assert len(life.app.received(event="ONAPPINSTALL")) == 1
    events = life.app.received("/bitrix/events/")
    assert [e.form["event"] for e in events] == ["ONCRMDEALADD"]
    # installFinish is idempotent: a second call sends nothing.
    assert life.control("lifecycle/install-finish", portal=1)["finished_now"] is False


def test_installer_error_does_not_finish_the_install(life: Life):
    life.app.behave("/bitrix/install/", status=500)
    answer = life.control("lifecycle/install", portal=1)
    assert answer["installer_status"] == 500 and answer["state"] == "installing"
    life.wait()
    assert life.app.received(event="ONAPPINSTALL") == []


def test_update_sends_new_application_token(life: Life):
    life.control("lifecycle/install", portal=1)
    life.wait()
    old_token = life.app.received(event="ONAPPINSTALL")[0].form["auth"]["application_token"]
    token = life.token()
    life.rest("event.bind", token, event="ONAPPUPDATE", handler=f"{life.app.url}/bitrix/events/")
    answer = life.control("lifecycle/update", portal=1)
    assert answer == {**answer, "version": 2, "previous_version": 1, "queued": 1}
    life.wait()
    (update,) = life.app.received(event="ONAPPUPDATE")
    assert update.form["data"] == {"VERSION": "2", "PREVIOUS_VERSION": "1", "LANGUAGE_ID": "en"}
    assert update.form["auth"]["application_token"] != old_token
    assert update.form["auth"]["refresh_token"]
    assert life.frame()["body"]["APPLICATION_TOKEN"] == update.form["auth"]["application_token"]


def test_payment_end_and_renew(life: Life):
    token = life.token()
    life.rest("event.bind", token, event="ONAPPPAYMENT", handler=f"{life.app.url}/bitrix/events/")
    refresh_token = life.frame()["body"]["REFRESH_ID"]
    life.control("lifecycle/payment", portal=1, expired=True)
    refused = life.rest("event.get", token)
    assert refused.status_code == 401 and refused.json()["error"] == "PAYMENT_REQUIRED"
    # The OAuth server refuses to refresh while the paid period is over.
    import requests

    state = life.server.state
    grant = requests.get(
        f"{state['oauth_server']}oauth/token/",
        params={
            "grant_type": "refresh_token",
            "client_id": state["client_id"],
            "client_secret": state["client_secret"],
            "refresh_token": refresh_token,
        },
        verify=state["ca_bundle"],
        timeout=10,
    )
    assert grant.json()["error"] == "PAYMENT_REQUIRED"
    life.control("lifecycle/payment", portal=1, expired=False, days=14)
    assert life.rest("event.get", token).status_code == 200
    life.wait()
    ended, renewed = life.app.received(event="ONAPPPAYMENT")
    assert ended.form["data"]["PAYMENT_EXPIRED"] == "Y" and renewed.form["data"]["PAYMENT_EXPIRED"] == "N"
    assert renewed.form["data"]["DAYS"] == "14"
    assert (
        "access_token" not in ended.form["auth"]
        and ended.form["auth"]["member_id"] == life.portal()["member_id"]
    )


def test_uninstall_reaches_only_bound_handlers_and_revokes(life: Life):
    token = life.token()
    life.control("lifecycle/uninstall", portal=1, clean=False)
    life.wait()
    assert life.app.received(event="ONAPPUNINSTALL") == []  # nothing bound: nothing sent
    life.control("lifecycle/install", portal=1)
    token = life.token()
    life.rest("event.bind", token, event="ONAPPUNINSTALL", handler=f"{life.app.url}/bitrix/events/")
    assert life.control("lifecycle/uninstall", portal=1, clean=True)["queued"] == 1
    life.wait()
    (gone,) = life.app.received(event="ONAPPUNINSTALL")
    assert gone.form["data"] == {"LANGUAGE_ID": "en", "CLEAN": "1"}
    assert set(gone.form["auth"]) == {
        "domain",
        "server_endpoint",
        "client_endpoint",
        "member_id",
        "application_token",
    }
    assert life.rest("event.get", token).status_code == 401
    life.control("lifecycle/update", portal=1, expect=409)


def test_cli_install(life: Life):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox.lifecycle",
            "--control-url",
            life.control_url,
            "install",
            "--portal",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert '"installed": true' in done.stdout
    life.wait()
    assert len(life.app.received(event="ONAPPINSTALL")) == 1


def test_rename_redirects_old_host_and_events_carry_new_domain(life: Life):
    import requests

    old = life.portal(2)
    token = life.token(2)
    life.rest("event.bind", token, index=2, event="ONCRMDEALADD", handler=f"{life.app.url}/bitrix/events/")
    answer = life.control("lifecycle/rename", portal=2)
    assert answer["old_domain"] == old["domain"] and answer["domain"] != old["domain"]
    moved = requests.post(
        f"{old['http_endpoint']}event.get.json", json={"auth": token}, allow_redirects=False, timeout=10
    )
    assert moved.status_code == 302
    new_host = moved.headers["location"].split("/")[2]
    assert new_host.split(":")[0] == answer["domain"].split(":")[0]
    assert requests.post(moved.headers["location"], json={"auth": token}, timeout=10).status_code == 200
    life.crm("deal-add", index=2)
    life.wait()
    (event,) = life.app.received("/bitrix/events/")
    assert event.form["auth"]["domain"] == answer["domain"]
    assert event.form["auth"]["member_id"] == old["member_id"]  # member_id never changes
    assert life.frame(2)["query"]["DOMAIN"] == answer["domain"]


def test_cli_pages_and_deliveries(life: Life, tmp_path):
    import json

    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(life.server.state))
    pages = subprocess.run(
        [sys.executable, "-m", "sandbox.lifecycle", "--state-file", str(state_file), "pages"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pages.returncode == 0, pages.stderr
    host = life.portal(1)["http_endpoint"].split("/")[2]
    assert f"http://{host}/portal/" in pages.stdout
    life.control("lifecycle/install", portal=1)
    life.wait()
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox.lifecycle",
            "--state-file",
            str(state_file),
            "deliveries",
            "--event",
            "ONAPPINSTALL",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)["deliveries"]
    assert [r["event"] for r in records] == ["ONAPPINSTALL"] and records[0]["ok"] is True
    assert records[0]["kind"] == "install" and records[0]["url"] == f"{life.app.url}/bitrix/install/"


def test_app_card_oauth_redirect_is_the_authorize_target(life: Life):
    import requests

    card = life.control("lifecycle", method="GET")["urls"]
    assert card["installer"] == f"{life.app.url}/bitrix/install/"
    original = card["oauth_redirect"]
    try:
        life.control("lifecycle", urls={"oauth_redirect": f"{life.app.url}/elsewhere/callback/"})
        host = life.portal()["http_endpoint"].split("/")[2]
        consent = requests.post(
            f"http://{host}/oauth/authorize/",
            data={"client_id": life.server.state["client_id"], "state": "s1"},
            allow_redirects=False,
            timeout=10,
        )
        assert consent.status_code == 302
        assert consent.headers["location"].startswith(f"{life.app.url}/elsewhere/callback/?code=")
        refused = life.control("lifecycle", expect=400, urls={"installer": "ftp://nowhere/"})
        assert "installer" in refused["detail"]
    finally:
        life.control("lifecycle", urls={"oauth_redirect": original})


def test_app_without_ui_is_installed_at_once(life: Life):
    life.control("lifecycle", urls={"installer": ""})
    answer = life.control("lifecycle/install", portal=1)
    assert (
        answer["installed"] is True and answer["installer_status"] is None and answer["state"] == "installed"
    )
    life.wait()
    received = life.app.received("/bitrix/install/")
    assert [r.form.get("event") for r in received] == ["ONAPPINSTALL"]  # no frame POST, only the event
    assert received[0].form["auth"]["refresh_token"]
