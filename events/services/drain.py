"""Draining a shard: its due events → their handlers, in order per object, one transaction per batch.

Ordering: all events of one (portal, object) fall into one shard; a shard is drained by one worker at
a time (events.services.shards), in (ts, id) order. An event waiting for a retry blocks the later
events of its object until it is done or failed.

Guarantees (docs/events.md, "Dispatch guarantees"): where the backend runs batches in transactions
(PostgreSQL) a batch's handlers run in one transaction with their events' done marks, each event in a
savepoint of its own, so a handler's database effects are applied exactly once; effects outside the
database are at least once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from events import registry
from events.models import Event
from events.services.replay import retry_delay, retry_schedule_next, retry_scheduled_clear
from events.services.shards import shard_lock
from events.services.wake import WAKE_MEMO_SECONDS, events_wake, wake_flag_clear
from portals.bitrix import metrics
from portals.bitrix.events import LIFECYCLE_EVENTS, payload_from_json
from portals.conf import app_settings
from portals.models import Portal
from portals.services.autonomous import independent_commits
from portals.services.coordination import coordination

logger = logging.getLogger("events")

_MAX_ERROR_CHARS = 2000
# A drainer that caught up waits this long before its next batch (dispatch latency, not intake's):
# every batch costs its fixed queries, built and run whatever its size, so at a steady load a longer
# gather means fewer, bigger batches (the figures: docs/events.md, Benchmark).
_GATHER_SECONDS = 0.2


@dataclass
class DrainReport:
    done: int = 0
    retried: int = 0
    failed: int = 0
    ignored: int = 0

    @property
    def processed(self) -> int:
        return self.done + self.retried + self.failed + self.ignored


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
    if scheduled:
        retry_scheduled_clear(shard)  # this is that delayed drain: from now on a new one may be queued
    with shard_lock(shard) as acquired:
        if not acquired:
            return None
        started = timezone.now()
        portals: dict[int, Portal] = {}
        while True:
            batch = _drain_batch(shard=shard, now=timezone.now(), report=report, portals=portals)
            if batch:
                if (timezone.now() - started).total_seconds() > time_budget:
                    wake_flag_clear(shard)
                    events_wake(shard=shard, force=True)
                    break
                if batch < app_settings.event_batch_size:
                    # The shard is nearly caught up: let events gather for a moment, so the next
                    # batch's fixed cost (its SELECT and UPDATE) is shared by more events.
                    time.sleep(_GATHER_SECONDS)
                continue
            wake_flag_clear(shard)
            # Anything committed before the flag was cleared, or within the web processes' memo
            # window after they last saw it, is visible after this pause; anything later set the
            # flag again and queued a drainer of its own.
            time.sleep(2 * WAKE_MEMO_SECONDS)
            # Events waiting behind a retry don't count: their delayed drain comes for them, and
            # counting them kept a drainer looking again every pause until the retry was due.
            if not _dispatchable(shard=shard, now=timezone.now()).exists():
                break
    retry_schedule_next(shard)
    return report


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


def _dispatchable(*, shard: int, now: datetime) -> QuerySet[Event]:
    """Due events of ``shard``, minus those behind a retry-waiting event of their object.

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
    return Event.objects.due(now).filter(shard=shard).filter(~Exists(behind_retry))


def _due_events(*, shard: int, now: datetime) -> list[DueEvent]:
    """The next batch of :func:`_dispatchable` events of ``shard``, in (ts, id) order.

    One query (values, not model instances: building those cost more worker CPU than the handlers).
    """
    rows = (
        _dispatchable(shard=shard, now=now)
        .order_by("ts", "id")
        .values_list("id", "portal_id", "event", "object_key", "ts", "attempts", "payload")
    )[: app_settings.event_batch_size]
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
    if not coordination().batch_transactions:
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
        metrics.event_dispatched(outcome, lag=(now - row.ts).total_seconds(), portal=portal.member_id)
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
    elif portal.disabled_at is not None and not payload.is_lifecycle:
        reason = "portal disabled by an operator"
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
    """A savepoint around one event's handlers, taken at their first query.

    Taken up front it would cost two round trips (SAVEPOINT, RELEASE) per event even for handlers
    that never touch the database, about as much CPU as the rest of the worker spends on an event
    (docs/events.md, Benchmark). Taken from an execute wrapper just before the handlers' first
    statement, it still holds everything they do in the database; handlers without queries pay
    nothing. On an exception it rolls back to its savepoint, so only this event's effects go, with
    the on-commit callbacks they registered. A handler that caught a database error and went on
    would leave its effects half done: its savepoint is rolled back and the event fails with
    TransactionManagementError (then retried).

    A plain savepoint rather than a nested ``transaction.atomic()``: the first query may come from
    inside the handler's own ``atomic(savepoint=False)`` block (Django's ``delete()`` and
    multi-table ``save()`` open one), and an atomic entered there would be closed by that block's
    exit, leaving the batch transaction unusable and the drain failing on every run.
    """

    def __init__(self, db: BaseDatabaseWrapper):
        self._db = db
        self._savepoint: str | None = None
        self._callbacks = 0  # the batch's on-commit callbacks registered before the savepoint
        self._entering = False

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if not self._entering:  # the savepoint's own statement comes through here as well
            self._entering = True
            self._callbacks = len(self._db.run_on_commit)
            self._savepoint = self._db.savepoint()
        return execute(sql, params, many, context)

    def __enter__(self) -> None:
        self._db.execute_wrappers.append(self)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._db.execute_wrappers.remove(self)
        if self._savepoint is None:
            return
        if exc is None and not self._db.needs_rollback:
            self._db.savepoint_commit(self._savepoint)
            return
        # Back to before the handlers' first query, so the batch goes on (the flag first: Django
        # refuses any statement, the ROLLBACK TO included, while it is set).
        self._db.needs_rollback = False
        self._db.savepoint_rollback(self._savepoint)
        del self._db.run_on_commit[self._callbacks :]
        if exc is None:
            raise TransactionManagementError("a handler went on after a database error")


def _record_failure(row: DueEvent, error: Exception, *, now: datetime) -> str:
    attempts = row.attempts + 1
    message = f"{type(error).__name__}: {error}"[:_MAX_ERROR_CHARS]
    retryable = getattr(error, "retryable", True)
    if not retryable or attempts >= app_settings.event_max_attempts:
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
