"""End of payment → renewal → the portal recovers by itself, with the default settings.

The whole path over real HTTP: the sandbox installs the app (live server) and ends, then renews,
its payment; ONAPPPAYMENT is bound by default, so the renewal reaches the receiver and a real Celery
worker re-checks app.info. No operator action anywhere.
"""

from __future__ import annotations

import pytest

from events.models import Event
from events.services.binding import Binding, app_events_desired, events_handler_url
from portals.bitrix.exceptions import Bitrix24PaymentRequired
from portals.models import Portal
from portals.services.client import client_for_portal
from tests.fixtures.portals import app_card_urls, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _bound(member_id: str) -> set[Binding]:
    rows = client_for_portal(member_id=member_id).call("event.get") or []
    return {Binding(r["event"], r["handler"], False) for r in rows if not int(r["offline"])}


def test_a_renewed_payment_restores_the_portal_without_an_operator(
    live_server, portals_sandbox, settings, redis_client, celery_worker
):
    settings.BITRIX24_APP_URL = live_server.url
    settings.ALLOWED_HOSTS = ["*"]
    sandbox = portals_sandbox
    sandbox.control("lifecycle", urls=app_card_urls(live_server.url), finish_mode="auto")
    member_id = sandbox.portal(1)["member_id"]
    sandbox.control("lifecycle/install", portal=1)
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    portal = wait_for(lambda: Portal.objects.filter(member_id=member_id, state="active").first())
    assert Binding("ONAPPPAYMENT", events_handler_url(), False) in app_events_desired(portal=portal)
    wait_for(lambda: app_events_desired(portal=portal) <= _bound(member_id), what="events bound")

    # The payment ends: the app finds out (here from a call answered PAYMENT_REQUIRED).
    sandbox.control("lifecycle/payment", portal=1, expired=True)
    with pytest.raises(Bitrix24PaymentRequired):
        client_for_portal(member_id=member_id).call("crm.deal.get", {"id": 1})
    wait_for(lambda: Portal.objects.filter(pk=portal.pk, state="payment_required").exists())

    # Renewed on the portal: ONAPPPAYMENT → app.info re-checked → active again, calls work.
    sandbox.control("lifecycle/payment", portal=1, expired=False, days=30)
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    renewal = sandbox.control_get("lifecycle/deliveries?event=ONAPPPAYMENT")["deliveries"][-1]
    assert renewal["url"] == events_handler_url() and renewal["status"] == 200
    wait_for(lambda: Portal.objects.filter(pk=portal.pk, state="active").exists(), what="portal active again")
    wait_for(lambda: Event.objects.filter(portal=portal, event="ONAPPPAYMENT", status="done").exists())
    assert client_for_portal(member_id=member_id).call("crm.deal.get", {"id": 1})["ID"] == "1"
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
