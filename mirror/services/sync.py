"""Filling and keeping the mirror: the initial sync, the batched fetch after events, reconciliation.

* **Initial sync** (:func:`mirror_sync`): ``list_all``'s keyset traversal of the whole table, rows
  upserted page by page; the traversal's checkpoint is stored after each page, so a sync that
  stops (a worker killed, the portal unreachable) resumes where it was. A thread of its own
  converts the next page while the database writes the current one. It reads through the
  mirror's share of the portal's bucket (:mod:`mirror.bucket`).
* **Events** (:func:`mirror_fetch`): ONCRM…ADD/UPDATE only mark the object pending
  (mirror.event_handlers); one fetch then reads every pending object of the portal's entity with
  ``get`` calls in batches of 50, so a burst of events costs a few requests. DELETE tombstones.
* **Reconciliation** (:func:`mirror_reconcile`): Bitrix24 delivers each event once and never again,
  so a periodic pass reads what changed since the last one by DATE_MODIFY (with an overlap), and
  sweeps the table's IDs (a keyset traversal selecting only ID) to find deletions, which
  DATE_MODIFY can't show. Reference data (users, statuses, currencies) is small: read whole.

One runner per (portal, entity) at a time: a lease (portals.services.coordination) renewed as the
work goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from portals.bitrix.client import Bitrix24Client
from portals.bitrix.crm import Record, field_types, record_from_wire, record_reader
from portals.bitrix.exceptions import Bitrix24NotFound
from portals.conf import app_settings
from portals.models import Portal
from portals.services.client import client_for_portal
from portals.services.coordination import Lease, coordination

from ..bucket import ShareLimiter
from ..entities import ENTITIES, Entity, record_id
from ..models import Pending, SyncState
from .queue import fetch_queue
from .store import PreparedUpsert, records_tombstone, records_upsert, upsert_execute, upsert_prepare

logger = logging.getLogger("mirror")

Progress = Callable[[int], None]
# A lease outlives a stalled runner by this much; each stored page renews it.
LEASE_TTL = 300.0
# How long a portal's field description is reused (a new user field is typed within this time).
TYPES_TTL = 600.0
# Objects one fetch reads (then it queues the next fetch if more are pending).
FETCH_MAX = 1000
# Pages of the initial sync converted ahead of the one being written. One keeps the conversion
# and the database busy at the same time; more would only hold memory, since list_all's readers
# already fetch ahead of both.
AHEAD = 1

T = TypeVar("T")


class MirrorBusy(Exception):
    """Another process is syncing or reconciling this portal's entity right now."""


@dataclass(frozen=True)
class ReconcileResult:
    changed: int
    deleted: int


def mirror_client(*, portal: Portal) -> Bitrix24Client:
    """The portal's client, its requests admitted within BITRIX24_MIRROR_SYNC_SHARE of the bucket."""
    client = client_for_portal(member_id=portal.member_id)
    client.limiter = ShareLimiter(client.limiter, share=app_settings.mirror_sync_share)
    return client


def _state(portal_id: int, entity: str) -> SyncState:
    state, _ = SyncState.objects.get_or_create(portal_id=portal_id, entity=entity)
    return state


def _lease(portal_id: int, entity: str) -> Lease:
    lease = coordination().lease(f"mirror:{portal_id}:{entity}", ttl=LEASE_TTL)
    if lease is None:
        raise MirrorBusy(f"the {entity} mirror of portal {portal_id} is being synced by another process")
    return lease


def _types(client: Bitrix24Client, entity: Entity, portal_id: int) -> dict[str, Any]:
    """The entity's field types on this portal. Its description (``crm.<entity>.fields``) is asked
    at most once per TYPES_TTL and kept in the cache: a fetch after every burst of events would
    otherwise spend a request of the portal's limit on it each time."""
    if not entity.fields_method:
        return field_types(entity.name)
    key = f"mirror:fields:{portal_id}:{entity.name}"
    try:
        description = cache.get(key)
    except Exception:  # the cache backend's own errors: ask the portal instead
        description = None
    if description is None:
        description = client.call(entity.fields_method)
        try:
            cache.set(key, description, timeout=TYPES_TTL)
        except Exception:
            logger.debug("mirror.fields_cache_unavailable")
    return field_types(entity.name, description)


