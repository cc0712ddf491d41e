"""The beat sweep with a real Celery worker: keep-alive and warm-up refreshes, nothing else."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from portals.models import Portal
from portals.tasks import portals_tokens_sweep
from tests.fixtures.portals import sandbox_grants

pytestmark = pytest.mark.django_db(transaction=True)


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_sweep_refreshes_only_due_portals(install_portal, portals_sandbox, settings, celery_worker):
    settings.BITRIX24_TOKEN_SWEEP_JITTER = 0.5
    now = timezone.now()
    dormant = install_portal(1)
    warm = install_portal(2)
    idle = install_portal(3)
    # Each install queues the events binding on the worker, whose calls may refresh on demand:
    # let it finish before the portals are aged.
    from events.services.binding import app_events_desired

    for index, portal in ((1, dormant), (2, warm), (3, idle)):
        path = f"lifecycle/registrations?portal={index}"
        wanted = len(app_events_desired(portal=portal))
        wait_until(
            lambda path=path, wanted=wanted: len(portals_sandbox.control_get(path)["handlers"]) >= wanted
        )
    Portal.objects.filter(pk=dormant.pk).update(refresh_token_issued_at=now - timedelta(days=25))
    Portal.objects.filter(pk=warm.pk).update(
        work_due_at=now + timedelta(minutes=3), expires_at=now + timedelta(minutes=1)
    )
    Portal.objects.filter(pk=idle.pk).update(expires_at=now - timedelta(hours=3))  # refreshed on demand only
    before = {p.member_id: sandbox_grants(portals_sandbox, p.member_id) for p in (dormant, warm, idle)}

    counts = portals_tokens_sweep()  # the beat entry point; its refreshes run on the worker
    assert counts == {"warm": 1, "keepalive": 1}

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if Portal.objects.get(pk=dormant.pk).refresh_token_issued_at > now and Portal.objects.get(
            pk=warm.pk
        ).expires_at > now + timedelta(minutes=30):
            break
        time.sleep(0.2)
    after = {p.member_id: sandbox_grants(portals_sandbox, p.member_id) for p in (dormant, warm, idle)}
    assert after[dormant.member_id] - before[dormant.member_id] == 1
    assert after[warm.member_id] - before[warm.member_id] == 1
    assert after[idle.member_id] == before[idle.member_id]


def test_sixteen_queued_refreshes_make_one_grant(install_portal, portals_sandbox, celery_tasks):
    from events.services.binding import app_events_desired
    from portals.tasks import WARM, portal_tokens_refresh_task
    from tests.fixtures.portals import expire_access_token

    portal = install_portal(1)
    wanted = len(app_events_desired(portal=portal))
    registrations = "lifecycle/registrations?portal=1"
    wait_until(lambda: len(portals_sandbox.control_get(registrations)["handlers"]) >= wanted)
    stale = expire_access_token(portal)
    before = sandbox_grants(portals_sandbox, portal.member_id)
    for _ in range(16):
        portal_tokens_refresh_task.delay(portal.pk, WARM)
    wait_until(lambda: Portal.objects.get(pk=portal.pk).access_token != stale)
    celery_tasks.wait_idle()
    # Every one of the sixteen ran to its end: the others found the fresh pair under the lock.
    assert celery_tasks.finished.count(portal_tokens_refresh_task.name) == 16
    assert sandbox_grants(portals_sandbox, portal.member_id) - before == 1
