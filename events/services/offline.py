"""Offline events: the lossless path on portals that allow them.

Bitrix24 keeps offline records in a queue on the portal. The drain reserves a batch with
``event.offline.get`` (``clear=0``), stores each record in our outbox (deduplicated like online
events), and only then confirms it with ``event.offline.clear``; records that can't be read are
reported with ``event.offline.error``. A crash between the two leaves the batch reserved on the
portal, and the next drain stores it again without duplicates. Woken by ONOFFLINEEVENT and by a
periodic sweep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from events import registry
from events.services.intake import event_store
from portals.bitrix.events import parse_offline_record
from portals.bitrix.exceptions import InvalidEventPayload
from portals.models import Portal

logger = logging.getLogger("events")

# One drain can't run forever on a portal that keeps producing records.
_MAX_ROUNDS = 200


@dataclass
class OfflineReport:
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    unhandled: int = 0
    errors: int = 0


def offline_events_drain(*, portal_id: int) -> OfflineReport:
    """Move every record of the portal's offline queue into our outbox. Raises the client's errors."""
    from portals.services.client import client_for_portal

    portal = Portal.objects.get(pk=portal_id)
    client = client_for_portal(member_id=portal.member_id)
    report = OfflineReport()
    for _ in range(_MAX_ROUNDS):
        result = client.call(
            "event.offline.get", {"clear": 0, "limit": settings.BITRIX24_EVENT_OFFLINE_BATCH}, read=False
        )
        records = (result or {}).get("events") or []
        if not records:
            break
        process_id = str(result.get("process_id", ""))
        bad = _store_batch(portal, records, report)
        if bad:
            client.call("event.offline.error", {"process_id": process_id, "message_id": bad}, read=False)
        good = [str(r.get("MESSAGE_ID")) for r in records if str(r.get("MESSAGE_ID")) not in bad]
        if good:
            client.call("event.offline.clear", {"process_id": process_id, "message_id": good}, read=False)
        if len(records) < settings.BITRIX24_EVENT_OFFLINE_BATCH:
            break
    logger.info("events.offline.drained", extra={"member_id": portal.member_id, **report.__dict__})
    return report


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


def offline_events_sweep() -> int:
    """Queue a drain for every active portal with offline events enabled; returns how many."""
    from events.tasks import events_offline_drain

    ids = list(Portal.objects.active().filter(offline_events=True).values_list("id", flat=True))
    for portal_id in ids:
        events_offline_drain.delay(portal_id)
    return len(ids)
