"""event.bind and delivery of CRM events, offline events, and placements, asserted on the wire."""

from __future__ import annotations

# The fixtures live beside the recording app; test arguments shadow these imports by design.
# ruff: noqa: F811
from tests.sandbox.recording_app import Life, life, recording_app  # noqa: F401


def _bind(life: Life, token: str, event: str, path: str = "/bitrix/events/", **extra):
    return life.rest("event.bind", token, event=event, handler=f"{life.app.url}{path}", **extra)


def test_crm_event_reaches_bound_handler_with_documented_shape(life: Life):
    token = life.token()
    assert _bind(life, token, "ONCRMDEALADD").json()["result"] is True
    life.crm("deal-add", title="wire")
    life.wait()
    (event,) = life.app.received("/bitrix/events/")
    assert event.method == "POST" and event.headers["content-type"] == "application/x-www-form-urlencoded"
    form = event.form
    assert form["event"] == "ONCRMDEALADD"
    assert form["data"]["FIELDS"]["ID"].isdigit()
    assert form["ts"].isdigit() and form["event_handler_id"].isdigit()
    auth = form["auth"]
    assert "refresh_token" not in auth  # ordinary events carry no refresh token
    assert auth["application_token"] == life.frame()["body"]["APPLICATION_TOKEN"]
    assert auth["member_id"] == life.portal()["member_id"] and auth["user_id"] == "1"
    # The event's token is a live token of the acting user.
    assert life.rest("event.get", auth["access_token"]).status_code == 200
    # The wire uses PHP bracket keys, not JSON.
    assert "data[FIELDS][ID]" in event.flat_form


