"""Draining the outbox: pending events → their handlers, in order per object.

Waking: after an event commits, :func:`events_wake` sets a per-shard flag in Redis with SET NX and
queues one drain task only if the flag was not already set, so a burst of events costs one task.
The drainer clears the flag when it runs out of work and then looks once more, so an event committed
while it was finishing is never left behind; a periodic sweep (``events_sweep``) covers lost wake-ups
and a worker that died holding the flag (it clears the flag of a shard nobody drains). A failed
wake-up (Redis or the broker down) is logged, rate-limited, and made good by the sweep.

Ordering: all events of one (portal, object) fall into one shard; a shard is drained by one worker at
a time (a PostgreSQL advisory lock, released by the server if the worker dies; on SQLite, which is one
machine, a file lock, released by the OS), in (ts, id) order. An event waiting for a retry blocks the
later events of its object until it is done or failed.

Guarantees (docs/events.md, "Dispatch guarantees"): on PostgreSQL a batch's handlers run in one
transaction with their events' done marks, each event in a savepoint of its own, so a handler's
database effects are applied exactly once; effects outside the database are at least once.
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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import kombu.exceptions
import psycopg
import redis
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Exists, F, OuterRef, Q
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from bitrix_app.redis_client import redis_client
from events import registry
from events.models import Event
from portals.bitrix.events import LIFECYCLE_EVENTS, payload_from_json
from portals.models import Portal
from portals.services.autonomous import independent_commits

logger = logging.getLogger("events")

# pg_try_advisory_lock(classid, objid): the class id keeps our locks apart from other areas' ones.
_LOCK_CLASS = 0x0E7E
_WAKE_FLAG_SECONDS = 120
_MAX_ERROR_CHARS = 2000
# A drainer that caught up waits this long before its next batch (dispatch latency, not intake's):
# every batch costs its fixed queries, built and run whatever its size, so at a steady load a longer
# gather means fewer, bigger batches (the figures: docs/events.md, Benchmark).
_GATHER_SECONDS = 0.2
# A wake-up fails when Redis or the broker is down: it is logged and the sweep makes it good.
_WAKE_OUTAGE = (redis.RedisError, kombu.exceptions.OperationalError)


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
    """:func:`events_wake` for several shards with one Redis round trip (a group commit's batch).

    Never raises for Redis or the broker being down: that is logged (rate-limited) and the periodic
    sweep wakes the shards once they are back.
    """
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
    with _logged_if_down(due):
        pipe = _redis().pipeline(transaction=False)
        for shard in due:
            _wake_seen[shard] = seen  # taken before the SET: the flag existed at least from this moment
            pipe.set(_wake_key(shard), "1", nx=True, ex=_WAKE_FLAG_SECONDS)
        for shard, was_set in zip(due, pipe.execute(), strict=True):
            if was_set:
                events_drain.delay(shard)


class _ThrottledWarning:
    """Logs ``message`` at most once per cause every ``interval`` seconds, with how many it suppressed.

    With Redis down every wake-up fails at once, so one line per failure would flood the log of a
    busy web process without saying more than the first line did.
    """

    def __init__(self, message: str, *, interval: float = 10.0):
        self.message = message
        self.interval = interval
        self._last: dict[str, tuple[float, int]] = {}  # cause → (last logged, suppressed since)
        self._lock = threading.Lock()

    def __call__(self, cause: str, **extra: Any) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(cause)
            if last is not None and now - last[0] < self.interval:
                self._last[cause] = (last[0], last[1] + 1)
                return
            self._last[cause] = (now, 0)
        suppressed = last[1] if last is not None else 0
        logger.warning(self.message, extra={**extra, "cause": cause, "suppressed": suppressed})


_log_wake_failed = _ThrottledWarning("events.wake_failed")


def _wake_failed(error: BaseException, shards: Iterable[int]) -> None:
    """One ``events.wake_failed`` line for ``error`` (no traceback: the cause and the shards say it)."""
    cause = f"{type(error).__module__}.{type(error).__qualname__}"
    _log_wake_failed(cause, error=type(error).__name__, shards=sorted(shards))


@contextmanager
def _logged_if_down(shards: list[int]) -> Iterator[None]:
    """Turn Redis or the broker being down into a logged wake failure: the sweep makes it good."""
    try:
        yield
    except _WAKE_OUTAGE as e:
        _wake_failed(e, shards)


class ShardWaker:
    """Wakes shards from one background thread per process, so no request waits on Redis or the broker.

    A group commit's leader used to wake its batch's shards itself before answering (a Redis round
    trip, sometimes a broker publish), and a slow Redis connection held the request with it
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
                _wake_failed(e, shards)
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
        with _logged_if_down([shard]):
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


def _shard_lock_free(shard: int) -> bool:
    """Whether nobody drains ``shard`` now (the lock is taken and released at once)."""
    with _shard_lock(shard) as acquired:
        return acquired


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
        with _logged_if_down([shard]):
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
    with _logged_if_down([shard]):
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
    for rows, in_transaction in _runs(due):
        if not in_transaction:
            done = _dispatch_run(rows, now=now, report=report, portals=portals, blocked=blocked, db=None)
            _mark_done(done, now=now)
            continue
        # Handlers' writes, failure records and done marks commit together or not at all; token
        # writes commit apart (portals.services.autonomous): a rotated pair must survive a rollback.
        with independent_commits(), transaction.atomic():
            db = transaction.get_connection()
            done = _dispatch_run(rows, now=now, report=report, portals=portals, blocked=blocked, db=db)
            if _transaction_begun(db):
                _mark_done(done, now=now)
                done = []
        # Nothing of the run touched the database, so there is nothing to commit with the marks:
        # they go alone, without a BEGIN and a COMMIT around them.
        _mark_done(done, now=now)
    return len(due)


def _transaction_begun(db: BaseDatabaseWrapper) -> bool:
    """Whether a statement ran in the open transaction (psycopg sends BEGIN with the first one)."""
    return db.connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


def _runs(due: list[DueEvent]) -> Iterator[tuple[list[DueEvent], bool]]:
    """The batch in order, as runs for one transaction each and events to dispatch outside any.

    On PostgreSQL, events whose handlers all run in the batch transaction share one; an event with
    an ``atomic=False`` handler ends the run before it and is dispatched on its own. On SQLite (one
    process, one machine) nothing runs in a transaction: its rollback journal lets no other
    connection commit while one is open — not the web process's event INSERTs, and not a token
    refresh committing independently, which would then lose its new pair.
    """
    if connection.vendor != "postgresql":
        yield due, False
        return
    run: list[DueEvent] = []
    for row in due:
        if registry.runs_in_batch(row.event):
            run.append(row)
            continue
        if run:
            yield run, True
            run = []
        yield [row], False
    if run:
        yield run, True


def _dispatch_run(
    rows: list[DueEvent],
    *,
    now: datetime,
    report: DrainReport,
    portals: dict[int, Portal],
    blocked: dict[tuple[int, str], tuple[datetime, int]],
    db: BaseDatabaseWrapper | None,
) -> list[int]:
    """Dispatch ``rows`` in order; returns the ids of those that succeeded (to be marked done).

    ``blocked`` holds, per object, the event of this batch that is waiting for a retry: later
    events of that object wait too. ``db``: the connection whose transaction holds the run (each
    event's handlers then run in a savepoint of it), or None outside any transaction. Passed in
    because ``django.db.connection`` costs microseconds per attribute (a context-local lookup).
    """
    done: list[int] = []
    for row in rows:
        key = (row.portal_id, row.object_key)
        mark = blocked.get(key)
        if mark is not None and mark < (row.ts, row.id):
            continue  # an earlier event of this object failed in this batch
        portal = portals.get(row.portal_id)
        if portal is None:
            continue  # deleted since the SELECT: its events went with it (on delete cascade)
        outcome = _dispatch(row, portal, now=now, db=db)
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
    return done


def _mark_done(event_ids: list[int], *, now: datetime) -> None:
    if event_ids:
        Event.objects.filter(id__in=event_ids).update(
            status=Event.Status.DONE, processed_at=now, attempts=F("attempts") + 1, last_error=""
        )


def _dispatch(row: DueEvent, portal: Portal, *, now: datetime, db: BaseDatabaseWrapper | None) -> str:
    """Run the handlers of one event; record a failure or an ignore on the row itself.

    ``db``: the connection whose transaction holds this event; the handlers then run in a savepoint
    of it, so their database effects are rolled back when one of them raises.
    """
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
        with _SavepointAtFirstQuery(db) if db is not None else nullcontext():
            for handler in handlers:
                handler(portal=portal, payload=payload)
    except Exception as e:
        return _record_failure(row, e, now=now)
    return "done"


class _SavepointAtFirstQuery:
    """A nested ``transaction.atomic()`` around one event's handlers, entered at their first query.

    Entered up front it would cost two round trips (SAVEPOINT, RELEASE) per event even for handlers
    that never touch the database, about as much CPU as the rest of the worker spends on an event
    (docs/events.md, Benchmark). Entered from an execute wrapper just before the handlers' first
    statement, it still holds everything they do in the database; handlers without queries pay
    nothing. On an exception it rolls back to its savepoint, so only this event's effects go.
    A handler that caught a database error and went on would leave its effects half done: its
    savepoint is rolled back and the event fails with TransactionManagementError (then retried).
    """

    def __init__(self, db: BaseDatabaseWrapper):
        self._db = db
        self._block: transaction.Atomic | None = None
        self._entering = False

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if not self._entering:  # the savepoint's own statement comes through here as well
            self._entering = True
            block = transaction.atomic(using=self._db.alias)
            block.__enter__()
            self._block = block
        return execute(sql, params, many, context)

    def __enter__(self) -> None:
        self._db.execute_wrappers.append(self)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._db.execute_wrappers.remove(self)
        if self._block is None:
            return
        swallowed = exc is None and self._db.needs_rollback
        # Releases the savepoint, or rolls back to it after an exception or a swallowed error.
        self._block.__exit__(exc_type, exc, tb)
        if swallowed:
            raise TransactionManagementError("a handler went on after a database error")


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
    """Wake every shard that has due events: lost wake-ups and dead drainers. Returns the shards.

    A drainer killed mid-drain leaves its shard's wake flag set, which would turn every wake-up of
    the shard away until the flag expires; its shard lock, though, died with it. So the flag of a
    shard whose lock is free is deleted before the wake-up, which then queues a drainer. A shard
    whose lock is held keeps its flag: its live drainer will find the due events.
    """
    shards = sorted(set(Event.objects.due(timezone.now()).values_list("shard", flat=True).distinct()))
    for shard in shards:
        if settings.REDIS_URL and _shard_lock_free(shard):
            _wake_flag_clear(shard)
    events_wake_many(shards=set(shards), force=True)
    return shards


def events_prune(*, now: datetime | None = None) -> int:
    """Delete finished events older than the retention; failed ones stay until replayed or cleared."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.BITRIX24_EVENT_RETENTION_DAYS)
    deleted, _ = Event.objects.finished_before(cutoff).delete()
    return deleted


def event_payload_json(row: Event) -> str:
    """The stored payload as pretty JSON (CLI and admin)."""
    return json.dumps(row.payload, indent=2, ensure_ascii=False, sort_keys=True)
