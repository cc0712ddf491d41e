"""The mirrored entities: which Bitrix24 methods feed each table and how a record fills its columns.

One table of specs instead of a class per entity: the sync, the event handlers, the reconciliation
and the API all look an entity up here by its name ("deal") or its API plural ("deals").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.db import models

from portals.bitrix.crm import Record, json_value

from .models import Company, Contact, Currency, Deal, Lead, Status, User

Columns = Callable[[Record], dict[str, Any]]


def _decimal(value: Any, *, places: int = 2, digits: int = 20) -> Decimal | None:
    """A decimal the column can hold: rounded to its places; None beyond its digits (the full
    value stays in Bitrix24; one odd number must not stop a sync)."""
    if not isinstance(value, Decimal):
        return None
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    return rounded if abs(rounded) < Decimal(10) ** (digits - places) else None


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return text.replace("\x00", "")


def _crm_common(record: Record) -> dict[str, Any]:
    return {
        "assigned_by_id": record.get("ASSIGNED_BY_ID"),
        "date_create": record.get("DATE_CREATE"),
        "date_modify": record.get("DATE_MODIFY"),
    }


def _deal(record: Record) -> dict[str, Any]:
    return {
        **_crm_common(record),
        "title": _text(record.get("TITLE")),
        "stage_id": _text(record.get("STAGE_ID")),
        "category_id": record.get("CATEGORY_ID"),
        "opportunity": _decimal(record.get("OPPORTUNITY")),
        "currency_id": _text(record.get("CURRENCY_ID")),
        "company_id": record.get("COMPANY_ID") or None,
        "contact_id": record.get("CONTACT_ID") or None,
        "closed": record.get("CLOSED"),
    }


def _lead(record: Record) -> dict[str, Any]:
    return {
        **_crm_common(record),
        "title": _text(record.get("TITLE")),
        "status_id": _text(record.get("STATUS_ID")),
        "name": _text(record.get("NAME")),
        "last_name": _text(record.get("LAST_NAME")),
        "opportunity": _decimal(record.get("OPPORTUNITY")),
        "currency_id": _text(record.get("CURRENCY_ID")),
    }


def _contact(record: Record) -> dict[str, Any]:
    return {
        **_crm_common(record),
        "name": _text(record.get("NAME")),
        "last_name": _text(record.get("LAST_NAME")),
        "type_id": _text(record.get("TYPE_ID")),
        "company_id": record.get("COMPANY_ID") or None,
    }


def _company(record: Record) -> dict[str, Any]:
    return {
        **_crm_common(record),
        "title": _text(record.get("TITLE")),
        "company_type": _text(record.get("COMPANY_TYPE")),
        "industry": _text(record.get("INDUSTRY")),
        "revenue": _decimal(record.get("REVENUE")),
        "currency_id": _text(record.get("CURRENCY_ID")),
    }


def _user(record: Record) -> dict[str, Any]:
    return {
        "active": record.get("ACTIVE"),
        "name": _text(record.get("NAME")),
        "last_name": _text(record.get("LAST_NAME")),
        "email": _text(record.get("EMAIL")),
        "work_position": _text(record.get("WORK_POSITION")),
    }


def _status(record: Record) -> dict[str, Any]:
    return {
        "entity_id": _text(record.get("ENTITY_ID")),
        "status_id": _text(record.get("STATUS_ID")),
        "name": _text(record.get("NAME")),
        "sort": record.get("SORT"),
    }


def _currency(record: Record) -> dict[str, Any]:
    return {
        "code": str(record.id),
        "base": record.get("BASE"),
        "amount": _decimal(record.get("AMOUNT"), places=8, digits=24),
        "amount_cnt": record.get("AMOUNT_CNT"),
        "sort": record.get("SORT"),
    }


def currency_id(code: str) -> int:
    """The integer standing for a currency code: its first seven bytes, big-endian (alphabetical)."""
    return int.from_bytes(code.encode("utf-8")[:7].ljust(7, b"\0"), "big")


def record_id(record: Record) -> int:
    return currency_id(str(record.id)) if isinstance(record.id, str) else record.id


@dataclass(frozen=True)
class Entity:
    """One mirrored entity.

    ``crm``: deals, leads, contacts, companies — keyset traversal, ``get`` per object, events,
    reconciliation by DATE_MODIFY. The others are reference data, small and read whole on every
    sync and reconciliation. ``wire_fields``: the Bitrix24 fields the typed columns come from
    (kept out of ``data``, where they would be stored twice).
    """

    name: str
    plural: str
    model: type[models.Model]
    list_method: str
    columns: Columns
    wire_fields: frozenset[str]
    crm: bool = False
    get_method: str = ""
    fields_method: str = ""
    select: tuple[str, ...] = ()
    events: tuple[str, ...] = ()

    def row(self, record: Record) -> tuple[dict[str, Any], dict[str, Any]]:
        """(typed columns, the JSON of every other field) for a record."""
        columns, data = self.row_typed(record)
        return columns, {k: json_value(v) for k, v in data.items()}

    def row_typed(self, record: Record) -> tuple[dict[str, Any], dict[str, Any]]:
        """(typed columns, every other field) with the typed layer's values (Decimal, datetime,
        MultiField), for a writer that serialises them itself: :meth:`row` is this made JSON-safe."""
        wire = self.wire_fields
        return self.columns(record), {k: v for k, v in record.values.items() if k not in wire}


_CRM_WIRE = frozenset({"ID", "ASSIGNED_BY_ID", "DATE_CREATE", "DATE_MODIFY"})
# PHONE and EMAIL are not in "*" (RD api-reference/crm/contacts/crm-contact-list.md): asked by name.
_CRM_SELECT = ("*", "UF_*")
_CONTACT_SELECT = ("*", "UF_*", "PHONE", "EMAIL", "WEB", "IM")


def _crm(
    name: str, plural: str, model: type[models.Model], columns: Columns, wire: set[str], select=_CRM_SELECT
):
    upper = name.upper()
    return Entity(
        name=name,
        plural=plural,
        model=model,
        list_method=f"crm.{name}.list",
        get_method=f"crm.{name}.get",
        fields_method=f"crm.{name}.fields",
        columns=columns,
        wire_fields=_CRM_WIRE | wire,
        crm=True,
        select=select,
        events=(f"ONCRM{upper}ADD", f"ONCRM{upper}UPDATE", f"ONCRM{upper}DELETE"),
    )


ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        _crm(
            "deal",
            "deals",
            Deal,
            _deal,
            {
                "TITLE",
                "STAGE_ID",
                "CATEGORY_ID",
                "OPPORTUNITY",
                "CURRENCY_ID",
                "COMPANY_ID",
                "CONTACT_ID",
                "CLOSED",
            },
        ),
        _crm(
            "lead",
            "leads",
            Lead,
            _lead,
            {"TITLE", "STATUS_ID", "NAME", "LAST_NAME", "OPPORTUNITY", "CURRENCY_ID"},
            _CONTACT_SELECT,
        ),
        _crm(
            "contact",
            "contacts",
            Contact,
            _contact,
            {"NAME", "LAST_NAME", "TYPE_ID", "COMPANY_ID"},
            _CONTACT_SELECT,
        ),
        _crm(
            "company",
            "companies",
            Company,
            _company,
            {"TITLE", "COMPANY_TYPE", "INDUSTRY", "REVENUE", "CURRENCY_ID"},
            _CONTACT_SELECT,
        ),
        Entity(
            name="user",
            plural="users",
            model=User,
            list_method="user.get",
            columns=_user,
            wire_fields=frozenset(
                {"ID", "ACTIVE", "NAME", "LAST_NAME", "EMAIL", "WORK_POSITION", "IS_ADMIN"}
            ),
        ),
        Entity(
            name="status",
            plural="statuses",
            model=Status,
            list_method="crm.status.list",
            columns=_status,
            wire_fields=frozenset({"ID", "ENTITY_ID", "STATUS_ID", "NAME", "SORT"}),
        ),
        Entity(
            name="currency",
            plural="currencies",
            model=Currency,
            list_method="crm.currency.list",
            columns=_currency,
            wire_fields=frozenset({"CURRENCY", "BASE", "AMOUNT", "AMOUNT_CNT", "SORT"}),
        ),
    )
}
BY_PLURAL: Mapping[str, Entity] = {e.plural: e for e in ENTITIES.values()}
BY_EVENT: Mapping[str, Entity] = {event: e for e in ENTITIES.values() for event in e.events}


def entity_named(name: str) -> Entity:
    """The entity called ``name`` ("deal") or ``plural`` ("deals"); KeyError naming the choices."""
    found = ENTITIES.get(name) or BY_PLURAL.get(name)
    if found is None:
        raise KeyError(f"unknown entity {name[:32]!r}: one of {', '.join(ENTITIES)}")
    return found
