"""The fault suite's and the two-host test's handler: one row per dispatch, in the batch transaction.

Loaded into the web and worker processes through BITRIX24_EVENT_HANDLER_MODULES. The row commits
with the event's done mark or not at all (docs/events.md, Dispatch guarantees), so "dispatched
exactly once" means one row per stored event, whatever was killed or restarted on the way.
``FAULTS_HANDLER_SECONDS`` makes each dispatch take that long. With
``FAULTS_FETCH=1`` the handler also fetches the deal, as a real CRM feature does, so the
dispatch load reaches the portal (the shared bucket, the concurrency cap, a token refresh).
"""

from __future__ import annotations

import os
import time

from django.db import connection

from bench.faults_cluster import TABLE
from events.registry import on_event
from portals.bitrix.events import EventPayload
from portals.models import Portal
from portals.services.client import client_for_portal

EVENT = "ONCRMDEALUPDATE"


@on_event(EVENT)
def record(*, portal: Portal, payload: EventPayload) -> None:
    # A handler that takes a while keeps batches in flight long enough for a kill to land in one.
    time.sleep(float(os.environ.get("FAULTS_HANDLER_SECONDS", "0")))
    if os.environ.get("FAULTS_FETCH") == "1":
        client_for_portal(member_id=portal.member_id).call("crm.deal.get", {"id": payload.object_id})
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (portal_id, object_id, event_key, host) VALUES (%s, %s, %s, %s)",
            [portal.pk, str(payload.object_id), payload.idempotency_key(), os.environ.get("FAULTS_HOST", "")],
        )
