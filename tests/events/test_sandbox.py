"""The whole path over real HTTP: the sandbox installs the app (live server), our binding lands on
the portal, the sandbox delivers CRM and lifecycle events to the receiver, a real Celery worker
dispatches them; offline events are drained; bindings are reconciled against event.get."""

from __future__ import annotations

import logging
import time

import pytest
import requests

from events.models import Event
from events.services.binding import (
    Binding,
    app_events_bind,
    app_events_desired,
    app_events_reconcile,
    events_handler_url,
)
from portals.models import Portal
from portals.services.client import client_for_portal
from tests.fixtures.portals import app_card_urls, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def app(live_server, portals_sandbox, settings, redis_client, celery_worker):
    """The app served by the live server and registered on the sandbox; portal 1 installed."""
    base = live_server.url
    settings.BITRIX24_APP_URL = base
    settings.ALLOWED_HOSTS = ["*"]
    portals_sandbox.control(
        "lifecycle",
        urls=app_card_urls(base),
        finish_mode="auto",
    )
    member_id = portals_sandbox.portal(1)["member_id"]
    portals_sandbox.control("lifecycle/install", portal=1)
    portals_sandbox.control("lifecycle/deliveries/wait", timeout=20)
    portal = wait_for(lambda: Portal.objects.filter(member_id=member_id, state="active").first())
    # The install queued our binding task: wait until it bound everything.
    wanted = app_events_desired(portal=portal)
    wait_for(lambda: wanted <= _bound(member_id))
    # The frame POST and ONAPPINSTALL each queue a binding task: let the worker finish them all.
    wait_for(lambda: _worker_idle(redis_client, settings), timeout=20)
    yield portals_sandbox, portal
    portals_sandbox.control("lifecycle/deliveries/wait", timeout=20)


def _worker_idle(redis_client, settings) -> bool:
    prefix = settings.REDIS_KEY_PREFIX
    queued = redis_client.llen(f"{prefix}{settings.CELERY_TASK_DEFAULT_QUEUE}")
    unacked = redis_client.hlen(f"{prefix}unacked")
    if queued or unacked:
        return False
    time.sleep(0.3)
    return not redis_client.llen(f"{prefix}{settings.CELERY_TASK_DEFAULT_QUEUE}") and not redis_client.hlen(
        f"{prefix}unacked"
    )


def _bound(member_id: str) -> set[Binding]:
    rows = client_for_portal(member_id=member_id).call("event.get") or []
    return {
        Binding(r["event"], "" if int(r["offline"]) else r["handler"], bool(int(r["offline"]))) for r in rows
    }


def _deliveries(sandbox, event: str) -> list[dict]:
    return sandbox.control_get(f"lifecycle/deliveries?event={event}")["deliveries"]


def test_install_binds_the_configured_events(app):
    sandbox, portal = app
    bound = _bound(portal.member_id)
    url = events_handler_url()
    for name in ("ONAPPUNINSTALL", "ONAPPUPDATE", "ONAPPPAYMENT", "ONCRMDEALADD", "ONCRMDEALUPDATE"):
        assert Binding(name, url, False) in bound


def test_crm_event_delivered_stored_and_dispatched_to_the_example_handler(app, caplog):
    sandbox, portal = app
    with caplog.at_level(logging.INFO, logger="examples.deals"):
        sandbox.control("lifecycle/crm", portal=1, action="deal-update", id=1)
        sandbox.control("lifecycle/deliveries/wait", timeout=20)
        row = wait_for(lambda: Event.objects.filter(event="ONCRMDEALUPDATE", status="done").first())
    assert row.portal_id == portal.pk and row.object_key == "ONCRMDEAL:1"
    (delivery,) = _deliveries(sandbox, "ONCRMDEALUPDATE")
    assert delivery["status"] == 200 and delivery["ok"]
    # The example handler fetched the deal through the client (crm.deal.get against the sandbox).
    changed = [r for r in caplog.records if r.getMessage() == "deal.changed"]
    assert changed and changed[0].deal_id == "1" and changed[0].stage


def test_forged_event_over_http_is_refused(app, live_server):
    sandbox, portal = app
    form = {
        "event": "ONCRMDEALUPDATE",
        "ts": str(int(time.time())),
        "data[FIELDS][ID]": "1",
        "auth[member_id]": portal.member_id,
        "auth[application_token]": "forged",
    }
    response = requests.post(f"{live_server.url}/bitrix/events/", data=form, timeout=10)
    assert response.status_code == 403
    assert not Event.objects.exists()


