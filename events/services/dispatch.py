"""Draining the outbox: pending events → their handlers, at least once, in order per object.

Waking: after an event commits, :func:`events_wake` sets a per-shard flag in Redis with SET NX and
queues one drain task only if the flag was not already set, so a burst of events costs one task.
The drainer clears the flag when it runs out of work and then looks once more, so an event committed
while it was finishing is never left behind; a periodic sweep (``events_sweep``) covers a worker that
died holding the flag (which also expires).

Ordering: all events of one (portal, object) fall into one shard; a shard is drained by one worker at
a time (a PostgreSQL advisory lock, released by the server if the worker dies; on SQLite, which is one
machine, a file lock, released by the OS), in (ts, id) order. An event waiting for a retry blocks the
later events of its object until it is done or failed.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from bitrix_app.redis_client import redis_client
from events import registry
from events.models import Event
from portals.bitrix.events import LIFECYCLE_EVENTS, payload_from_json
from portals.models import Portal

logger = logging.getLogger("events")

# pg_try_advisory_lock(classid, objid): the class id keeps our locks apart from other areas' ones.
_LOCK_CLASS = 0x0E7E
_WAKE_FLAG_SECONDS = 120
_MAX_ERROR_CHARS = 2000
# A drainer that caught up waits this long before its next batch (dispatch latency, not intake's):
# every batch costs a SELECT and an UPDATE, built and run whatever its size. At 1,000 events/s over
# 8 shards, 50 ms made batches of a few events and the worker spent a third of its CPU building
# queries; 200 ms cut its CPU per event by a quarter (docs/events.md, Benchmark).
_GATHER_SECONDS = 0.2


def _redis() -> redis.Redis:
    client = redis_client()
    assert client is not None, "called only with REDIS_URL set"
    return client


def _wake_key(shard: int) -> str:
    return f"{settings.REDIS_KEY_PREFIX}events:wake:{shard}"


# A process that saw a shard's wake flag set (or set it) less than _WAKE_MEMO_SECONDS ago skips the
# Redis round trip: a drainer is queued or running. That is safe because a drainer, after clearing
# the flag, waits 2 × _WAKE_MEMO_SECONDS before its last look: an event committed within the memo
# window after the flag was seen is committed before that last look, which therefore finds it.
_WAKE_MEMO_SECONDS = 0.05
_wake_seen: dict[int, float] = {}


def events_wake(*, shard: int, force: bool = False) -> None:
    """Make sure a drainer for ``shard`` is queued (one for many events).

    ``force`` skips the in-process memo (a drainer handing over to the next one).
    """
    events_wake_many(shards={shard}, force=force)


def events_wake_many(*, shards: set[int], force: bool = False) -> None:
    """:func:`events_wake` for several shards with one Redis round trip (a group commit's batch)."""
    from events.tasks import events_drain

    if not settings.REDIS_URL:  # single-process mode: tasks run inline
        for shard in sorted(shards):
            events_drain.delay(shard)
        return
    seen = time.monotonic()
    due = sorted(
        shard for shard in shards if force or seen - _wake_seen.get(shard, -1.0) >= _WAKE_MEMO_SECONDS
    )
    if not due:
        return
    pipe = _redis().pipeline(transaction=False)
    for shard in due:
        _wake_seen[shard] = seen  # taken before the SET: the flag existed at least from this moment
        pipe.set(_wake_key(shard), "1", nx=True, ex=_WAKE_FLAG_SECONDS)
    for shard, was_set in zip(due, pipe.execute(), strict=True):
        if was_set:
            events_drain.delay(shard)


class ShardWaker:
    """Wakes shards from one background thread per process, so no request waits on Redis or the broker.

    A group commit's leader used to wake its batch's shards itself before answering (a Redis round
    trip, sometimes a broker publish); under load a new Redis connection once held it for 5 s
    (docs/events.md, Benchmark). Now it hands the shards over and answers, and the thread wakes all
    it was handed while busy with one round trip. A wake-up that fails, or that the process exits
    before sending, is made good by the periodic sweep (``events_sweep``): the events are committed.
    """

    def __init__(self, wake: Callable[[set[int]], None]):
        self._wake = wake
        self._reset()
        # A forked child has no thread, and must not inherit a lock some thread held at fork time.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._pending: set[int] = set()
        self._thread: threading.Thread | None = None

    def submit(self, shards: set[int]) -> None:
        with self._cond:
            self._pending |= shards
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="events-shard-waker", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                shards, self._pending = self._pending, set()
            try:
                self._wake(shards)
            except Exception as e:
                logger.warning(
                    "events.wake_failed", extra={"error": type(e).__name__, "shards": sorted(shards)}
                )
            finally:
                close_old_connections()  # in single-process mode the drain itself runs here


_waker = ShardWaker(lambda shards: events_wake_many(shards=shards))


def events_wake_soon(*, shards: set[int]) -> None:
    """:func:`events_wake_many` from the process's waker thread: returns at once.

    In single-process mode (tasks run inline) the drain itself then runs in that thread.
    """
    _waker.submit(shards)


def _wake_flag_clear(shard: int) -> None:
    if settings.REDIS_URL:
        _redis().delete(_wake_key(shard))


@contextmanager
def _shard_lock(shard: int) -> Iterator[bool]:
    """Try to take the right to drain ``shard``; yields whether this caller has it."""
    if connection.vendor != "postgresql":
        with _file_lock(shard) as acquired:
            yield acquired
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_CLASS, shard])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_CLASS, shard])