def _offset_of(record: Record) -> str:
    """The offset the portal writes its dates with ("+03:00"), from a record's DATE_MODIFY."""
    moment = record.get("DATE_MODIFY")
    if isinstance(moment, datetime):
        return moment.isoformat()[19:]
    return ""


def mirror_sync(
    *, portal_id: int, entity: str, progress: Progress | None = None, again: bool = False
) -> SyncState:
    """Run (or resume) the initial sync of a portal's entity to its end; returns its state.

    A complete entity is read again whole only with ``again`` (an operator's `mirror sync`);
    otherwise its state is returned as it is (a task queued twice does the work once). Raises
    MirrorBusy when another process runs it, and the client's exceptions when the portal fails
    (the state then says failed and keeps its checkpoint: the next run resumes).
    """
    spec = ENTITIES[entity]
    portal = Portal.objects.get(pk=portal_id)
    lease = _lease(portal_id, entity)
    try:
        state = _state(portal_id, entity)
        if state.state == SyncState.State.COMPLETE and not again:
            return state
        if state.state != SyncState.State.RUNNING or state.started_at is None:
            state.started_at = timezone.now()
            state.rows = 0 if state.checkpoint is None else state.rows
        state.state, state.error = SyncState.State.RUNNING, ""
        state.save()
        client = mirror_client(portal=portal)
        try:
            if spec.crm:
                _sync_crm(client, spec, state, lease, progress)
            else:
                _sync_reference(client, spec, state, progress)
        except Exception as e:
            state.state, state.error = SyncState.State.FAILED, f"{type(e).__name__}: {e}"[:500]
            state.save(update_fields=["state", "error", "updated_at"])
            logger.warning(
                "mirror.sync_failed",
                extra={"portal_id": portal_id, "entity": entity, "error": type(e).__name__},
            )
            raise
        now = timezone.now()
        state.state, state.checkpoint, state.completed_at = SyncState.State.COMPLETE, None, now
        state.reconciled_at = state.reconciled_at or now
        state.save()
        logger.info("mirror.synced", extra={"portal_id": portal_id, "entity": entity, "rows": state.rows})
        return state
    finally:
        lease.release()


class _Stopped(Exception):
    """The consumer of :func:`_ahead` is gone: its producer stops where it is."""


_END, _FAILED = object(), object()


