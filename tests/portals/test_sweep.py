"""The sweep picks only portals with work due soon (and expiring tokens) or ageing refresh tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from portals.services.sweep import portals_sweep_plan

from .helpers import make_portal

pytestmark = pytest.mark.django_db


def test_sweep_selects_by_policy(settings):
    settings.BITRIX24_WARM_WORK_MINUTES = 10
    settings.BITRIX24_DORMANT_REFRESH_DAYS = 20
    now = timezone.now()
    due_expiring = make_portal(work_due_at=now + timedelta(minutes=5), expires_at=now + timedelta(minutes=2))
    due_fresh = make_portal(work_due_at=now + timedelta(minutes=5), expires_at=now + timedelta(minutes=50))
    later_work = make_portal(work_due_at=now + timedelta(hours=2), expires_at=now - timedelta(minutes=1))
    idle_expired = make_portal(expires_at=now - timedelta(hours=5))  # on demand only
    long_ago = now - timedelta(days=21)
    dormant = make_portal(refresh_token_issued_at=long_ago, expires_at=long_ago)
    young = make_portal(refresh_token_issued_at=now - timedelta(days=19))
    dead = make_portal(state="reauth_required", refresh_token_issued_at=now - timedelta(days=40))

    plan = portals_sweep_plan(now=now)

    assert plan.warm == [due_expiring.pk]
    assert plan.keepalive == [dormant.pk]
    for portal in (due_fresh, later_work, idle_expired, young, dead):
        assert portal.pk not in plan.warm + plan.keepalive


def test_work_schedule_keeps_the_earliest_due_time():
    from portals.models import Portal
    from portals.services.work import portal_work_done, portal_work_schedule

    now = timezone.now()
    portal = make_portal()
    portal_work_schedule(portal_id=portal.pk, due_at=now + timedelta(hours=2))
    portal_work_schedule(portal_id=portal.pk, due_at=now + timedelta(hours=1))
    portal_work_schedule(portal_id=portal.pk, due_at=now + timedelta(hours=3))
    assert Portal.objects.get(pk=portal.pk).work_due_at == now + timedelta(hours=1)
    portal_work_done(portal_id=portal.pk)
    assert Portal.objects.get(pk=portal.pk).work_due_at is None
