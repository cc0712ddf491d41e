"""The JSON bodies of the API's lists and details, read from the mirror.

On PostgreSQL each row's JSON is built by the database (``json_build_object`` over the resource's
columns, the ``data`` document embedded as it is stored) and the page is joined from those texts:
reading 50 rows into Python values, decoding their JSON documents and validating them through the
output models cost more than everything else of an uncached answer (docs/api.md, "Figures"). The
statements are written out from the models' column names instead of compiled by the ORM per
request, and run prepared (bitrix_app.database). Elsewhere (SQLite, the demo) the rows pass
through the output models. Either way the body has the shapes of api.schemas, the document the
OpenAPI schema declares (tests/api check both paths against the models, and schemathesis checks
the answers against the schema).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.db import connection
from django.db.models import DecimalField, QuerySet

from bitrix_app.database import fetch_prepared

from .resources import RESOURCES, Resource

# The lookups the resources filter with (api.resources: ``column`` or ``column__op``).
_OPERATORS = {"": "=", "gt": ">", "gte": ">="}


@dataclass(frozen=True)
class Selection:
    """Which live rows of a portal's resource, in which order: ``filters`` are Django lookups
    (``{"stage_id": "WON", "date_modify__gte": moment}``), ``ordering`` Django's (``"-date_modify"``)."""

    resource: Resource
    portal_id: int
    filters: dict[str, Any] = field(default_factory=dict)
    ordering: tuple[str, ...] = ("bitrix_id",)

    def queryset(self) -> QuerySet[Any]:
        manager = self.resource.entity.model._default_manager
        return manager.filter(portal_id=self.portal_id, deleted_at__isnull=True, **self.filters)

    def where(self) -> tuple[str, list[Any]]:
        """The WHERE clause on PostgreSQL, written out: the ORM compiling the same query cost more
        CPU than the database spent answering it. Column names come from the models, never from
        input; every value is a parameter."""
        model = self.resource.entity.model
        clauses, params = ['"portal_id" = %s', '"deleted_at" IS NULL'], [self.portal_id]
        for lookup, value in self.filters.items():
            name, _, operator = lookup.partition("__")
            clauses.append(f'"{model._meta.get_field(name).column}" {_OPERATORS[operator]} %s')
            params.append(value)
        return " AND ".join(clauses), params

    def order_by(self, table: str = "") -> str:
        model = self.resource.entity.model
        prefix = f'"{table}".' if table else ""
        terms = []
        for order in self.ordering:
            column = model._meta.get_field(order.removeprefix("-")).column
            terms.append(f'{prefix}"{column}"' + (" DESC" if order.startswith("-") else ""))
        return ", ".join(terms)


def count(selection: Selection) -> int:
    if connection.vendor != "postgresql":
        return selection.queryset().count()
    where, params = selection.where()
    table = selection.resource.entity.model._meta.db_table
    return int(fetch_prepared(f'SELECT count(*) FROM "{table}" WHERE {where}', params)[0][0])  # noqa: S608


@functools.cache
def _row_json(plural: str) -> str:
    """``json_build_object(key, column, …)::text`` for the resource: keys in the declared order
    (jsonb would reorder them), money as decimal text, and the text reaches Python undecoded."""
    resource = RESOURCES[plural]
    model = resource.entity.model
    parts = []
    for name, column in resource.columns.items():
        field_ = model._meta.get_field(column)
        value = f'"row"."{field_.column}"' + ("::text" if isinstance(field_, DecimalField) else "")
        parts.append(f"'{name}', {value}")
    parts.append('\'fields\', "row"."data"')
    return f"json_build_object({', '.join(parts)})::text"


def _item(resource: Resource, row: dict[str, Any]) -> dict[str, Any]:
    item = {name: row[column] for name, column in resource.columns.items()}
    item["fields"] = row["data"]
    return item


def rows_json(selection: Selection, *, offset: int, limit: int) -> list[tuple[int, bytes]]:
    """(Bitrix24 id, the row's JSON) for the selected rows ``offset`` to ``offset + limit``."""
    if connection.vendor == "postgresql":
        return rows_json_from_database(selection, offset=offset, limit=limit)
    return rows_json_from_models(selection, offset=offset, limit=limit)


def rows_json_from_database(selection: Selection, *, offset: int, limit: int) -> list[tuple[int, bytes]]:
    """:func:`rows_json` with each row's JSON built by PostgreSQL.

    The page's ids come first, from the order's index alone (it carries the filtered columns:
    mirror.models), then only those rows are read: filtering while walking the rows themselves
    read every row the filters passed over."""
    resource = selection.resource
    where, params = selection.where()
    table = resource.entity.model._meta.db_table
    sql = (
        f'SELECT "row"."bitrix_id", {_row_json(resource.plural)} FROM "{table}" AS "row" '  # noqa: S608
        f'JOIN (SELECT "bitrix_id" FROM "{table}" WHERE {where} ORDER BY {selection.order_by()} '
        f'LIMIT %s OFFSET %s) AS "page" ON "row"."portal_id" = %s AND "row"."bitrix_id" = "page"."bitrix_id" '
        f"ORDER BY {selection.order_by('row')}"
    )
    rows = fetch_prepared(sql, [*params, limit, offset, selection.portal_id])
    return [(ident, text.encode()) for ident, text in rows]


def rows_json_from_models(selection: Selection, *, offset: int, limit: int) -> list[tuple[int, bytes]]:
    """:func:`rows_json` through the ORM and the output models (any database)."""
    resource = selection.resource
    columns = sorted({*resource.columns.values(), "bitrix_id", "data"})
    found = selection.queryset().order_by(*selection.ordering).values(*columns)[offset : offset + limit]
    return [
        (row["bitrix_id"], resource.out.model_validate(_item(resource, row)).model_dump_json().encode())
        for row in found
    ]


def page_body(rows: list[bytes], *, page: int, limit: int, total: int, next_after: int | None) -> bytes:
    """A list's body: ``{"items": [...], "page", "limit", "total", "pages", "next_after"}``."""
    tail = orjson.dumps(
        {
            "page": page,
            "limit": limit,
            "total": total,
            "pages": math.ceil(total / limit),
            "next_after": next_after,
        }
    )
    return b'{"items":[' + b",".join(rows) + b"]," + tail[1:]