def _ahead(produce: Callable[[Callable[[T], None]], None], *, depth: int, name: str) -> Iterator[T]:
    """What ``produce(put)`` puts, in order, while it runs in a thread of its own at most ``depth``
    items ahead of the caller.

    The producer's exception is raised here. When the caller stops early (its own error, or it
    closes this generator), the producer's next ``put`` raises and it ends; the thread is joined
    before this generator finishes, so none outlives it. The producer's database connection, if it
    opened one (a token refresh in list_all's planning), is closed with it.
    """
    items: queue.Queue[tuple[object, Any]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: Any, kind: object = None) -> None:
        while not stop.is_set():
            try:
                items.put((kind, item), timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def run() -> None:
        try:
            produce(put)
            put(None, _END)
        except _Stopped:
            pass
        except BaseException as e:  # handed to the caller, which raises it
            try:
                put(e, _FAILED)
            except _Stopped:
                pass
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, item = items.get()
            if kind is _END:
                return
            if kind is _FAILED:
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


@dataclass(frozen=True)
class _Page:
    """One page of the initial sync, converted: its rows ready to write, then the checkpoint that
    says they are in (None: no checkpoint after it)."""

    upsert: PreparedUpsert
    checkpoint: dict[str, Any] | None
    high_water: datetime | None
    offset: str


def _sync_crm(
    client: Bitrix24Client, spec: Entity, state: SyncState, lease: Lease, progress: Progress | None
) -> None:
    """Read the portal's table into the mirror: a producer thread converts each page list_all
    hands over (and builds its upsert's JSON) while this thread writes the page before it."""
    read = record_reader(spec.name, _types(client, spec, state.portal_id))
    vendor = connection.vendor
    resume = state.checkpoint

    def produce(put: Callable[[_Page], None]) -> None:
        buffer: list[Record] = []

        def page(checkpoint: dict[str, Any] | None) -> None:
            if not buffer and checkpoint is None:
                return
            moments = [m for m in (r.get("DATE_MODIFY") for r in buffer) if isinstance(m, datetime)]
            upsert = upsert_prepare(portal_id=state.portal_id, entity=spec, records=buffer, vendor=vendor)
            put(
                _Page(upsert, checkpoint, max(moments, default=None), _offset_of(buffer[0]) if buffer else "")
            )
            buffer.clear()

        rows = client.list_all(
            spec.list_method, {"select": list(spec.select)}, checkpoint=resume, on_checkpoint=page
        )
        try:
            for row in rows:
                buffer.append(read(row))
            page(None)
        finally:
            if isinstance(rows, Generator):
                rows.close()  # its readers stop now, not when the generator is collected

    pages = _ahead(produce, depth=AHEAD, name=f"mirror-sync-{state.portal_id}-{spec.name}")
    with closing(pages):
        for page in pages:
            # Rows first, then the checkpoint that says they are in: a crash in between re-reads
            # a page, never skips one.
            if page.upsert.count:
                upsert_execute(page.upsert)
                state.rows += page.upsert.count
                state.wire_offset = state.wire_offset or page.offset
                if page.high_water is not None and (
                    state.high_water is None or page.high_water > state.high_water
                ):
                    state.high_water = page.high_water
            if page.checkpoint is not None:
                state.checkpoint = page.checkpoint
                state.save(update_fields=["checkpoint", "rows", "high_water", "wire_offset", "updated_at"])
                lease.renew()
            if progress is not None and page.upsert.count:
                progress(state.rows)


def _sync_reference(client: Bitrix24Client, spec: Entity, state: SyncState, progress: Progress | None) -> int:
    """Read a small table whole: upsert what is there, tombstone what is gone. Returns deletions."""
    types = field_types(spec.name)
    records = [record_from_wire(spec.name, row, types) for row in client.list_all(spec.list_method, {})]
    started = timezone.now()
    with transaction.atomic():
        records_upsert(portal_id=state.portal_id, entity=spec, records=records, now=started)
        seen = {record_id(r) for r in records}
        live = spec.model._default_manager.filter(portal_id=state.portal_id, deleted_at__isnull=True)
        gone = set(live.values_list("bitrix_id", flat=True)) - seen
        records_tombstone(portal_id=state.portal_id, entity=spec, ids=gone, now=started)
    state.rows = len(records)
    if progress:
        progress(len(records))
    return len(gone)


def mirror_fetch(*, portal_id: int, entity: str, client: Bitrix24Client | None = None) -> int:
    """Read every object of the portal's entity the events marked pending (``get``, 50 per batch
    request); upsert what is there, tombstone what is gone. Returns how many were handled.

    The app's own work, not a bulk read: it uses the portal's client without the mirror's share.
    A mark made while this runs stays pending for the next fetch (it is queued again).
    """
    spec = ENTITIES[entity]
    started = timezone.now()
    marks = Pending.objects.filter(portal_id=portal_id, entity=entity, marked_at__lte=started)
    ids = list(marks.order_by("bitrix_id").values_list("bitrix_id", flat=True)[:FETCH_MAX])
    if not ids:
        return 0
    portal = Portal.objects.get(pk=portal_id)
    client = client or client_for_portal(member_id=portal.member_id)
    types = _types(client, spec, portal_id)
    results = client.batch({str(i): (spec.get_method, {"id": i}) for i in ids})
    found: list[Record] = []
    gone: list[int] = []
    done: list[int] = []
    for i in ids:
        result = results[str(i)]
        if result.ok and isinstance(result.result, dict):
            found.append(record_from_wire(spec.name, result.result, types))
            done.append(i)
        elif isinstance(result.error, Bitrix24NotFound):
            gone.append(i)
            done.append(i)
        # any other failure: the mark stays, the next fetch or the reconciliation retries it
    with transaction.atomic():
        records_upsert(portal_id=portal_id, entity=spec, records=found)
        records_tombstone(portal_id=portal_id, entity=spec, ids=gone)
        Pending.objects.filter(
            portal_id=portal_id, entity=entity, bitrix_id__in=done, marked_at__lte=started
        ).delete()
    if len(ids) == FETCH_MAX or Pending.objects.filter(portal_id=portal_id, entity=entity).exists():
        transaction.on_commit(lambda: fetch_queue(portal_id, entity))
    return len(done)


def _wire_moment(moment: datetime, offset: str) -> str:
    """``moment`` as the portal writes dates (its own offset), for a filter compared as its text."""
    if offset:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = (int(x) for x in offset[1:].split(":"))
        local = moment.astimezone(timezone.get_fixed_timezone(sign * (hours * 60 + minutes)))
        return local.replace(microsecond=0).isoformat()
    return moment.replace(microsecond=0).isoformat()


def mirror_reconcile(*, portal_id: int, entity: str, progress: Progress | None = None) -> ReconcileResult:
    """Catch what the events missed: changes since the high-water mark (less the overlap) and
    deletions (IDs the portal no longer has). Runs the initial sync instead when there was none.
    Raises MirrorBusy when another process works on it."""
    spec = ENTITIES[entity]
    state = _state(portal_id, entity)
    if state.state != SyncState.State.COMPLETE:
        mirror_sync(portal_id=portal_id, entity=entity, progress=progress)
        return ReconcileResult(changed=SyncState.objects.get(pk=state.pk).rows, deleted=0)
    portal = Portal.objects.get(pk=portal_id)
    lease = _lease(portal_id, entity)
    try:
        client = mirror_client(portal=portal)
        started = timezone.now()
        if not spec.crm:
            deleted = _sync_reference(client, spec, state, progress)
            changed = state.rows
        else:
            changed = _reconcile_changes(client, spec, state, lease, progress)
            deleted = _reconcile_deletions(client, spec, state, started, lease)
        state.reconciled_at = started
        state.save()
        if Pending.objects.filter(portal_id=portal_id, entity=entity).exists():
            fetch_queue(portal_id, entity)
        logger.info(
            "mirror.reconciled",
            extra={"portal_id": portal_id, "entity": entity, "changed": changed, "deleted": deleted},
        )
        return ReconcileResult(changed=changed, deleted=deleted)
    finally:
        lease.release()


def _reconcile_changes(
    client: Bitrix24Client, spec: Entity, state: SyncState, lease: Lease, progress: Progress | None
) -> int:
    read = record_reader(spec.name, _types(client, spec, state.portal_id))
    params: dict[str, Any] = {"select": list(spec.select)}
    if state.high_water is not None:
        since = state.high_water - timedelta(minutes=app_settings.mirror_reconcile_overlap_minutes)
        params["filter"] = {">=DATE_MODIFY": _wire_moment(since, state.wire_offset)}
    buffer: list[Record] = []
    changed = 0
    high_water = state.high_water

    def flush(_: Any = None) -> None:
        nonlocal changed, high_water
        if buffer:
            changed += records_upsert(portal_id=state.portal_id, entity=spec, records=buffer)
            moments = [m for m in (r.get("DATE_MODIFY") for r in buffer) if isinstance(m, datetime)]
            if moments:
                high_water = max([*moments, *([high_water] if high_water else [])])
            buffer.clear()
            lease.renew()

    for row in client.list_all(spec.list_method, params, on_checkpoint=flush, progress=progress):
        buffer.append(read(row))
    flush()
    state.high_water = high_water
    return changed


def _reconcile_deletions(
    client: Bitrix24Client, spec: Entity, state: SyncState, started: datetime, lease: Lease
) -> int:
    """Tombstone live rows whose IDs the portal no longer lists. Only rows stored before the sweep
    began and at or below the highest ID it saw: an object created or fetched meanwhile is not
    judged by a sweep that may have passed its place already."""
    seen: set[int] = set()
    for row in client.list_all(spec.list_method, {"select": ["ID"]}, on_checkpoint=lambda _: lease.renew()):
        ident = record_from_wire(spec.name, row, {}).id
        if isinstance(ident, int):
            seen.add(ident)
    live = spec.model._default_manager.filter(
        portal_id=state.portal_id, deleted_at__isnull=True, synced_at__lt=started
    )
    if seen:
        live = live.filter(bitrix_id__lte=max(seen))
    gone = set(live.values_list("bitrix_id", flat=True)) - seen
    return records_tombstone(portal_id=state.portal_id, entity=spec, ids=gone)
