"""Writes to the mirror: upserts of typed records and tombstones, each followed by a new data version.

Every write of a portal's entity bumps its version once the transaction commits
(:mod:`.versions`), which is what invalidates the API's cached answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from portals.bitrix.crm import Record

from ..entities import Entity, record_id
from ..models import Pending
from .versions import mirror_versions_bump

# Rows per INSERT … ON CONFLICT: large enough to amortise the round trip, small enough that one
# statement's parameters stay far below PostgreSQL's 65,535.
CHUNK = 500


def _bump_after_commit(portal_id: int, entity: Entity) -> None:
    transaction.on_commit(lambda: mirror_versions_bump(portal_id=portal_id, entities=[entity.name]))


def storable(value: Any) -> Any:
    """JSON PostgreSQL can store: jsonb refuses the NUL character, which a portal's text may hold."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): storable(v) for k, v in value.items()}
    return value


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _upsert_statement(model: type[Model]) -> str:
    """INSERT … SELECT FROM jsonb_to_recordset(%s) ON CONFLICT … DO UPDATE for ``model``: one
    statement and one parameter per chunk (PostgreSQL)."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    columns = [f.column for f in fields]
    names = ", ".join(f'"{c}"' for c in columns)
    record = ", ".join(f'"{f.column}" {f.db_type(connection)}' for f in fields)
    keep = {"portal_id", "bitrix_id", "deleted_at"}  # the key, and a tombstone stays one
    updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in columns if c not in keep)
    # Every name comes from the model's own declaration, never from input; the rows are the one
    # parameter.
    sql = (
        f'INSERT INTO "{model._meta.db_table}" ({names}) SELECT {names} FROM jsonb_to_recordset(%s::jsonb) '  # noqa: S608
        f"AS r({record}) ON CONFLICT (portal_id, bitrix_id) DO UPDATE SET {updates}"
    )
    return sql


def records_upsert(
    *, portal_id: int, entity: Entity, records: Sequence[Record], now: datetime | None = None
) -> int:
    """Insert or update ``records``; returns how many. A tombstoned row keeps its tombstone
    (Bitrix24 never reuses an id: data fetched before a delete must not revive the object).

    On PostgreSQL a chunk is one statement whose rows travel as one JSON document
    (``jsonb_to_recordset``): building 500 model instances and binding their parameters one by
    one cost more CPU than everything else of a sync page (docs/mirror.md). Elsewhere (SQLite, the
    demo) the ORM's bulk upsert.
    """
    if not records:
        return 0
    now = now or timezone.now()
    model = entity.model
    rows = []
    for record in records:
        columns, data = entity.row(record)
        rows.append(
            {
                "portal_id": portal_id,
                "bitrix_id": record_id(record),
                "data": data,
                "synced_at": now,
                **columns,
            }
        )
    with transaction.atomic():
        if connection.vendor == "postgresql":
            sql = _upsert_statement(model)
            with connection.cursor() as cursor:
                for start in range(0, len(rows), CHUNK):
                    text = json.dumps(rows[start : start + CHUNK], default=_json_default)
                    if "\\u0000" in text:  # rare: only then walk the rows for NUL characters
                        text = json.dumps(storable(rows[start : start + CHUNK]), default=_json_default)
                    cursor.execute(sql, [text])
        else:
            fields = [k for k in rows[0] if k not in ("portal_id", "bitrix_id")]
            objects = [model(**row) for row in rows]
            for start in range(0, len(objects), CHUNK):
                model._default_manager.bulk_create(
                    objects[start : start + CHUNK],
                    update_conflicts=True,
                    unique_fields=["portal", "bitrix_id"],
                    update_fields=fields,
                )
        _bump_after_commit(portal_id, entity)
    return len(rows)


def records_tombstone(
    *, portal_id: int, entity: Entity, ids: Iterable[int], now: datetime | None = None
) -> int:
    """Mark ``ids`` deleted (creating tombstones for ids never mirrored, so a fetch still in flight
    can't bring them back); drops their pending fetches. Returns how many live rows were marked."""
    ids = sorted(set(ids))
    if not ids:
        return 0
    now = now or timezone.now()
    model = entity.model
    manager = model._default_manager
    marked = 0
    with transaction.atomic():
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            marked += manager.filter(
                portal_id=portal_id, bitrix_id__in=chunk, deleted_at__isnull=True
            ).update(deleted_at=now)
            if entity.name != "currency":  # a currency's row can't exist without its code
                manager.bulk_create(
                    [model(portal_id=portal_id, bitrix_id=i, deleted_at=now, synced_at=now) for i in chunk],
                    ignore_conflicts=True,
                )
            Pending.objects.filter(portal_id=portal_id, entity=entity.name, bitrix_id__in=chunk).delete()
        _bump_after_commit(portal_id, entity)
    return marked


def pending_mark(*, portal_id: int, entity: Entity, bitrix_id: int, now: datetime | None = None) -> None:
    """Note that ``bitrix_id`` changed; the batched fetch picks it up (many marks, one fetch)."""
    now = now or timezone.now()
    Pending.objects.bulk_create(
        [Pending(portal_id=portal_id, entity=entity.name, bitrix_id=bitrix_id, marked_at=now)],
        update_conflicts=True,
        unique_fields=["portal", "entity", "bitrix_id"],
        update_fields=["marked_at"],
    )
