"""What a CRM event does to the mirror, inside the outbox's batch transaction.

ADD/UPDATE mark the object pending and, after the commit, queue one fetch per (portal, entity)
(an expiring flag coalesces a burst: one fetch reads them all). DELETE tombstones at once. Events
are hints (docs/events.md): nothing of the event's own data is stored, the fetch reads the object
with the app's token. The outbox hands one object's events over in order.
"""

from __future__ import annotations

import logging

import redis
from django.db import transaction

from portals.services.coordination import coordination

from ..entities import Entity
from .queue import fetch_queue
from .store import pending_mark, records_tombstone

logger = logging.getLogger("mirror")
# Longer than a fetch takes: the fetch clears it when it starts.
FLAG_TTL = 120.0


def fetch_flag(portal_id: int, entity: str) -> str:
    return f"mirror:fetch:{portal_id}:{entity}"


def _fetch_soon(portal_id: int, entity: str) -> None:
    try:
        first = coordination().flags_set([fetch_flag(portal_id, entity)], ttl=FLAG_TTL)[0]
    except redis.RedisError:
        first = True  # without the flag, queue anyway: a fetch too many costs one query
    if first:
        fetch_queue(portal_id, entity)


def object_changed(*, portal_id: int, entity: Entity, bitrix_id: int) -> None:
    pending_mark(portal_id=portal_id, entity=entity, bitrix_id=bitrix_id)
    transaction.on_commit(lambda: _fetch_soon(portal_id, entity.name))


def object_deleted(*, portal_id: int, entity: Entity, bitrix_id: int) -> None:
    records_tombstone(portal_id=portal_id, entity=entity, ids=[bitrix_id])
