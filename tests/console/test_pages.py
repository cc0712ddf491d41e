"""The console's pages: dashboard, portal list, portal page, its actions and roles, the events list."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from console.models import PortalHealth
from events.models import Event
from portals.bitrix.metrics import Metrics, event_dispatched
from portals.models import Portal
from tests.fixtures.events import form_body, load_payload

pytestmark = pytest.mark.django_db(transaction=True)


def count_in(page: str, element_id: str, attribute: str, value: str) -> int:
    found = re.search(rf'{attribute}="{value}">(\d+)<', page)
    assert found, f"{element_id}: no {attribute}={value}"
    return int(found.group(1))


def test_dashboard_counts_portals_by_state_and_needs_action_first(logged_in, make_portal, fresh_rollups):
    make_portal(member_id="1" * 32, domain="a-ok.example.test")
    make_portal(member_id="2" * 32, domain="b-reauth.example.test", state=Portal.State.REAUTH_REQUIRED)
    make_portal(member_id="3" * 32, domain="c-pay.example.test", state=Portal.State.PAYMENT_REQUIRED)
    failing = make_portal(member_id="4" * 32, domain="d-refresh.example.test")
    PortalHealth.objects.create(
        portal=failing, refresh_failed_at=timezone.now(), refresh_error="bitrix24_timeout"
    )
    for _ in range(3):
        event_dispatched("done", lag=1.0, portal=failing.member_id)
    fresh_rollups()

    page = logged_in("viewer").get("/admin/").content.decode()
    assert count_in(page, "states", "data-state", "active") == 2
    assert count_in(page, "states", "data-state", "reauth_required") == 1
    assert count_in(page, "attention", "data-attention", "refresh") == 1
    assert count_in(page, "attention", "data-attention", "binding") == 0
    listed = re.findall(r"(\w-\w+)\.example\.test</a>", page.split('id="needs-action"')[1].split("</ul>")[0])
    assert listed == ["b-reauth", "c-pay", "d-refresh"]  # worst first; the healthy one isn't there
    charts = re.findall(r'data-label="dispatched" data-total="(\d+)"', page)
    assert charts == ["3"]
    assert "<svg" in page and "cdn" not in page.lower()


def test_dashboard_periods_and_a_bad_one(logged_in, fresh_rollups):
    client = logged_in("viewer")
    for period in ("hour", "day", "week"):
        assert client.get(f"/admin/?period={period}").status_code == 200
    refused = client.get("/admin/?period=month")
    assert refused.status_code == 400 and b"hour, day, week" in refused.content


def test_portal_list_puts_portals_needing_action_first_and_filters(logged_in, make_portal, fresh_rollups):
    make_portal(member_id="1" * 32, domain="a-ok.example.test")
    make_portal(
        member_id="2" * 32,
        domain="z-reauth.example.test",
        state=Portal.State.REAUTH_REQUIRED,
        state_reason="invalid_grant",
    )
    client = logged_in("viewer")
    page = client.get("/admin/portals/portal/").content.decode()
    assert page.index("z-reauth.example.test") < page.index("a-ok.example.test")
    assert "badge-reauth_required" in page and "invalid_grant" in page

    only = client.get("/admin/portals/portal/?attention=reauth").content.decode()
    assert "z-reauth.example.test" in only and "a-ok.example.test" not in only
    searched = client.get("/admin/portals/portal/?q=a-ok").content.decode()
    assert "a-ok.example.test" in searched and "z-reauth.example.test" not in searched


def test_portal_list_shows_failed_and_pending_events_and_errors(
    client, logged_in, make_portal, fresh_rollups
):
    payload = load_payload("oncrmdealupdate__basic")
    portal = make_portal(payload)
    response = client.generic(
        "POST", "/bitrix/events/", form_body(payload), content_type="application/x-www-form-urlencoded"
    )
    assert response.json()["result"] == "accepted"
    event_dispatched("failed", lag=1.0, portal=portal.member_id)
    Metrics().error(portal.member_id, "ACCESS_DENIED", method="crm.deal.get", status=403)
    fresh_rollups()
    viewer = logged_in("viewer")
    page = viewer.get("/admin/portals/portal/").content.decode()
    row = page.split(portal.member_id)[1]
    assert re.search(r'<span class="bad">1</span> / 1', row)  # one failed in 24 h, one pending
    assert "ACCESS_DENIED crm.deal.get" in row
    failed = viewer.get("/admin/portals/portal/?events=failed").content.decode()
    assert portal.member_id in failed


def test_the_list_reads_its_figures_per_page_not_per_row(
    logged_in, make_portal, fresh_rollups, django_assert_max_num_queries
):
    for i in range(30):
        make_portal(member_id=f"{i:032x}", domain=f"p{i:02}.example.test")
    client = logged_in("viewer")
    client.get("/admin/portals/portal/")  # warm the session and content types
    with django_assert_max_num_queries(14):
        assert client.get("/admin/portals/portal/").status_code == 200


def test_portal_page_shows_token_health_events_and_records(logged_in, client, make_portal, fresh_rollups):
    payload = load_payload("oncrmdealupdate__basic")
    portal = make_portal(payload, expires_at=timezone.now() + timedelta(minutes=30))
    response = client.generic(
        "POST", "/bitrix/events/", form_body(payload), content_type="application/x-www-form-urlencoded"
    )
    Event.objects.filter(pk=response.json()["id"]).update(
        status="failed", last_error="RuntimeError: handler down"
    )
    page = logged_in("viewer").get(f"/admin/portals/portal/{portal.pk}/change/").content.decode()
    assert 'id="token-health"' in page and "RuntimeError: handler down" in page
    assert 'id="view-only"' in page and 'id="act-refresh"' not in page  # a viewer gets no buttons
    assert "ONCRMDEALUPDATE" in page


def test_a_viewer_cannot_act_and_an_operator_is_recorded(logged_in, client, make_portal, fresh_rollups):
    payload = load_payload("oncrmdealupdate__basic")
    portal = make_portal(payload)
    response = client.generic(
        "POST", "/bitrix/events/", form_body(payload), content_type="application/x-www-form-urlencoded"
    )
    event = Event.objects.get(pk=response.json()["id"])
    Event.objects.filter(pk=event.pk).update(status="failed", attempts=6)

    viewer = logged_in("viewer")
    assert viewer.post(f"/admin/portals/portal/{portal.pk}/act/replay_failed/").status_code == 403
    assert viewer.post(f"/admin/portals/portal/{portal.pk}/replay/{event.pk}/").status_code == 403
    assert Event.objects.get(pk=event.pk).status == "failed"

    operator = logged_in("operator")
    assert operator.get(f"/admin/portals/portal/{portal.pk}/act/replay_failed/").status_code == 405
    unknown = operator.post(f"/admin/portals/portal/{portal.pk}/act/explode/")
    assert unknown.status_code == 400 and b"replay_failed" in unknown.content
    done = operator.post(f"/admin/portals/portal/{portal.pk}/act/replay_failed/")
    assert done.status_code == 302
    assert Event.objects.get(pk=event.pk).status == "pending"
    record = LogEntry.objects.get(object_id=str(portal.pk))
    assert (
        record.user.username == "operator"
        and record.get_change_message() == "replay_failed: re-queued 1 event(s)"
    )
    page = operator.get(f"/admin/portals/portal/{portal.pk}/change/").content.decode()
    assert "replay_failed: re-queued 1 event(s)" in page.split('id="operator-records"')[1]


def test_refresh_now_goes_through_the_single_flight_refresh(
    logged_in, install_portal, fresh_rollups, portals_sandbox
):
    portal = install_portal(1)
    before = Portal.objects.get(pk=portal.pk).access_token
    operator = logged_in("operator")
    assert operator.post(f"/admin/portals/portal/{portal.pk}/act/refresh/").status_code == 302
    after = Portal.objects.get(pk=portal.pk)
    assert after.access_token != before and after.last_refreshed_at is not None
    assert LogEntry.objects.get(object_id=str(portal.pk)).get_change_message() == "refresh: refreshed"
    fresh_rollups()
    page = operator.get("/admin/?period=hour").content.decode()
    assert re.search(r'data-label="made" data-total="1"', page)


def test_reauth_link_starts_the_code_flow_and_expires(
    logged_in, client, install_portal, settings, portals_sandbox
):
    portal = install_portal(1)
    operator = logged_in("operator")
    response = operator.post(f"/admin/portals/portal/{portal.pk}/reauth-link/", follow=True)
    link = re.search(r'id="reauth-link" href="([^"]+)"', response.content.decode()).group(1)
    path = urlsplit(link).path
    assert LogEntry.objects.get(object_id=str(portal.pk)).get_change_message().startswith("reauth_link:")

    client.logout()  # the portal's administrator has no console account
    redirect = client.get(path)
    assert redirect.status_code == 302 and "/oauth/authorize/" in redirect["Location"]
    assert client.get(path[:-5] + "xxxx/").status_code == 404
    settings.BITRIX24_CONSOLE_REAUTH_LINK_DAYS = 0
    expired = client.get(path)
    assert expired.status_code == 410 and b"expired" in expired.content


def test_events_list_filters_by_portal_event_state_and_time(logged_in, client, make_portal, fresh_rollups):
    first = load_payload("oncrmdealupdate__basic")
    one = make_portal(first)
    second = load_payload("oncrmdealadd__basic", auth={"member_id": "f" * 32, "application_token": "t" * 32})
    make_portal(second)
    for payload in (first, second):
        client.generic(
            "POST", "/bitrix/events/", form_body(payload), content_type="application/x-www-form-urlencoded"
        )
    Event.objects.filter(portal=one).update(status="failed", last_error="ValueError: " + "x" * 300)
    Event.objects.exclude(portal=one).update(received_at=timezone.now() - timedelta(days=3))
    viewer = logged_in("viewer")

    def ids(query: str) -> set[int]:
        page = viewer.get(f"/admin/events/event/?{query}").content.decode()
        return {int(i) for i in re.findall(r"/admin/events/event/(\d+)/change/", page)}

    mine = set(Event.objects.filter(portal=one).values_list("id", flat=True))
    everything = set(Event.objects.values_list("id", flat=True))
    assert ids(f"portal={one.member_id}") == mine
    assert ids("event=ONCRMDEALUPDATE") == mine
    assert ids("status__exact=failed") == mine
    assert ids("received=day") == mine
    assert ids("") == everything
    detail = viewer.get(f"/admin/events/event/{min(mine)}/change/").content.decode()
    assert "x" * 300 in detail  # the whole error
    assert first["auth"]["application_token"] not in detail


def test_logins_are_throttled(client, console_user):
    console_user("viewer")
    for _ in range(5):
        client.post("/admin/login/", {"username": "viewer", "password": "wrong"})
    locked = client.post("/admin/login/", {"username": "viewer", "password": "pw-console-1"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