@contextmanager
def _file_lock(shard: int) -> Iterator[bool]:
    # SQLite is one machine: an flock on a file beside the database excludes other threads and
    # processes alike and, like the advisory lock, is released when its holder dies. (The standard
    # library's fcntl does it in a few lines; no package needed.)
    database = Path(str(connection.settings_dict["NAME"]))
    path = database.with_name(f"{database.name}.events-shard-{shard}.lock")
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class DrainReport:
    done: int = 0
    retried: int = 0
    failed: int = 0
    ignored: int = 0

    @property
    def processed(self) -> int:
        return self.done + self.retried + self.failed + self.ignored


def _retry_key(shard: int) -> str:
    return f"{settings.REDIS_KEY_PREFIX}events:retry:{shard}"


def events_drain_shard(
    *, shard: int, time_budget: float = 2.0, scheduled: bool = False
) -> DrainReport | None:
    """Dispatch the due events of one shard until none is left or ``time_budget`` seconds passed.

    Returns None when another worker is draining the shard (it will see our events too). When the
    budget runs out with work left, the shard is woken again at the back of the queue: with more
    shards than worker slots, shards take turns instead of one busy shard starving the others (and
    a shard that waits its turn is drained in bigger, cheaper batches).
    """
    report = DrainReport()
    if scheduled and settings.REDIS_URL:
        # This is the delayed drain of a retry: from now on a new one may be scheduled.
        _redis().delete(_retry_key(shard))
    with _shard_lock(shard) as acquired:
        if not acquired:
            return None
        started = timezone.now()
        portals: dict[int, Portal] = {}
        while True:
            batch = _drain_batch(shard=shard, now=timezone.now(), report=report, portals=portals)
            if batch:
                if (timezone.now() - started).total_seconds() > time_budget:
                    _wake_flag_clear(shard)
                    events_wake(shard=shard, force=True)
                    break
                if batch < settings.BITRIX24_EVENT_BATCH_SIZE:
                    # The shard is nearly caught up: let events gather for a moment, so the next
                    # batch's fixed cost (its SELECT and UPDATE) is shared by more events.
                    time.sleep(_GATHER_SECONDS)
                continue
            _wake_flag_clear(shard)
            # Anything committed before the flag was cleared, or within the web processes' memo
            # window after they last saw it, is visible after this pause; anything later set the
            # flag again and queued a drainer of its own.
            time.sleep(2 * _WAKE_MEMO_SECONDS)
            if not Event.objects.due(timezone.now()).filter(shard=shard).exists():
                break
    _schedule_next_retry(shard)
    return report


def _schedule_next_retry(shard: int) -> None:
    """Queue a drain for the shard's earliest retry, so retries don't wait for the sweep."""
    from events.tasks import events_drain

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
    if settings.REDIS_URL:
        # One delayed drain per shard at a time: every drain run ends here, and retries pending
        # behind a later one are picked up by that drain or by the sweep.
        # The key outlives the countdown so a lost task still frees it (the sweep does the work).
        ttl = int(delay * 1000) + 60_000
        if not _redis().set(_retry_key(shard), "1", nx=True, px=ttl):
            return
    events_drain.apply_async(args=[shard], kwargs={"scheduled": True}, countdown=delay)


@dataclass(frozen=True, slots=True)
class DueEvent:
    """The columns of a pending event that dispatching reads (a model instance costs more)."""

    id: int
    portal_id: int
    event: str
    object_key: str
    ts: datetime
    attempts: int
    payload: dict[str, Any]


def _due_events(*, shard: int, now: datetime) -> list[DueEvent]:
    """Due events of ``shard`` in (ts, id) order, minus those behind a retry-waiting event of their object.

    One query (values, not model instances: building those cost more worker CPU than the handlers).
    Rows waiting for a retry are pending with attempts > 0, which event_retry_idx holds apart, so
    the NOT EXISTS is a lookup in a tiny index.
    """
    behind_retry = (
        Event.objects.pending()
        .filter(
            shard=shard,
            attempts__gt=0,
            available_at__gt=now,
            portal_id=OuterRef("portal_id"),
            object_key=OuterRef("object_key"),
        )
        .filter(Q(ts__lt=OuterRef("ts")) | Q(ts=OuterRef("ts"), id__lt=OuterRef("id")))
    )
    rows = (
        Event.objects.due(now)
        .filter(shard=shard)
        .filter(~Exists(behind_retry))
        .order_by("ts", "id")
        .values_list("id", "portal_id", "event", "object_key", "ts", "attempts", "payload")
    )[: settings.BITRIX24_EVENT_BATCH_SIZE]
    return [DueEvent(*row) for row in rows]


