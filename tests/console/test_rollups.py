"""Per-portal rollups kept as figures arrive: from the receiver, the drainer, the client, refreshes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from console.models import PortalHealth, PortalRollup, Resolution, TotalRollup
from console.rollups import Rollups, rollups_prune, rollups_write
from portals.bitrix.metrics import Metrics, event_dispatched, token_refresh
from tests.fixtures.events import form_body, load_payload

pytestmark = pytest.mark.django_db(transaction=True)


def post_event(client, payload):
    return client.generic(
        "POST", "/bitrix/events/", form_body(payload), content_type="application/x-www-form-urlencoded"
    )


def test_the_receiver_counts_accepted_duplicate_and_refused_events(client, make_portal, fresh_rollups):
    payload = load_payload("oncrmdealupdate__basic")
    portal = make_portal(payload)
    assert post_event(client, payload).json()["result"] == "accepted"
    assert post_event(client, payload).json()["result"] == "duplicate"
    forged = load_payload("oncrmdealupdate__basic", auth={"application_token": "forged"})
    assert post_event(client, forged).status_code == 403
    fresh_rollups()

    minute = PortalRollup.objects.get(portal=portal, resolution=Resolution.MINUTE)
    hour = PortalRollup.objects.get(portal=portal, resolution=Resolution.HOUR)
    for row in (minute, hour):
        assert (row.events_accepted, row.events_duplicate, row.events_refused) == (1, 1, 0)
    # A refusal names no portal it could be trusted for: it counts in the total only.
    total = TotalRollup.objects.get(resolution=Resolution.MINUTE)
    assert (total.events_accepted, total.events_refused) == (1, 1)


def test_flushes_add_up_and_keep_the_longest_lag(make_portal, fresh_rollups):
    portal = make_portal(member_id="a" * 32)
    event_dispatched("done", lag=2.0, portal=portal.member_id)
    fresh_rollups()
    event_dispatched("done", lag=7.5, portal=portal.member_id)
    event_dispatched("failed", lag=1.0, portal=portal.member_id)
    event_dispatched("retry", lag=1.0, portal=portal.member_id)
    fresh_rollups()
    row = PortalRollup.objects.get(portal=portal, resolution=Resolution.HOUR)
    assert (row.events_done, row.events_failed, row.events_retried) == (2, 1, 1)
    assert row.dispatch_lag_max == 7.5 and row.dispatch_lag_sum == pytest.approx(11.5)


def test_rest_calls_limits_and_errors_reach_the_portal_and_its_health(make_portal, fresh_rollups):
    portal = make_portal(member_id="b" * 32)
    metrics = Metrics()
    metrics.call(portal.member_id, "crm.deal.list", latency=0.1, wait=0.5, operating=1.25)
    metrics.call(portal.member_id, "crm.deal.get", latency=0.1, wait=0.0)
    metrics.error(portal.member_id, "QUERY_LIMIT_EXCEEDED", method="crm.deal.list", status=503)
    metrics.error(portal.member_id, "OPERATION_TIME_LIMIT", method="crm.deal.list", status=429)
    metrics.error("webhook.example.test", "ACCESS_DENIED", method="user.get", status=403)
    fresh_rollups()

    row = PortalRollup.objects.get(portal=portal, resolution=Resolution.MINUTE)
    assert (row.rest_calls, row.rest_errors, row.rest_limited_503, row.rest_limited_429) == (2, 2, 1, 1)
    assert row.limiter_wait_seconds == pytest.approx(0.5) and row.operating_seconds == pytest.approx(1.25)
    assert TotalRollup.objects.get(resolution=Resolution.MINUTE).rest_errors == 3  # the webhook's too
    health = PortalHealth.objects.get(portal=portal)
    assert health.last_error == "OPERATION_TIME_LIMIT crm.deal.list"
    assert [text for _, text in health.recent_errors] == [
        "QUERY_LIMIT_EXCEEDED crm.deal.list",
        "OPERATION_TIME_LIMIT crm.deal.list",
    ]
    assert health.last_call_at is not None


def test_refresh_failures_mark_the_portal(make_portal, fresh_rollups):
    portal = make_portal(member_id="c" * 32)
    token_refresh("refreshed", portal=portal.member_id)
    token_refresh("Bitrix24InvalidGrant", portal=portal.member_id)
    fresh_rollups()
    row = PortalRollup.objects.get(portal=portal, resolution=Resolution.HOUR)
    assert (row.refreshes, row.refresh_failures) == (1, 1)
    health = PortalHealth.objects.get(portal=portal)
    assert health.refresh_error == "bitrix24_invalid_grant" and health.refresh_failed_at is not None


def test_minute_and_hour_rows_land_in_their_buckets(make_portal, fresh_rollups):
    portal = make_portal(member_id="d" * 32)
    moments = iter([3600 * 1000 + 59, 3600 * 1000 + 61, 3600 * 1001 + 1])
    local = Rollups(clock=lambda: next(moments))
    for _ in range(3):
        local.observe("received", portal.member_id, {}, "accepted")
    local.flush()
    minutes = PortalRollup.objects.filter(portal=portal, resolution=Resolution.MINUTE).order_by("start")
    hours = PortalRollup.objects.filter(portal=portal, resolution=Resolution.HOUR).order_by("start")
    assert [(r.start.timestamp(), r.events_accepted) for r in minutes] == [
        (3600 * 1000, 1),
        (3600 * 1000 + 60, 1),
        (3600 * 1001, 1),
    ]
    assert [(r.start.timestamp(), r.events_accepted) for r in hours] == [(3600 * 1000, 2), (3600 * 1001, 1)]


def test_prune_keeps_two_hours_of_minutes_and_the_retention_of_hours(make_portal, fresh_rollups, settings):
    settings.BITRIX24_CONSOLE_ROLLUP_DAYS = 2
    portal = make_portal(member_id="e" * 32)
    now = timezone.now()
    counts = {}
    for age in (timedelta(minutes=30), timedelta(hours=3), timedelta(days=1), timedelta(days=3)):
        moment = (now - age).timestamp()
        counts[(portal.member_id, int(moment // 60) * 60)] = {"events_accepted": 1.0}
    rollups_write(counts=counts, health={})
    rollups_prune(now=now)
    minutes = PortalRollup.objects.filter(portal=portal, resolution=Resolution.MINUTE).count()
    hours = PortalRollup.objects.filter(portal=portal, resolution=Resolution.HOUR).count()
    assert (minutes, hours) == (1, 3)
