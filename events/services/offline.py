"""Offline events: the lossless path on portals that allow them.

Bitrix24 keeps offline records in a queue on the portal. A drain chooses a ``process_id`` and
commits it (an ``OfflineReservation`` row) before ``event.offline.get`` (``clear=0``) reserves a
batch under that id; it stores each record in our outbox (deduplicated like online events), then
confirms the batch with ``event.offline.clear`` and only then deletes the row; records that can't
be read are reported with ``event.offline.error``.

A drain that dies anywhere on the way leaves its row behind. Bitrix24 hides a reserved record from
``event.offline.get`` until its process clears it (the sandbox does the same), so nothing would
fetch that batch again; the next drain of the portal finds the row, reads the batch with
``event.offline.list`` filtered by the row's ``process_id``, stores it (a record stored before the
crash is a duplicate and stored once), clears it and deletes the row. A row whose ``process_id``
holds nothing on the portal is deleted once it is older than a request could still be in flight
(the get never arrived, or the clear did). Re-reading a reservation through ``event.offline.list``
is our choice where the documentation is silent (docs/events.md, Offline events).

One drain per portal at a time (a lock its holder's death releases), so a row seen by the holder
belongs to a drain that is gone. A drain turned away by the lock leaves a flag; the holder looks
again after it lets go, so records that arrived after its last ``get`` don't wait for the sweep.
Woken by ONOFFLINEEVENT and by a periodic sweep.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from django.db import transaction
from django.utils import timezone

from events import registry
from events.models import OfflineReservation
from events.services.intake import event_store
from events.services.queue import offline_drain_queue
from portals.bitrix.client import Bitrix24Client
from portals.bitrix.events import parse_offline_record
from portals.bitrix.exceptions import InvalidEventPayload
from portals.conf import app_settings
from portals.models import Portal
from portals.services.client import client_for_portal
from portals.services.coordination import LockSpace, coordination

logger = logging.getLogger("events")

# One drain can't run forever on a portal that keeps producing records.
_MAX_ROUNDS = 200
# The class id keeps these advisory locks apart from the shard locks.
OFFLINE_DRAINS = LockSpace("events-offline", 0x0FF1)
# A get sent by a drain that died may still be running on the portal; until then its process_id
# shows nothing there, and deleting the row would orphan the batch the get then reserves. Far longer
# than any REST request takes to be answered.
_IN_FLIGHT = timedelta(minutes=10)
# event.offline.list answers 50 rows a page, whatever is asked (RD event-offline-list.md).
_LIST_PAGE = 50
# How long a turned-away drain's request to look again is kept (the holder reads it within a drain).
_AGAIN_TTL = 600.0
# Drains in a row while turned-away drains keep asking for another look; the sweep does the rest.
_MAX_TURNS = 3


@dataclass
class OfflineReport:
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    unhandled: int = 0
    errors: int = 0
    recovered: int = 0  # records read again from batches that drains which died had reserved
    busy: bool = False  # another drain held the portal: it will look again


def offline_events_drain(*, portal_id: int) -> OfflineReport:
    """Move every record of the portal's offline queue into our outbox. Raises the client's errors.

    Call it outside a transaction: the reservation row must be committed before the portal
    reserves anything under it (RuntimeError otherwise).
    """
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("offline_events_drain must run outside a transaction")
    portal = Portal.objects.get(pk=portal_id)
    report = OfflineReport()
    again = f"offline:again:{portal_id}"
    turned_away = False
    for _ in range(_MAX_TURNS):
        with coordination().try_lock(OFFLINE_DRAINS, portal_id) as held:
            if held:
                _drain_held(client_for_portal(member_id=portal.member_id), portal, report)
        if held:
            if _take_flag(again):
                continue  # a drain was turned away meanwhile: records may have come after our last get
            break
        if turned_away:
            break
        # The holder may let go between our try and our flag: one more try after leaving it.
        turned_away = report.busy = True
        _leave_flag(again)
    logger.info("events.offline.drained", extra={"member_id": portal.member_id, **report.__dict__})
    return report


def _drain_held(client: Bitrix24Client, portal: Portal, report: OfflineReport) -> None:
    """The drain itself, holding the portal's lock: first what dead drains left, then new records."""
    _settle_abandoned(client, portal, report)
    for _ in range(_MAX_ROUNDS):
        process_id = secrets.token_hex(16)
        reservation = OfflineReservation.objects.create(portal=portal, process_id=process_id)
        result = client.call(
            "event.offline.get",
            {"clear": 0, "limit": app_settings.event_offline_batch, "process_id": process_id},
            read=False,
        )
        records = (result or {}).get("events") or []
        if records:
            _settle(client, portal, process_id, records, report)
        reservation.delete()
        if len(records) < app_settings.event_offline_batch:
            break