def test_bind_rules_over_rest(life: Life):
    token = life.token()
    assert _bind(life, token, "ONCRMDEALUPDATE").status_code == 200
    duplicate = _bind(life, token, "ONCRMDEALUPDATE")
    assert duplicate.status_code == 400 and duplicate.json()["error"] == "ERROR_HANDLER_ALREADY_EXIST"
    unknown = _bind(life, token, "ONSOMETHINGELSE")
    assert unknown.status_code == 400 and unknown.json()["error"] == "ERROR_EVENT_NOT_FOUND"
    # Loopback handlers are accepted (a documented difference from Bitrix24).
    assert _bind(life, token, "ONCRMDEALDELETE", "/other/").json()["result"] is True
    handlers = life.rest("event.get", token).json()["result"]
    assert {
        "event": "ONCRMDEALUPDATE",
        "handler": f"{life.app.url}/bitrix/events/",
        "auth_type": "0",
        "offline": 0,
    } in handlers
    from urllib.parse import urlsplit

    import requests

    host = urlsplit(life.portal()["http_endpoint"]).netloc
    webhook = f"http://{host}{urlsplit(life.portal()['webhook_url']).path}"
    refused = requests.post(f"{webhook}event.get.json", json={}, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"] == "WRONG_AUTH_TYPE"
    unbound = life.rest(
        "event.unbind", token, event="ONCRMDEALUPDATE", handler=f"{life.app.url}/bitrix/events/"
    )
    assert unbound.json()["result"] == {"count": 1}
    life.crm("deal-update", id=1)
    life.wait()
    assert life.app.received("/bitrix/events/") == []  # unbound: nothing arrives


def test_auth_type_sends_that_users_token(life: Life):
    token = life.token()
    _bind(life, token, "ONCRMDEALADD", auth_type=2)
    life.crm("deal-add")
    life.wait()
    (event,) = life.app.received("/bitrix/events/")
    assert event.form["auth"]["user_id"] == "2"


def test_slow_handler_delays_later_deliveries_without_retries(life: Life):
    token = life.token()
    _bind(life, token, "ONCRMDEALADD", "/slow/")
    _bind(life, token, "ONCRMDEALUPDATE", "/fails/")
    life.app.behave("/slow/", delay=1.1)
    life.app.behave("/fails/", status=500)
    life.crm("deal-add")
    life.crm("deal-update", id=1)
    life.wait()
    (slow,) = life.app.received("/slow/")
    (failed,) = life.app.received("/fails/")  # exactly once: no retry after a 500
    assert failed.received_at - slow.received_at >= 1.0  # the second waited for the slow first
    # `ts` is the time the queue sent it, so the wait shows there too.
    assert int(failed.form["ts"]) - int(slow.form["ts"]) >= 1
    log = {d["event"]: d for d in life.deliveries(portal=1)}
    assert log["ONCRMDEALADD"]["ok"] is True and log["ONCRMDEALADD"]["status"] == 200
    assert log["ONCRMDEALUPDATE"]["ok"] is False and log["ONCRMDEALUPDATE"]["status"] == 500
    counters = life.control("lifecycle/deliveries", method="GET")["counters"]
    assert counters["failed"] == 1 and counters["event.ONCRMDEALUPDATE.failed"] == 1


def test_offline_queue_over_rest(life: Life):
    token = life.token()
    assert (
        life.rest("event.bind", token, event="ONCRMDEALUPDATE", event_type="offline").json()["result"] is True
    )
    for _ in range(3):
        life.crm("deal-update", id=1)
    life.crm("deal-update", id=2)
    listed = life.rest("event.offline.list", token).json()
    assert listed["total"] == 2  # latest state per object
    got = life.rest("event.offline.get", token, clear=0, limit=1).json()["result"]
    assert got["process_id"] and len(got["events"]) == 1
    assert got["events"][0]["EVENT_NAME"] == "ONCRMDEALUPDATE"
    assert life.rest("event.offline.clear", token, process_id=got["process_id"]).json()["result"] is True
    rest = life.rest("event.offline.get", token).json()["result"]
    assert rest["process_id"] is None and len(rest["events"]) == 1
    assert life.rest("event.offline.list", token).json()["total"] == 0
    feature = life.rest("feature.get", token, CODE="rest_offline_extended").json()["result"]
    assert feature == {"value": "Y"}
    life.control("lifecycle", offline_extended={"1": False})
    assert life.rest("feature.get", token, CODE="rest_offline_extended").json()["result"] == {"value": "N"}
    assert life.rest("event.offline.get", token, clear=0).status_code == 403


def test_onofflineevent_respects_min_timeout(life: Life):
    token = life.token()
    life.rest("event.bind", token, event="ONCRMDEALADD", event_type="offline")
    _bind(life, token, "ONOFFLINEEVENT", "/offline-notice/", options={"minTimeout": 1})
    for _ in range(4):
        life.crm("deal-add")
    first = life.app.wait_for(1, path="/offline-notice/")
    assert first[0].form["event"] == "ONOFFLINEEVENT" and first[0].form["auth"]["refresh_token"]
    # The changes inside the quiet period produce exactly one more notification, after it.
    second = life.app.wait_for(2, path="/offline-notice/", timeout=5)
    assert second[1].received_at - second[0].received_at >= 0.9
    life.wait()
    assert len(life.app.received("/offline-notice/")) == 2


def test_placement_bind_and_frame(life: Life):
    token = life.token()
    bound = life.rest(
        "placement.bind",
        token,
        PLACEMENT="CRM_DEAL_DETAIL_TAB",
        HANDLER=f"{life.app.url}/bitrix/placement/crm_deal_detail_tab/",
        TITLE="Our tab",
    )
    assert bound.json()["result"] is True
    rows = life.rest("placement.get", token).json()["result"]
    assert rows[0]["placement"] == "CRM_DEAL_DETAIL_TAB" and rows[0]["title"] == "Our tab"
    frame = life.frame(placement="CRM_DEAL_DETAIL_TAB", options={"ID": "5"})
    assert frame["url"] == f"{life.app.url}/bitrix/placement/crm_deal_detail_tab/"
    assert (
        frame["body"]["PLACEMENT"] == "CRM_DEAL_DETAIL_TAB"
        and frame["body"]["PLACEMENT_OPTIONS"] == '{"ID":"5"}'
    )
    # The portal page renders the widget as an auto-submitted POST into the frame (§1.2 split).
    import requests

    page = requests.get(
        f"http://{life.portal()['http_endpoint'].split('/')[2]}/portal/placement/CRM_DEAL_DETAIL_TAB/?ID=5",
        timeout=10,
    )
    assert page.status_code == 200
    assert f'action="{life.app.url}/bitrix/placement/crm_deal_detail_tab/?DOMAIN=' in page.text
    assert 'name="PLACEMENT" value="CRM_DEAL_DETAIL_TAB"' in page.text
    assert 'name="AUTH_ID"' in page.text and "APP_SID=" in page.text


def test_portal_page_and_shim_are_served(life: Life):
    import requests

    host = life.portal()["http_endpoint"].split("/")[2]
    page = requests.get(f"http://{host}/portal/", timeout=10)
    assert page.status_code == 200 and life.portal()["member_id"] in page.text
    shim = requests.get(f"http://{host}/portal/static/bx24.js", timeout=10)
    assert shim.status_code == 200 and "installFinish" in shim.text and "resizeWindow" in shim.text
    # A person's "Install" click: the installer is shown until installFinish.
    clicked = requests.post(f"http://{host}/portal/actions/install", allow_redirects=False, timeout=10)
    assert clicked.status_code == 303 and clicked.headers["location"] == "/portal/app/"
    installer = requests.get(f"http://{host}/portal/app/", timeout=10)
    assert f'action="{life.app.url}/bitrix/install/?DOMAIN=' in installer.text
    # The parent page's installFinish call, authenticated by the frame's own token.
    token = installer.text.split('name="AUTH_ID" value="')[1].split('"')[0]
    finished = requests.post(f"http://{host}/portal/bx24/install-finish", json={"auth": token}, timeout=10)
    assert finished.json() == {"result": True, "finished_now": True}
    forged = requests.post(f"http://{host}/portal/bx24/install-finish", json={"auth": "nope"}, timeout=10)
    assert forged.status_code == 401
    life.wait()
    assert len(life.app.received(event="ONAPPINSTALL")) == 1


def test_rest_writes_and_event_test_fire_events(life: Life):
    token = life.token()
    _bind(life, token, "ONCRMDEALUPDATE")
    _bind(life, token, "ONAPPTEST", "/test-handler/")
    updated = life.rest("crm.deal.update", token, id=3, fields={"TITLE": "changed by the app"})
    assert updated.status_code == 200, updated.text
    assert life.rest("event.test", token, any="thing").json()["result"] == 1
    life.wait()
    (change,) = life.app.received("/bitrix/events/")
    assert change.form["event"] == "ONCRMDEALUPDATE" and change.form["data"]["FIELDS"]["ID"] == "3"
    (probe,) = life.app.received("/test-handler/")
    assert probe.form["event"] == "ONAPPTEST" and probe.form["data"]["QUERY"] == {"any": "thing"}


def test_portal_page_buttons_drive_the_lifecycle(life: Life):
    import requests

    host = life.portal()["http_endpoint"].split("/")[2]
    token = life.token()
    for event in (
        "ONCRMDEALADD",
        "ONCRMDEALUPDATE",
        "ONCRMDEALDELETE",
        "ONAPPUPDATE",
        "ONAPPPAYMENT",
        "ONAPPUNINSTALL",
    ):
        _bind(life, token, event)

    def click(action: str, **form: str) -> str:
        answer = requests.post(
            f"http://{host}/portal/actions/{action}", data=form, allow_redirects=False, timeout=10
        )
        assert answer.status_code == 303, (action, answer.status_code)
        return answer.headers["location"]

    click("deal-add", title="from a person")
    click("deal-update", id="2")
    click("deal-delete", id="3")
    assert "no+deal" in click("deal-update", id="999999")  # refused with a message, nothing sent
    click("update")
    click("payment-end")
    click("payment-renew")
    click("uninstall", clean="1")
    life.wait()
    events = [r.form["event"] for r in life.app.received("/bitrix/events/")]
    assert events == [
        "ONCRMDEALADD",
        "ONCRMDEALUPDATE",
        "ONCRMDEALDELETE",
        "ONAPPUPDATE",
        "ONAPPPAYMENT",
        "ONAPPPAYMENT",
        "ONAPPUNINSTALL",
    ]
    page = requests.get(f"http://{host}/portal/", timeout=10).text
    assert "uninstalled" in page and "Install the app" in page