def test_app_update_changes_the_token_and_rebinds(app):
    sandbox, portal = app
    old_token = portal.application_token
    # Bitrix24 drops bindings on update: simulate that, the ONAPPUPDATE handler must restore them.
    client = client_for_portal(member_id=portal.member_id)
    client.call("event.unbind", {"event": "ONCRMDEALADD", "handler": events_handler_url()}, read=False)
    sandbox.control("lifecycle/update", portal=1)
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    (delivery,) = _deliveries(sandbox, "ONAPPUPDATE")
    assert delivery["status"] == 200  # verified through app.info: the event carries a new token
    wait_for(lambda: Event.objects.filter(event="ONAPPUPDATE", status="done").exists())
    portal.refresh_from_db()
    assert portal.application_token and portal.application_token != old_token
    assert Binding("ONCRMDEALADD", events_handler_url(), False) in _bound(portal.member_id)
    # Events after the update carry the new token and are accepted.
    sandbox.control("lifecycle/crm", portal=1, action="deal-update", id=2)
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    assert _deliveries(sandbox, "ONCRMDEALUPDATE")[-1]["status"] == 200


def test_uninstall_event_marks_the_portal_uninstalled(app):
    sandbox, portal = app
    sandbox.control("lifecycle/uninstall", portal=1, clean=False)
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    assert _deliveries(sandbox, "ONAPPUNINSTALL")[0]["status"] == 200
    wait_for(lambda: Portal.objects.filter(pk=portal.pk, state="uninstalled").exists())


def test_payment_end_moves_the_portal_to_payment_required(app):
    sandbox, portal = app
    sandbox.control("lifecycle/payment", portal=1, expired=True)
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    assert _deliveries(sandbox, "ONAPPPAYMENT")[0]["status"] == 200
    wait_for(lambda: Portal.objects.filter(pk=portal.pk, state="payment_required").exists())
    sandbox.control("lifecycle/payment", portal=1, expired=False)
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    wait_for(lambda: Portal.objects.filter(pk=portal.pk, state="active").exists())


def test_binding_again_is_idempotent(app):
    sandbox, portal = app
    report = app_events_bind(portal_id=portal.pk)
    assert report.bound == []  # ERROR_HANDLER_ALREADY_EXIST for each: nothing new, no error
    assert set(report.present) == app_events_desired(portal=portal)


def test_reconciliation_repairs_bindings(app):
    sandbox, portal = app
    client = client_for_portal(member_id=portal.member_id)
    url = events_handler_url()
    client.call("event.unbind", {"event": "ONCRMDEALUPDATE", "handler": url}, read=False)
    # An event nothing handles, bound to our receiver (not wanted) and to another URL (not ours).
    client.call("event.bind", {"event": "ONCRMACTIVITYADD", "handler": url}, read=False)
    client.call("event.bind", {"event": "ONCRMACTIVITYADD", "handler": url + "other/"}, read=False)
    report = app_events_reconcile(portal_id=portal.pk)
    assert report.bound == [Binding("ONCRMDEALUPDATE", url, False)]
    assert report.unbound == [Binding("ONCRMACTIVITYADD", url, False)]
    bound = _bound(portal.member_id)
    assert Binding("ONCRMDEALUPDATE", url, False) in bound
    assert Binding("ONCRMACTIVITYADD", url, False) not in bound
    assert Binding("ONCRMACTIVITYADD", url + "other/", False) in bound
    again = app_events_reconcile(portal_id=portal.pk)
    assert again.bound == [] and again.unbound == []


def test_offline_events_are_drained_losslessly(app, settings):
    sandbox, portal = app
    settings.BITRIX24_OFFLINE_EVENTS = ["ONCRMDEALUPDATE"]
    Portal.objects.filter(pk=portal.pk).update(offline_events=True)
    client = client_for_portal(member_id=portal.member_id)
    client.call("event.unbind", {"event": "ONCRMDEALUPDATE", "handler": events_handler_url()}, read=False)
    report = app_events_reconcile(portal_id=portal.pk)
    assert Binding("ONCRMDEALUPDATE", "", True) in report.bound
    assert Binding("ONOFFLINEEVENT", events_handler_url(), False) in report.bound
    for deal_id in (1, 2, 3):
        sandbox.control("lifecycle/crm", portal=1, action="deal-update", id=deal_id)
    # ONOFFLINEEVENT wakes the drain; the records become outbox events and are dispatched.
    done = wait_for(
        lambda: Event.objects.filter(event="ONCRMDEALUPDATE", source="offline", status="done").count() == 3,
        timeout=40,
    )
    assert done
    keys = set(Event.objects.filter(source="offline").values_list("object_key", flat=True))
    assert keys == {"ONCRMDEAL:1", "ONCRMDEAL:2", "ONCRMDEAL:3"}
    # The portal's queue is empty: every record was confirmed with event.offline.clear.
    assert client.call("event.offline.list") == []
