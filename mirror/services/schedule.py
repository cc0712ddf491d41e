"""What the beat starts: initial syncs not yet run or interrupted, and reconciliations that are due."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from portals.conf import app_settings
from portals.models import Portal

from ..entities import ENTITIES
from ..models import SyncState
from .queue import reconcile_queue, sync_queue
from .sync import LEASE_TTL


def mirror_sweep(*, limit: int = 500) -> int:
    """Queue the work due on active portals; returns how many tasks were queued.

    Due: an entity never synced (or whose sync failed, or stalled: a running sync not touched for
    longer than its lease), and a complete one not reconciled within BITRIX24_MIRROR_RECONCILE_MINUTES.
    Queueing touches the entity's state, and an entity touched within the lease's time is not
    queued again: a sweep doesn't pile copies of a task that hasn't started yet. A task that finds
    the work running elsewhere does nothing (the lease).
    """
    now = timezone.now()
    reconcile_before = now - timedelta(minutes=app_settings.mirror_reconcile_minutes)
    quiet_before = now - timedelta(seconds=LEASE_TTL)
    queued = 0
    portals = Portal.objects.active().values_list("id", flat=True)[:limit]
    for portal_id in portals:
        states = {s.entity: s for s in SyncState.objects.filter(portal_id=portal_id)}
        for entity in ENTITIES:
            state = states.get(entity)
            if state is None:
                state = SyncState.objects.create(portal_id=portal_id, entity=entity)
            elif state.updated_at > quiet_before:
                continue  # queued or working a moment ago
            if state.state == SyncState.State.COMPLETE:
                if state.reconciled_at is not None and state.reconciled_at >= reconcile_before:
                    continue
                queue = reconcile_queue
            else:
                queue = sync_queue  # new, failed, or running but stalled
            state.save(update_fields=["updated_at"])
            queue(portal_id, entity)
            queued += 1
    return queued
