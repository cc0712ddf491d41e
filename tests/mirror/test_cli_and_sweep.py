"""`manage.py bitrix mirror sync|status|reconcile`, and the beat's sweep starting due work through a
real Celery worker."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from mirror.entities import ENTITIES
from mirror.models import Deal, SyncState
from mirror.services.schedule import mirror_sweep
from portals.services.client import client_for_portal
from tests.fixtures.portals import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_sync_status_and_reconcile_from_the_command_line(install_portal, redis_client):
    portal = install_portal()
    out = io.StringIO()
    call_command(
        "bitrix",
        "mirror",
        "sync",
        "--portal",
        portal.member_id,
        "--entity",
        "deal",
        stdout=out,
        stderr=io.StringIO(),
    )
    assert "deal: synced 120 rows" in out.getvalue()
    client_for_portal(member_id=portal.member_id).call("crm.deal.delete", {"id": 4})
    out = io.StringIO()
    call_command(
        "bitrix",
        "mirror",
        "reconcile",
        "--portal",
        portal.member_id,
        "--entity",
        "deal",
        stdout=out,
        stderr=io.StringIO(),
    )
    assert "deal: " in out.getvalue() and "1 deleted" in out.getvalue()
    out = io.StringIO()
    call_command("bitrix", "mirror", "status", "--portal", portal.member_id, stdout=out)
    lines = {line.split()[0]: line.split() for line in out.getvalue().splitlines()[1:]}
    assert set(lines) == set(ENTITIES)
    assert lines["deal"][1:3] == ["complete", "119"] and lines["lead"][1] == "new"
    with pytest.raises(CommandError):
        call_command(
            "bitrix", "mirror", "status", "--portal", "nope", stdout=io.StringIO(), stderr=io.StringIO()
        )


def test_background_sync_and_the_sweep_run_on_the_worker(install_portal, redis_client, celery_tasks):
    portal = install_portal()
    out = io.StringIO()
    call_command(
        "bitrix",
        "mirror",
        "sync",
        "--portal",
        portal.member_id,
        "--entity",
        "lead",
        "--background",
        stdout=out,
    )
    assert "queued sync of lead" in out.getvalue()
    wait_for(lambda: SyncState.objects.filter(portal=portal, entity="lead", state="complete").exists())
    celery_tasks.wait_idle()
    # The sweep starts everything not synced yet; then nothing until a reconciliation is due.
    assert mirror_sweep() == len(ENTITIES) - 1
    wait_for(
        lambda: SyncState.objects.filter(portal=portal, state="complete").count() == len(ENTITIES), timeout=60
    )
    celery_tasks.wait_idle()
    assert mirror_sweep() == 0
    a_day_ago = timezone.now() - timedelta(days=1)
    SyncState.objects.filter(portal=portal, entity="deal").update(
        reconciled_at=a_day_ago, updated_at=a_day_ago
    )
    client_for_portal(member_id=portal.member_id).call(
        "crm.deal.update", {"id": 2, "fields": {"TITLE": "missed"}}
    )
    assert mirror_sweep() == 1
    assert mirror_sweep() == 0  # queued a moment ago: not queued twice
    wait_for(lambda: Deal.objects.filter(portal=portal, bitrix_id=2, title="missed").exists(), timeout=30)