def _drain_batch(*, shard: int, now: datetime, report: DrainReport, portals: dict[int, Portal]) -> int:
    """Dispatch one batch; returns how many events changed state (0: nothing left to do now).

    ``portals`` is the drain run's cache of the batch's portals (a run lasts seconds; a lifecycle
    event drops its portal from it, since its handlers change the portal).
    """
    due = _due_events(shard=shard, now=now)
    if not due:
        return 0
    missing = {row.portal_id for row in due} - portals.keys()
    if missing:
        portals.update(Portal.objects.in_bulk(missing))
    blocked: dict[tuple[int, str], tuple[datetime, int]] = {}
    done: list[int] = []
    for row in due:
        key = (row.portal_id, row.object_key)
        mark = blocked.get(key)
        if mark is not None and mark < (row.ts, row.id):
            continue  # an earlier event of this object failed in this batch
        portal = portals.get(row.portal_id)
        if portal is None:
            continue  # deleted since the SELECT: its events went with it (on delete cascade)
        outcome = _dispatch(row, portal, now=now)
        if row.event in LIFECYCLE_EVENTS:  # its handlers may have changed the portal
            portals.pop(row.portal_id, None)
        if outcome == "done":
            done.append(row.id)
            report.done += 1
        elif outcome == "retry":
            blocked[key] = (row.ts, row.id)
            report.retried += 1
        elif outcome == "failed":
            report.failed += 1
        else:
            report.ignored += 1
    if done:
        Event.objects.filter(id__in=done).update(
            status=Event.Status.DONE, processed_at=now, attempts=F("attempts") + 1, last_error=""
        )
    return len(due)


def _dispatch(row: DueEvent, portal: Portal, *, now: datetime) -> str:
    """Run the handlers of one event; record a failure or an ignore on the row itself."""
    handlers = registry.handlers_for(row.event)
    payload = payload_from_json(row.payload)
    reason = ""
    if not handlers:
        reason = "no handler registered"
    elif portal.state == Portal.State.UNINSTALLED and not payload.is_lifecycle:
        reason = "portal uninstalled"
    if reason:
        Event.objects.filter(pk=row.id).update(
            status=Event.Status.IGNORED, processed_at=now, last_error=reason
        )
        logger.info("events.dispatch.ignored", extra={"event_id": row.id, "reason": reason})
        return "ignored"
    try:
        for handler in handlers:
            handler(portal=portal, payload=payload)
    except Exception as e:
        return _record_failure(row, e, now=now)
    return "done"


def _record_failure(row: DueEvent, error: Exception, *, now: datetime) -> str:
    attempts = row.attempts + 1
    message = f"{type(error).__name__}: {error}"[:_MAX_ERROR_CHARS]
    retryable = getattr(error, "retryable", True)
    if not retryable or attempts >= settings.BITRIX24_EVENT_MAX_ATTEMPTS:
        Event.objects.filter(pk=row.id).update(
            status=Event.Status.FAILED, attempts=attempts, last_error=message, processed_at=now
        )
        logger.warning(
            "events.dispatch.failed",
            extra={"event_id": row.id, "event": row.event, "attempts": attempts, "error": message},
        )
        return "failed"
    delay = retry_delay(attempts)
    Event.objects.filter(pk=row.id).update(
        attempts=attempts, last_error=message, available_at=now + timedelta(seconds=delay)
    )
    logger.info(
        "events.dispatch.retry",
        extra={"event_id": row.id, "event": row.event, "attempts": attempts, "delay": delay},
    )
    return "retry"


def retry_delay(attempts: int, *, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: exponential, capped, with jitter in [50%, 100%]."""
    base = settings.BITRIX24_EVENT_RETRY_BASE_SECONDS * 2 ** (attempts - 1)
    capped = min(base, settings.BITRIX24_EVENT_RETRY_MAX_SECONDS)
    return capped * (rng or random).uniform(0.5, 1.0)


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
    """Wake every shard that has due events (a safety net for lost wake-ups). Returns the shards."""
    shards = sorted(set(Event.objects.due(timezone.now()).values_list("shard", flat=True).distinct()))
    for shard in shards:
        events_wake(shard=shard, force=True)
    return shards


def events_prune(*, now: datetime | None = None) -> int:
    """Delete finished events older than the retention; failed ones stay until replayed or cleared."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.BITRIX24_EVENT_RETENTION_DAYS)
    deleted, _ = Event.objects.finished_before(cutoff).delete()
    return deleted


def event_payload_json(row: Event) -> str:
    """The stored payload as pretty JSON (CLI and admin)."""
    return json.dumps(row.payload, indent=2, ensure_ascii=False, sort_keys=True)
