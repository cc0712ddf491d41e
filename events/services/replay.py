"""Retries, replay, sweep and prune of the outbox (docs/events.md, "Storage and dispatch").

A failed event waits :func:`retry_delay` seconds; :func:`retry_schedule_next` queues one delayed drain
per shard for its earliest retry. :func:`events_replay` puts events back, :func:`events_sweep` wakes
shards whose wake-ups were lost, :func:`events_prune` deletes old finished events.
"""

from __future__ import annotations

import functools
import logging
import random
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from events.models import Event
from events.services.queue import drain_queue
from events.services.shards import shard_lock_free
from events.services.wake import events_wake, events_wake_many, logged_if_down, wake_flag_clear
from portals.bitrix.retry import Backoff
from portals.conf import app_settings
from portals.services.coordination import coordination

logger = logging.getLogger("events")


def retry_flag(shard: int) -> str:
    """The name of the flag set while ``shard`` has a delayed drain queued for its next retry."""
    return f"events:retry:{shard}"


def retry_scheduled_clear(shard: int) -> None:
    """Called by the delayed drain itself: from now on a new one may be queued."""
    with logged_if_down([shard]):
        coordination().flag_clear(retry_flag(shard))


def retry_delay(attempts: int, *, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempts + 1`` (``attempts`` >= 1 failed so far): the shared
    backoff with equal jitter, 50–100% of BASE · 2^(attempts−1) capped at MAX (docs/events.md)."""
    policy = Backoff(
        base=app_settings.event_retry_base_seconds,
        cap=app_settings.event_retry_max_seconds,
        jitter="equal",
    )
    return policy.delay(attempts - 1, rng=rng)


def retry_schedule_next(shard: int) -> None:
    """Queue a drain for the shard's earliest retry, so retries don't wait for the sweep."""

    first = (
        Event.objects.pending()
        .filter(shard=shard, available_at__gt=timezone.now())
        .order_by("available_at")
        .values_list("available_at", flat=True)
        .first()
    )
    if first is None:
        return
    delay = max((first - timezone.now()).total_seconds(), 0.0) + 0.05
    with logged_if_down([shard]):
        # One delayed drain per shard at a time: every drain run ends here, and retries pending
        # behind a later one are picked up by that drain or by the sweep.
        # The flag outlives the countdown so a lost task still frees it (the sweep does the work).
        (was_set,) = coordination().flags_set([retry_flag(shard)], ttl=delay + 60.0)
        if not was_set:
            return
        drain_queue(shard, scheduled=True, countdown=delay)


def events_replay(
    *,
    event_ids: list[int] | None = None,
    failed: bool = False,
    portal_member_id: str | None = None,
    event_name: str | None = None,
) -> int:
    """Put events back into the outbox (status pending, attempts 0) and wake their shards.

    ``event_ids`` selects events by id whatever their status; ``failed`` selects failed events,
    optionally narrowed by portal and event name. Returns how many events were re-queued.
    """
    if event_ids is None and not failed:
        raise ValueError("give event ids or failed=True")
    queryset = Event.objects.all()
    if event_ids is not None:
        queryset = queryset.filter(id__in=event_ids)
    if failed:
        queryset = queryset.filter(status=Event.Status.FAILED)
    if portal_member_id:
        queryset = queryset.filter(portal__member_id=portal_member_id)
    if event_name:
        queryset = queryset.filter(event=event_name.upper())
    shards = set(queryset.values_list("shard", flat=True).distinct())
    count = queryset.update(
        status=Event.Status.PENDING, attempts=0, available_at=timezone.now(), processed_at=None
    )
    for shard in shards:
        transaction.on_commit(functools.partial(events_wake, shard=shard, force=True))
    logger.info("events.replay", extra={"count": count})
    return count


def events_sweep() -> list[int]:
    """Wake every shard that has due events: lost wake-ups and dead drainers. Returns the shards.

    A drainer killed mid-drain leaves its shard's wake flag set, which would turn every wake-up of
    the shard away until the flag expires; its shard lock, though, died with it. So the flag of a
    shard whose lock is free is deleted before the wake-up, which then queues a drainer. A shard
    whose lock is held keeps its flag: its live drainer will find the due events.
    """
    shards = sorted(set(Event.objects.due(timezone.now()).values_list("shard", flat=True).distinct()))
    if coordination().flags_shared:
        for shard in shards:
            if shard_lock_free(shard):
                wake_flag_clear(shard)
    events_wake_many(shards=set(shards), force=True)
    return shards


def events_prune(*, now: datetime | None = None) -> int:
    """Delete finished events older than the retention; failed ones stay until replayed or cleared."""
    cutoff = (now or timezone.now()) - timedelta(days=app_settings.event_retention_days)
    deleted, _ = Event.objects.finished_before(cutoff).delete()
    return deleted
