"""Accepting events: verify, store durably, wake the dispatcher after commit.

The receiver's hot path is parse → one cached Portal lookup → one INSERT → 200; all work happens
later in a worker (see :mod:`events.services.drain`).
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction

from bitrix_app.database import fetch_prepared
from events import registry
from events.models import Event
from events.services.tokens import PortalEntry, portal_tokens
from events.services.wake import events_wake_soon
from portals.bitrix.events import EventPayload, check_event_age, event_credentials, parse_event_fields
from portals.bitrix.exceptions import InvalidApplicationToken, InvalidEventPayload, InvalidInstallRequest
from portals.bitrix.inbound import split_form
from portals.conf import app_settings
from portals.models import Portal
from portals.services.lifecycle import portal_app_update_confirm, portal_application_token_set

logger = logging.getLogger("events")


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"  # stored, will be dispatched
    DUPLICATE = "duplicate"  # the same change was stored before: dropped
    UNHANDLED = "unhandled"  # authentic, but no handler is registered for it
    IGNORED = "ignored"  # authentic, but the portal has left or is disabled: nothing to do


@dataclass(frozen=True, slots=True)
class Received:
    outcome: Outcome
    event_id: int | None = None
    member_id: str = ""


def event_receive(*, body: bytes, now: datetime) -> Received:
    """Verify and store one online event POSTed by Bitrix24.

    Raises a :class:`~portals.bitrix.exceptions.Bitrix24InboundError` carrying the HTTP status:
    InvalidEventPayload (400), UnknownPortal / InvalidApplicationToken / StaleEvent (403). Nothing
    is stored unless the event is authentic.
    """
    fields = split_form(body, error=InvalidEventPayload)
    member_id, application_token = event_credentials(fields)
    entry: PortalEntry | None
    try:
        entry = portal_tokens.verify(member_id=member_id, application_token=application_token)
    except InvalidApplicationToken:
        if str(fields.get("event", "")).upper() != "ONAPPUPDATE" or not fields.get("auth[access_token]"):
            raise
        entry = None  # an update brings a new token: verified below, once the event is parsed
    payload = parse_event_fields(fields)
    check_event_age(payload, now=now, window=timedelta(seconds=app_settings.event_max_skew_seconds))
    if entry is None:
        entry = _verify_app_update(payload)
    assert entry.portal_id is not None  # verify() raised otherwise
    log_extra = {"event": payload.event, "member_id": payload.member_id}
    if not registry.handles(payload.event):
        logger.info("events.unhandled", extra=log_extra)
        return Received(Outcome.UNHANDLED, member_id=payload.member_id)
    if entry.state == Portal.State.UNINSTALLED and not payload.is_lifecycle:
        logger.info("events.ignored.uninstalled", extra=log_extra)
        return Received(Outcome.IGNORED, member_id=payload.member_id)
    if entry.disabled and not payload.is_lifecycle:
        logger.info("events.ignored.disabled", extra=log_extra)
        return Received(Outcome.IGNORED, member_id=payload.member_id)
    event_id = event_store(portal_id=entry.portal_id, payload=payload, now=now)
    if event_id is None:
        logger.info("events.duplicate", extra=log_extra)
        return Received(Outcome.DUPLICATE, member_id=payload.member_id)
    return Received(Outcome.ACCEPTED, event_id, payload.member_id)


_APP_UPDATE_TRY_SECONDS = 2.0
_app_update_tries: dict[str, float] = {}


def _verify_app_update(payload: EventPayload) -> PortalEntry:
    """ONAPPUPDATE brings a new application_token, so the stored one can't vouch for it.

    The portals layer confirms the update with Bitrix24 itself (the event's token is an
    administrator's, and app.info with the app's own token shows the announced version: see
    :func:`portals.services.lifecycle.portal_app_update_confirm`). Only then is the new token
    stored, right away rather than later in a worker, because every event after the update
    carries it. Until then the stored token stays the only one accepted. Raises
    InvalidApplicationToken otherwise (also when Bitrix24 can't be asked).
    """
    portal = Portal.objects.filter(member_id=payload.member_id).first()
    if portal is None or portal.state == Portal.State.UNINSTALLED:
        raise InvalidApplicationToken("application_token mismatch")
    # Each try costs calls to the OAuth server and the portal: forged ONAPPUPDATEs must not turn
    # into a flood.
    now = time.monotonic()
    if now - _app_update_tries.get(portal.member_id, -_APP_UPDATE_TRY_SECONDS) < _APP_UPDATE_TRY_SECONDS:
        raise InvalidApplicationToken("application_token mismatch")
    _app_update_tries[portal.member_id] = now
    # A captured update sent again would bring back a token a later update replaced.
    if Event.objects.filter(portal=portal, idempotency_key=payload.idempotency_key()).exists():
        raise InvalidApplicationToken("application_token mismatch")
    try:
        portal_app_update_confirm(
            portal=portal,
            access_token=payload.secrets.get("access_token", ""),
            version=str(payload.data.get("VERSION") or ""),
        )
    except InvalidInstallRequest as e:
        extra = {"member_id": portal.member_id, "cause": type(e).__name__, "reason": str(e)}
        logger.warning("events.app_update.unconfirmed", extra=extra)
        raise InvalidApplicationToken("application_token mismatch") from None
    portal_application_token_set(portal=portal, application_token=payload.application_token)
    logger.info("events.app_update.token_changed", extra={"member_id": portal.member_id})
    return portal_tokens.verify(member_id=portal.member_id, application_token=payload.application_token)


def event_shard(*, portal_id: int, object_key: str) -> int:
    """The outbox shard of an object: all its events share one, so one drainer keeps their order."""
    return zlib.crc32(f"{portal_id}:{object_key}".encode()) % app_settings.event_shards


# One statement stores a batch of events (group commit) or a single one, settling dedupe as it goes:
# ON CONFLICT DO NOTHING RETURNING tells which rows were new (the ORM's bulk_create(ignore_conflicts=
# True) can't). The rows travel as one JSON document that PostgreSQL unpacks with
# jsonb_to_recordset: json.dumps (C) encodes a whole batch faster than psycopg adapts even one row
# of typed arrays element by element in Python (docs/events.md, "What changed").
_INSERT_SQL = """
INSERT INTO events_event
    (portal_id, event, object_key, ts, source, idempotency_key, shard, payload,
     status, attempts, available_at, last_error, received_at)
SELECT r.portal_id, r.event, r.object_key, r.ts, r.source, r.idempotency_key, r.shard, r.payload,
       r.status, 0, r.available_at, '', r.received_at
FROM jsonb_to_recordset(%s::jsonb)
     AS r(portal_id bigint, event text, object_key text, ts timestamptz, source text,
          idempotency_key text, shard smallint, payload jsonb, status text,
          available_at timestamptz, received_at timestamptz)
ON CONFLICT (portal_id, idempotency_key) DO NOTHING
RETURNING id, portal_id, idempotency_key
"""

EventRow = dict[str, Any]


def event_store(*, portal_id: int, payload: EventPayload, now: datetime) -> int | None:
    """Store an authentic event as pending and wake its shard's drainer after commit.

    Returns the new row's id, or None when the same change was stored before (a duplicate). The
    row is committed when this returns (or, inside a caller's transaction, with it).
    """
    row: EventRow = {
        "portal_id": portal_id,
        "event": payload.event,
        "object_key": payload.object_key,
        "ts": payload.ts or now,
        "source": Event.Source.OFFLINE.value if payload.offline else Event.Source.ONLINE.value,
        "idempotency_key": payload.idempotency_key(),
        "shard": event_shard(portal_id=portal_id, object_key=payload.object_key),
        "payload": payload.as_json(),
        "status": Event.Status.PENDING.value,
        "available_at": now,
        "received_at": now,
    }
    if connection.vendor != "postgresql":
        event_id = _insert_portable(row)
    elif not connection.in_atomic_block and app_settings.event_group_commit:
        return _group.insert(row)  # the batch's leader hands the shards to the waker after commit
    else:
        [event_id] = _insert_many([row])  # inside a transaction: joins the caller's
    if event_id is None:
        return None
    # Through the waker thread here too: in single-process mode the drain (and so the handlers)
    # runs inline where it is woken, and the receiver must not wait for handlers in any mode.
    transaction.on_commit(lambda: events_wake_soon(shards={row["shard"]}))
    return event_id


def _wake_batch(batch: list[EventRow], results: list[int | None]) -> None:
    """After a group commit: hand the shards that got new rows to the waker thread."""
    shards = {row["shard"] for row, result in zip(batch, results, strict=True) if result is not None}
    if shards:
        events_wake_soon(shards=shards)


def _insert_many(batch: list[EventRow]) -> list[int | None]:
    """One INSERT of every row of ``batch`` (PostgreSQL): each row's new id, or None (a duplicate).

    Outside a transaction the statement commits on its own (autocommit); inside one it joins it.
    """
    # Prepared, server-side bound, without Django's health check (bitrix_app.database): a second
    # round trip on every batch was a large share of the request's wall time (docs/events.md). A
    # connection that died since the last request fails this one INSERT instead (tested).
    document = json.dumps(batch, ensure_ascii=False, separators=(",", ":"), default=datetime.isoformat)
    rows = fetch_prepared(_INSERT_SQL, [document])
    inserted = {(portal_id, key): int(pk) for pk, portal_id, key in rows}
    # The same change twice in one batch: the first request gets the row, the others a duplicate.
    return [inserted.pop((row["portal_id"], row["idempotency_key"]), None) for row in batch]


def _insert_portable(row: EventRow) -> int | None:
    """The same INSERT through the ORM, on databases other than PostgreSQL (SQLite: one machine)."""
    try:
        with transaction.atomic():
            return Event.objects.create(**row).pk
    except IntegrityError:
        if Event.objects.filter(portal_id=row["portal_id"], idempotency_key=row["idempotency_key"]).exists():
            return None  # a duplicate
        raise


class _Waiter:
    __slots__ = ("row", "done", "result", "error", "lead")

    def __init__(self, row: EventRow):
        self.row = row
        self.done = threading.Event()
        self.result: int | None = None
        self.error: BaseException | None = None
        self.lead = False


class GroupInsert:
    """Group commit for the web process's request threads.

    PostgreSQL commits (and flushes its WAL) once per transaction, so one INSERT per request spends
    a commit, a round trip and a statement per event. Here, the requests that arrive while one
    INSERT is in flight queue up; when it returns, the first of them (the next leader) takes the
    whole queue and writes it with one multi-row INSERT in one commit, on its own connection, and
    hands every waiter its own row's outcome. Under heavy load batches grow by themselves. In
    between, a leader lingers up to ``linger`` seconds for more rows (as a Kafka producer's linger.ms
    does), but only until the queue holds as many rows as the biggest batch so far: that is how many
    request threads this process has had in flight at once, so no one else can join (a flat-out
    load never waits, and a lone request at a quiet time doesn't either). Each request still answers only
    after the commit that contains its row (nothing is acknowledged before it is durable), dedupe
    stays ON CONFLICT DO NOTHING, and a failed INSERT fails every request of its batch (500s: the
    sender was told nothing was stored). After releasing its batch, the leader runs ``after``
    (handing the shards that got rows to the waker thread: nothing that can wait on Redis).
    """

    def __init__(
        self,
        write: Callable[[list[EventRow]], list[int | None]],
        after: Callable[[list[EventRow], list[int | None]], None] | None = None,
        linger: Callable[[], float] = lambda: 0.0,
    ):
        self._write = write
        self._after = after
        self._linger = linger
        self._lock = threading.Lock()
        self._grown = threading.Condition(self._lock)  # the queue reached the biggest batch so far
        self._queue: list[_Waiter] = []
        self._leading = False
        self._biggest = 1

    def insert(self, row: EventRow) -> int | None:
        me = _Waiter(row)
        with self._lock:
            self._queue.append(me)
            me.lead = not self._leading
            self._leading = True
            if len(self._queue) >= self._biggest:
                self._grown.notify()
        if not me.lead:
            me.done.wait()
        if me.lead:  # first in, or handed the lead by the previous leader
            self._lead()
        if me.error is not None:
            raise me.error
        return me.result

    def _lead(self) -> None:
        # Lingering trades a little latency for fewer statements and commits per event
        # (docs/events.md, Benchmark, has the figures).
        deadline = time.monotonic() + self._linger()
        with self._lock:
            while len(self._queue) < self._biggest:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._grown.wait(remaining)
            batch, self._queue = self._queue, []
            self._biggest = max(self._biggest, len(batch))
        rows = [waiter.row for waiter in batch]
        results: list[int | None] | None = None
        try:
            results = self._write(rows)
            for waiter, result in zip(batch, results, strict=True):
                waiter.result = result
        except BaseException as e:  # every waiter must hear back, whatever happened
            for waiter in batch:
                waiter.error = e
        with self._lock:
            successor = self._queue[0] if self._queue else None
            if successor is None:
                self._leading = False
            else:
                successor.lead = True
        for waiter in batch:
            waiter.done.set()
        if successor is not None:
            successor.done.set()
        if results is not None and self._after is not None:
            # After the waiters are released, so only the leader's own request runs it.
            try:
                self._after(rows, results)
            except Exception as e:  # stored and committed: the periodic sweep wakes the shards instead
                logger.warning("events.wake_failed", extra={"error": type(e).__name__})


_group = GroupInsert(
    _insert_many,
    after=_wake_batch,
    linger=lambda: app_settings.event_group_commit_linger_ms / 1000,
)
