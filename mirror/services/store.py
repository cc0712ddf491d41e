"""Writes to the mirror: upserts of typed records and tombstones, each followed by a new data version.

Every write of a portal's entity bumps its version once the transaction commits
(:mod:`.versions`), which is what invalidates the API's cached answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from portals.bitrix.crm import Record, json_value

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


def _json_default(value: Any) -> Any:
    """What orjson leaves to us: decimals as their text, dates and date-times as ``isoformat()``
    (orjson's own writer rounds an offset with seconds to minutes), the rest as the typed layer's
    JSON."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    converted = json_value(value)
    if converted is value:
        raise TypeError(f"not JSON: {type(value).__name__}")
    return converted


def _document(rows: list[dict[str, Any]]) -> str:
    """The rows as one JSON document PostgreSQL can store."""
    try:
        text = orjson.dumps(rows, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except TypeError:  # beyond orjson: integers past 64 bits, keys that aren't text
        text = None
    if text is None or b"\\u0000" in text:  # rare: only then walk the rows for NUL characters
        return json.dumps(storable(json_value(rows)))
    return text.decode()


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


@dataclass(frozen=True)
class PreparedUpsert:
    """An upsert with its CPU work done (typed columns, the JSON documents), the database's to come:
    a sync prepares the next page while the database writes this one. Prepared without touching
    the database, so any thread may prepare it; :func:`upsert_execute` runs it."""

    portal_id: int
    entity: Entity
    count: int
    documents: tuple[str, ...] | None  # PostgreSQL: one JSON document per chunk
    rows: tuple[dict[str, Any], ...]  # elsewhere: the rows for the ORM


def upsert_prepare(
    *,
    portal_id: int,
    entity: Entity,
    records: Sequence[Record],
    now: datetime | None = None,
    vendor: str | None = None,
) -> PreparedUpsert:
    """The work of :func:`records_upsert` before the database: for ``vendor`` (the connection's,
    ``connection.vendor``; pass it when preparing in another thread than the one that executes)."""
    now = now or timezone.now()
    vendor = vendor or connection.vendor
    if vendor == "postgresql":
        row = entity.row_typed
        rows = []
        for record in records:
            columns, data = row(record)
            rows.append(
                {"portal_id": portal_id, "bitrix_id": record_id(record), "data": data, "synced_at": now}
                | columns
            )
        documents = tuple(_document(rows[start : start + CHUNK]) for start in range(0, len(rows), CHUNK))
        return PreparedUpsert(portal_id, entity, len(rows), documents, ())
    orm_rows = []
    for record in records:
        columns, data = entity.row(record)
        orm_rows.append(
            {"portal_id": portal_id, "bitrix_id": record_id(record), "data": data, "synced_at": now} | columns
        )
    return PreparedUpsert(portal_id, entity, len(orm_rows), None, tuple(orm_rows))


def upsert_execute(prepared: PreparedUpsert) -> int:
    """Write a prepared upsert in one transaction; a new data version after the commit. Returns
    how many rows."""
    if not prepared.count:
        return 0
    model = prepared.entity.model
    with transaction.atomic():
        if prepared.documents is not None:
            sql = _upsert_statement(model)
            with connection.cursor() as cursor:
                for document in prepared.documents:
                    cursor.execute(sql, [document])
        else:
            rows = prepared.rows
            fields = [k for k in rows[0] if k not in ("portal_id", "bitrix_id")]
            objects = [model(**row) for row in rows]
            for start in range(0, len(objects), CHUNK):
                model._default_manager.bulk_create(
                    objects[start : start + CHUNK],
                    update_conflicts=True,
                    unique_fields=["portal", "bitrix_id"],
                    update_fields=fields,
                )
        _bump_after_commit(prepared.portal_id, prepared.entity)
    return prepared.count


def records_upsert(
    *, portal_id: int, entity: Entity, records: Sequence[Record], now: datetime | None = None
) -> int:
    """Insert or update ``records``; returns how many. A tombstoned row keeps its tombstone
    (Bitrix24 never reuses an id: data fetched before a delete must not revive the object).

    On PostgreSQL a chunk is one statement whose rows travel as one JSON document
    (``jsonb_to_recordset``): building 500 model instances and binding their parameters one by
    one cost more CPU than everything else of a sync page (docs/mirror.md). Elsewhere (SQLite, the
    demo) the ORM's bulk upsert. :func:`upsert_prepare` and :func:`upsert_execute` are its two
    halves, for a caller that overlaps them.
    """
    if not records:
        return 0
    return upsert_execute(upsert_prepare(portal_id=portal_id, entity=entity, records=records, now=now))


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