def _settle(
    client: Bitrix24Client,
    portal: Portal,
    process_id: str,
    records: list[dict[str, Any]],
    report: OfflineReport,
) -> None:
    """Store a reserved batch, then confirm it: clear what was read, report what could not be."""
    bad = _store_batch(portal, records, report)
    if bad:
        client.call("event.offline.error", {"process_id": process_id, "message_id": bad}, read=False)
    good = [str(r.get("MESSAGE_ID")) for r in records if str(r.get("MESSAGE_ID")) not in bad]
    if good:
        client.call("event.offline.clear", {"process_id": process_id, "message_id": good}, read=False)


def _settle_abandoned(client: Bitrix24Client, portal: Portal, report: OfflineReport) -> None:
    """Settle the batches reserved under the portal's leftover reservation rows, then delete them.

    Only the lock holder calls this, so every row belongs to a drain that died (or failed) between
    committing it and deleting it.
    """
    in_flight_since = timezone.now() - _IN_FLIGHT
    for reservation in OfflineReservation.objects.filter(portal=portal).order_by("id"):
        records = _reserved(client, reservation.process_id)
        if records:
            report.recovered += len(records)
            _settle(client, portal, reservation.process_id, records, report)
            logger.warning(
                "events.offline.recovered",
                extra={
                    "member_id": portal.member_id,
                    "process_id": reservation.process_id,
                    "records": len(records),
                },
            )
        elif reservation.created_at > in_flight_since:
            continue
        reservation.delete()


def _reserved(client: Bitrix24Client, process_id: str) -> list[dict[str, Any]]:
    """Every record still reserved under ``process_id`` (event.offline.list, all pages)."""
    rows: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None:
        page = client.call_raw(
            "event.offline.list",
            {"filter": {"=PROCESS_ID": process_id}, "order": {"ID": "ASC"}, "start": start},
        )
        found = list(page.result or [])
        rows.extend(found)
        following = page.payload.get("next")
        start = int(following) if following is not None and len(found) == _LIST_PAGE else None
    return rows


def _store_batch(portal: Portal, records: list[dict[str, Any]], report: OfflineReport) -> list[str]:
    """Store a reserved batch in one transaction; returns the MESSAGE_IDs that couldn't be read."""
    bad: list[str] = []
    now = timezone.now()
    with transaction.atomic():
        for record in records:
            report.fetched += 1
            try:
                payload = parse_offline_record(record, member_id=portal.member_id)
            except InvalidEventPayload:
                bad.append(str(record.get("MESSAGE_ID") or record.get("ID") or ""))
                report.errors += 1
                continue
            if not registry.handles(payload.event):
                report.unhandled += 1
                continue
            if event_store(portal_id=portal.pk, payload=payload, now=now) is None:
                report.duplicates += 1
            else:
                report.stored += 1
    return [b for b in bad if b]


def _leave_flag(name: str) -> None:
    """Ask the drain holding the portal to look again once it lets go."""
    try:
        coordination().flags_set([name], ttl=_AGAIN_TTL)
    except redis.RedisError:
        logger.warning("events.offline.flag_failed", extra={"flag": name})


def _take_flag(name: str) -> bool:
    """Whether a turned-away drain left the flag ``name`` (cleared here either way)."""
    try:
        coord = coordination()
        was_absent = coord.flags_set([name], ttl=_AGAIN_TTL)[0]
        coord.flag_clear(name)
    except redis.RedisError:
        logger.warning("events.offline.flag_failed", extra={"flag": name})
        return False
    return coord.flags_shared and not was_absent


def offline_events_sweep() -> int:
    """Queue a drain for every active portal with offline events enabled; returns how many."""

    ids = list(Portal.objects.active().filter(offline_events=True).values_list("id", flat=True))
    for portal_id in ids:
        offline_drain_queue(portal_id)
    return len(ids)
