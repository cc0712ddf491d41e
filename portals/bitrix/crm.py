"""The typed layer over Bitrix24's CRM and users: wire values in, Python values out.

Bitrix24 answers every field as text in its own conventions: dates as ISO 8601 with the portal's
offset (or "" for none), flags as "Y"/"N", money as decimal text ("1200.50", "100|USD" in a money
user field), PHONE/EMAIL as lists of multi-field objects, numbers as strings. This module turns a
row into a :class:`Record` whose values have their real types, decided by each field's declared
type (``crm.<entity>.fields``: standard fields are known here, user fields come from the portal's
own description), and back into JSON-safe values for storage and the outward API. The mirror
(``mirror/``) and the API use it; nothing else converts wire values.

The helpers below name one documented REST method each and go through ``Bitrix24Client``
(limits, retries, metrics); reads return typed records::

    crm = Crm(client)
    deal = crm.deals.get(7)                        # Record: deal.id, deal["OPPORTUNITY"] (Decimal)
    for deal in crm.deals.iterate(filter={"STAGE_ID": "WON"}, select=["ID", "TITLE"]):
        ...
    deal_id = crm.deals.add({"TITLE": "Boiler", "OPPORTUNITY": 1200})

Free of Django, like the rest of the package.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from .client import Bitrix24Client
from .values import bounded_int

Row = dict[str, Any]
Rows = list[Row]  # an alias: classes below define a method named ``list``
Fields = Mapping[str, Any]

# --- Wire values ------------------------------------------------------------------------------------

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
# Decimal places a money value keeps; Bitrix24 stores money as DECIMAL(18,2) and rates with more.
_MAX_DIGITS = 30


def to_int(value: Any) -> int | None:
    """An integer field ("42", 42, "0"); None for empty, non-integral or out-of-range values."""
    # Nearly every wire integer is plain ASCII digits that fit 64 bits whatever they are: they
    # skip the general parser's pattern match.
    if value.__class__ is str and len(value) < 19 and value.isdigit() and value.isascii():
        return int(value)
    if value is None:
        return None
    return bounded_int(value, low=_INT_MIN, high=_INT_MAX)


def to_decimal(value: Any) -> Decimal | None:
    """Money and doubles as exact decimals: "1200.50", 1200.5, "100|USD" (a money user field).

    None for empty, non-numeric, infinite or absurdly long values. Floats go through ``repr`` so
    1200.5 stays 1200.5 rather than its binary expansion.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        value = repr(value)
    if not isinstance(value, str):
        return None
    text = value.split("|", 1)[0].strip()
    if not text or len(text) > _MAX_DIGITS + 2:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    # "1e999999" is a valid Decimal no column or JSON reader wants: keep to sane magnitudes.
    if not number.is_finite() or abs(number.adjusted()) > _MAX_DIGITS:
        return None
    return number


_FLAGS = {"Y": True, "N": False, "1": True, "0": False, "TRUE": True, "FALSE": False}


def to_bool(value: Any) -> bool | None:
    """ "Y"/"N" (CRM flags), "1"/"0" (boolean user fields), JSON booleans; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {0: False, 1: True}.get(value)
    if isinstance(value, str):
        flag = _FLAGS.get(value)
        return flag if flag is not None else _FLAGS.get(value.strip().upper())
    return None


def to_datetime(value: Any) -> datetime | None:
    """An ISO 8601 date-time with its offset ("2026-12-03T10:00:00+03:00") as an aware datetime.

    None for "" (Bitrix24's "no date"), for text that isn't one, and for a date-time without an
    offset: its moment would be a guess.
    """
    if not isinstance(value, str) or not value.strip() or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def to_date(value: Any) -> date | None:
    """A date field ("2026-12-03", or a date-time whose calendar day it is); None when empty."""
    if not isinstance(value, str) or not value.strip() or len(value) > 40:
        return None
    text = value.strip()
    try:
        return date.fromisoformat(text[:10]) if len(text) >= 10 else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class MultiField:
    """One entry of PHONE, EMAIL, WEB, IM or LINK: ``value`` of kind ``value_type`` (WORK, MOBILE…)."""

    id: int | None
    value: str
    value_type: str
    type_id: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "value": self.value, "value_type": self.value_type, "type_id": self.type_id}


def to_multifields(value: Any) -> tuple[MultiField, ...]:
    """PHONE/EMAIL/…: a list of {ID, VALUE, VALUE_TYPE, TYPE_ID}; entries without a VALUE dropped."""
    if isinstance(value, Mapping):
        value = list(value.values())
    if not isinstance(value, list):
        return ()
    entries = []
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("VALUE"), str | int):
            continue
        entries.append(
            MultiField(
                id=to_int(item.get("ID")),
                value=str(item["VALUE"]),
                value_type=str(item.get("VALUE_TYPE") or ""),
                type_id=str(item.get("TYPE_ID") or ""),
            )
        )
    return tuple(entries)


def _to_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return value  # nested structures (addresses, files) are kept as Bitrix24 sent them


_INT_TYPES = frozenset(
    {
        "integer",
        "int",
        "user",
        "employee",
        "crm_company",
        "crm_contact",
        "crm_lead",
        "crm_deal",
        "crm_quote",
        "crm_category",
        "iblock_section",
        "iblock_element",
    }
)
_CONVERTERS: dict[str, Any] = {
    **dict.fromkeys(_INT_TYPES, to_int),
    "double": to_decimal,
    "money": to_decimal,
    "char": to_bool,
    "boolean": to_bool,
    "datetime": to_datetime,
    "date": to_date,
    "crm_multifield": to_multifields,
}


Converter = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class FieldType:
    """A field's declared type (``crm.<entity>.fields``' ``type``) and whether it holds a list."""

    type: str
    multiple: bool = False

    def convert(self, value: Any) -> Any:
        return _converter(self)(value)

    def converter(self) -> Converter:
        """The one-argument function :meth:`convert` applies (decided once per type, not per value)."""
        return _converter(self)


def _first(convert: Converter) -> Converter:
    def single(value: Any) -> Any:
        if isinstance(value, list):
            value = value[0] if value else None  # a single field answered as a one-item list
        return convert(value)

    return single


def _each(convert: Converter) -> Converter:
    def each(value: Any) -> list[Any]:
        items = value if isinstance(value, list) else ([] if value in (None, "", False) else [value])
        return [convert(item) for item in items]

    return each


# Portals' user-field type names are open-ended: bounded, so an odd description can't grow it.
@functools.lru_cache(maxsize=1024)
def _converter(spec: FieldType) -> Converter:
    if spec.type == "crm_multifield":
        return to_multifields
    convert = _CONVERTERS.get(spec.type)
    if spec.multiple:
        return _each(convert or _to_text)
    return _first(convert) if convert is not None else _to_text


def _types(spec: Mapping[str, str]) -> dict[str, FieldType]:
    """``{"integer": "ID PROBABILITY", "crm_contact[]": "CONTACT_IDS"}`` → name → FieldType."""
    table = {}
    for kind, names in spec.items():
        multiple = kind.endswith("[]")
        for name in names.split():
            table[name] = FieldType(kind.removesuffix("[]"), multiple)
    return table


_CRM_COMMON = {
    "integer": "ID",
    "user": "ASSIGNED_BY_ID CREATED_BY_ID MODIFY_BY_ID MOVED_BY_ID LAST_ACTIVITY_BY",
    "datetime": "DATE_CREATE DATE_MODIFY MOVED_TIME LAST_ACTIVITY_TIME DATE_CLOSED",
    "char": "OPENED HAS_PHONE HAS_EMAIL HAS_IMOL IS_RETURN_CUSTOMER IS_MANUAL_OPPORTUNITY EXPORT",
    "crm_multifield[]": "PHONE EMAIL WEB IM LINK",
    "crm_company": "COMPANY_ID",
    "crm_lead": "LEAD_ID",
    "date": "BIRTHDATE",
}

# The standard fields' declared types, from crm.<entity>.fields (RD api-reference/crm/deals/
# crm-deal-fields.md and its siblings); user fields are typed from the portal's own description.
STANDARD_TYPES: dict[str, dict[str, FieldType]] = {
    "deal": _types(
        {
            **_CRM_COMMON,
            "integer": "ID PROBABILITY",
            "crm_category": "CATEGORY_ID",
            "char": "OPENED CLOSED IS_NEW IS_RECURRING IS_RETURN_CUSTOMER IS_REPEATED_APPROACH "
            "IS_MANUAL_OPPORTUNITY",
            "double": "OPPORTUNITY TAX_VALUE",
            "crm_contact": "CONTACT_ID",
            "crm_contact[]": "CONTACT_IDS",
            "crm_quote": "QUOTE_ID",
            "date": "BEGINDATE CLOSEDATE",
        }
    ),
    "lead": _types(
        {**_CRM_COMMON, "double": "OPPORTUNITY", "crm_contact": "CONTACT_ID", "crm_contact[]": "CONTACT_IDS"}
    ),
    "contact": _types({**_CRM_COMMON, "crm_company[]": "COMPANY_IDS"}),
    "company": _types(
        {**_CRM_COMMON, "double": "REVENUE", "char": "OPENED HAS_PHONE HAS_EMAIL HAS_IMOL IS_MY_COMPANY"}
    ),
    "status": _types({"integer": "ID SORT CATEGORY_ID", "char": "SYSTEM"}),
    "currency": _types(
        {"int": "AMOUNT_CNT SORT DECIMALS", "double": "AMOUNT", "char": "BASE", "datetime": "DATE_UPDATE"}
    ),
    # user.get answers ACTIVE as a JSON boolean and the flags as "Y"/"N".
    "user": _types(
        {
            "integer": "ID",
            "boolean": "ACTIVE",
            "char": "IS_ONLINE",
            "datetime": "LAST_LOGIN DATE_REGISTER TIMESTAMP_X LAST_ACTIVITY_DATE",
            "date": "PERSONAL_BIRTHDAY UF_EMPLOYMENT_DATE",
            "integer[]": "UF_DEPARTMENT",
        }
    ),
}


def field_types(entity: str, description: Mapping[str, Any] | None = None) -> dict[str, FieldType]:
    """Every field's type for ``entity``: the standard table, plus what ``crm.<entity>.fields``
    answered (``description``: name → {"type", "isMultiple", …}), which types the user fields."""
    table = dict(STANDARD_TYPES.get(entity, {}))
    for name, spec in (description or {}).items():
        if isinstance(spec, Mapping) and isinstance(spec.get("type"), str):
            table[name] = FieldType(spec["type"], bool(spec.get("isMultiple")))
    return table


@dataclass(frozen=True, slots=True)
class Record:
    """One row with typed values: ``record["OPPORTUNITY"]`` is a Decimal, ``record["CLOSED"]`` a bool.

    ``id`` is the integer ID (a currency's is its code). Fields without a declared type keep the
    wire value (text, or the nested structure Bitrix24 sent).
    """

    entity: str
    id: int | str
    values: Mapping[str, Any] = field(repr=False)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    @property
    def user_fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if k.startswith("UF_")}

    def as_json(self) -> dict[str, Any]:
        """Every value JSON-safe: decimals as strings, dates in ISO 8601, multi-fields as objects."""
        return {name: json_value(value) for name, value in self.values.items()}


def json_value(value: Any) -> Any:
    """A typed value as JSON: Decimal → "1200.50", datetime/date → ISO 8601, MultiField → object."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, MultiField):
        return value.as_json()
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    return value


def record_from_wire(entity: str, row: Mapping[str, Any], types: Mapping[str, FieldType]) -> Record:
    """A wire row as a :class:`Record`, each field converted by ``types`` (see :func:`field_types`).

    Raises ValueError for a row without a usable ID (CURRENCY for currencies). For many rows of one
    entity, :func:`record_reader` decides each field's conversion once instead of per row.
    """
    values = {}
    for name, value in row.items():
        spec = types.get(name)
        values[name] = spec.convert(value) if spec is not None else value
    return _record(entity, row, values)


def record_reader(entity: str, types: Mapping[str, FieldType]) -> Callable[[Mapping[str, Any]], Record]:
    """``record_from_wire(entity, row, types)`` as a function of ``row``, for reading many rows:
    each field's converter is looked up once here. ``types`` is read now; later changes to it
    are not seen."""
    converters = {name: spec.converter() for name, spec in types.items()}
    converter = converters.get

    def read(row: Mapping[str, Any]) -> Record:
        values = {
            name: value if (convert := converter(name)) is None else convert(value)
            for name, value in row.items()
        }
        return _record(entity, row, values)

    return read


def _record(entity: str, row: Mapping[str, Any], values: dict[str, Any]) -> Record:
    if entity == "currency":
        code = row.get("CURRENCY")
        if not isinstance(code, str) or not code:
            raise ValueError("a currency row without CURRENCY")
        return Record(entity, code, values)
    ident = to_int(row.get("ID"))
    if ident is None:
        raise ValueError(f"a {entity} row without a usable ID")
    return Record(entity, ident, values)


Records = list[Record]  # an alias, as Rows


@dataclass(frozen=True)
class Page:
    """One page of a list method: up to 50 records, the ``next`` start (None on the last), ``total``."""

    rows: Records
    next: int | None
    total: int | None


def _page(payload: Mapping[str, Any], entity: str, types: Mapping[str, FieldType]) -> Page:
    result = payload.get("result") or []
    rows = list(result.values()) if isinstance(result, Mapping) else list(result)
    nxt = payload.get("next")
    total = payload.get("total")
    return Page(
        rows=[record_from_wire(entity, row, types) for row in rows],
        next=int(nxt) if nxt is not None else None,
        total=int(total) if total is not None else None,
    )


def _list_params(
    filter: Fields | None, select: Sequence[str] | None, order: Mapping[str, str] | None, start: int
) -> dict[str, Any]:
    params: dict[str, Any] = {"start": start}
    if filter:
        params["filter"] = dict(filter)
    if select:
        params["select"] = list(select)
    if order:
        params["order"] = dict(order)
    return params


class _CrmEntity:
    """crm.<entity>.{get,list,add,update,delete,fields}: what deals, leads, contacts, companies share.

    Reads return :class:`Record`; the first read asks ``crm.<entity>.fields`` once per helper to
    type the portal's user fields (pass ``types`` to skip that call).
    """

    prefix: ClassVar[str]
    entity: ClassVar[str]

    def __init__(self, client: Bitrix24Client, *, types: Mapping[str, FieldType] | None = None):
        self.client = client
        self._types = dict(types) if types is not None else None

    def types(self) -> dict[str, FieldType]:
        """The entity's field types (standard and the portal's user fields), asked once."""
        if self._types is None:
            self._types = field_types(self.entity, self.fields())
        return self._types

    def record(self, row: Mapping[str, Any]) -> Record:
        return record_from_wire(self.entity, row, self.types())

    def get(self, id: int) -> Record:
        """The entity's fields, typed; raises Bitrix24NotFound for a missing id."""
        return self.record(self.client.call(f"{self.prefix}.get", {"id": id}))

    def list(
        self,
        *,
        filter: Fields | None = None,
        select: Sequence[str] | None = None,
        order: Mapping[str, str] | None = None,
        start: int = 0,
    ) -> Page:
        """One page (50 rows) from ``start``; for all rows use :meth:`iterate`."""
        response = self.client.call_raw(f"{self.prefix}.list", _list_params(filter, select, order, start))
        return _page(response.payload, self.entity, self.types())

    def iterate(
        self, *, filter: Fields | None = None, select: Sequence[str] | None = None, parallel: int = 4
    ) -> Iterator[Record]:
        """Every matching row, typed, streamed by keyset traversal (see Bitrix24Client.list_all)."""
        params: dict[str, Any] = {}
        if filter:
            params["filter"] = dict(filter)
        if select:
            params["select"] = list(select)
        types = self.types()
        for row in self.client.list_all(f"{self.prefix}.list", params, parallel=parallel):
            yield record_from_wire(self.entity, row, types)

    def add(self, fields: Fields, *, params: Fields | None = None) -> int:
        """Create one; returns its id. ``params`` e.g. {"REGISTER_SONET_EVENT": "Y"}."""
        body: dict[str, Any] = {"fields": dict(fields)}
        if params:
            body["params"] = dict(params)
        return int(self.client.call(f"{self.prefix}.add", body))

    def update(self, id: int, fields: Fields, *, params: Fields | None = None) -> bool:
        body: dict[str, Any] = {"id": id, "fields": dict(fields)}
        if params:
            body["params"] = dict(params)
        return bool(self.client.call(f"{self.prefix}.update", body))

    def delete(self, id: int) -> bool:
        return bool(self.client.call(f"{self.prefix}.delete", {"id": id}))

    def fields(self) -> dict[str, Row]:
        """Field descriptions keyed by field name (type, isRequired, isMultiple, title...)."""
        result: dict[str, Row] = self.client.call(f"{self.prefix}.fields")
        return result


class Deals(_CrmEntity):
    prefix = "crm.deal"
    entity = "deal"

    def product_rows(self, id: int) -> Rows:
        rows: Rows = self.client.call("crm.deal.productrows.get", {"id": id})
        return rows

    def set_product_rows(self, id: int, rows: Sequence[Fields]) -> bool:
        return bool(self.client.call("crm.deal.productrows.set", {"id": id, "rows": [dict(r) for r in rows]}))

    def contacts(self, id: int) -> Rows:
        items: Rows = self.client.call("crm.deal.contact.items.get", {"id": id})
        return items

    def set_contacts(self, id: int, items: Sequence[Fields]) -> bool:
        return bool(
            self.client.call("crm.deal.contact.items.set", {"id": id, "items": [dict(i) for i in items]})
        )


class Leads(_CrmEntity):
    prefix = "crm.lead"
    entity = "lead"

    def product_rows(self, id: int) -> Rows:
        rows: Rows = self.client.call("crm.lead.productrows.get", {"id": id})
        return rows

    def set_product_rows(self, id: int, rows: Sequence[Fields]) -> bool:
        return bool(self.client.call("crm.lead.productrows.set", {"id": id, "rows": [dict(r) for r in rows]}))


class Contacts(_CrmEntity):
    prefix = "crm.contact"
    entity = "contact"

    def companies(self, id: int) -> Rows:
        items: Rows = self.client.call("crm.contact.company.items.get", {"id": id})
        return items


class Companies(_CrmEntity):
    prefix = "crm.company"
    entity = "company"

    def contacts(self, id: int) -> Rows:
        items: Rows = self.client.call("crm.company.contact.items.get", {"id": id})
        return items


class Statuses:
    """crm.status.*: reference lists (deal stages, sources...). No paging: one call returns all."""

    def __init__(self, client: Bitrix24Client):
        self.client = client

    def list(self, *, filter: Fields | None = None, order: Mapping[str, str] | None = None) -> Records:
        params: dict[str, Any] = {}
        if filter:
            params["filter"] = dict(filter)
        if order:
            params["order"] = dict(order)
        return [_status(row) for row in self.client.call("crm.status.list", params)]

    def iterate(self) -> Iterator[Record]:
        """Every status of every reference (offset paging: crm.status.list has no ID filter)."""
        return (_status(row) for row in self.client.list_all("crm.status.list", {}))

    def get(self, id: int) -> Record:
        return _status(self.client.call("crm.status.get", {"id": id}))

    def add(self, fields: Fields) -> int:
        return int(self.client.call("crm.status.add", {"fields": dict(fields)}))

    def update(self, id: int, fields: Fields) -> bool:
        return bool(self.client.call("crm.status.update", {"id": id, "fields": dict(fields)}))

    def delete(self, id: int, *, force: bool = False) -> bool:
        params: dict[str, Any] = {"id": id}
        if force:
            params["params"] = {"FORCED": "Y"}  # system statuses can only be deleted forced
        return bool(self.client.call("crm.status.delete", params))

    def fields(self) -> dict[str, Row]:
        result: dict[str, Row] = self.client.call("crm.status.fields")
        return result

    def entity_types(self) -> Rows:
        rows: Rows = self.client.call("crm.status.entity.types")
        return rows

    def entity_items(self, entity_id: str) -> Rows:
        """The statuses of one reference, e.g. "DEAL_STAGE" or "SOURCE", in sort order (as sent)."""
        rows: Rows = self.client.call("crm.status.entity.items", {"entityId": entity_id})
        return rows


def _status(row: Mapping[str, Any]) -> Record:
    return record_from_wire("status", row, STANDARD_TYPES["status"])


def _currency(row: Mapping[str, Any]) -> Record:
    return record_from_wire("currency", row, STANDARD_TYPES["currency"])


def _user(row: Mapping[str, Any]) -> Record:
    return record_from_wire("user", row, STANDARD_TYPES["user"])


class Currencies:
    """crm.currency.*: ids are currency codes ("USD"), not numbers."""

    def __init__(self, client: Bitrix24Client):
        self.client = client

    def list(self, *, order: Mapping[str, str] | None = None) -> Records:
        rows = self.client.call("crm.currency.list", {"order": dict(order)} if order else {})
        return [_currency(row) for row in rows]

    def get(self, id: str) -> Record:
        return _currency(self.client.call("crm.currency.get", {"id": id}))

    def add(self, fields: Fields) -> str:
        return str(self.client.call("crm.currency.add", {"fields": dict(fields)}))

    def update(self, id: str, fields: Fields) -> bool:
        return bool(self.client.call("crm.currency.update", {"id": id, "fields": dict(fields)}))

    def delete(self, id: str) -> bool:
        return bool(self.client.call("crm.currency.delete", {"id": id}))

    def fields(self) -> dict[str, Row]:
        result: dict[str, Row] = self.client.call("crm.currency.fields")
        return result

    def base(self) -> str:
        return str(self.client.call("crm.currency.base.get"))

    def set_base(self, id: str) -> bool:
        return bool(self.client.call("crm.currency.base.set", {"id": id}))


class Users:
    """user.*: ``user.get`` pages with ``sort``/``order`` parameters and an upper-case FILTER."""

    def __init__(self, client: Bitrix24Client):
        self.client = client

    def get(self, id: int) -> Record | None:
        """One user by id, or None when there is none (user.get answers an empty list)."""
        rows: Rows = self.client.call("user.get", {"FILTER": {"ID": id}})
        return _user(rows[0]) if rows else None

    def list(self, *, filter: Fields | None = None, start: int = 0) -> Page:
        params: dict[str, Any] = {"sort": "ID", "order": "ASC", "start": start}
        if filter:
            params["FILTER"] = dict(filter)
        return _page(self.client.call_raw("user.get", params).payload, "user", STANDARD_TYPES["user"])

    def iterate(self, *, filter: Fields | None = None) -> Iterator[Record]:
        rows = self.client.list_all("user.get", {"FILTER": dict(filter)} if filter else {}, parallel=1)
        return (_user(row) for row in rows)

    def current(self) -> Record:
        return _user(self.client.call("user.current"))

    def search(self, **criteria: Any) -> Records:
        """user.search: FIND (free text), NAME, LAST_NAME, WORK_POSITION, UF_DEPARTMENT_NAME, USER_TYPE."""
        return [_user(row) for row in self.client.call("user.search", {"FILTER": criteria})]

    def fields(self) -> dict[str, str]:
        result: dict[str, str] = self.client.call("user.fields")
        return result

    def add(self, fields: Fields) -> int:
        """Invite a user (needs the "user" scope and admin rights); returns the new id."""
        return int(self.client.call("user.add", dict(fields)))

    def update(self, id: int, fields: Fields) -> bool:
        return bool(self.client.call("user.update", {"ID": id, **dict(fields)}))


class Crm:
    """All helpers over one client: ``Crm(client).deals.get(1)``."""

    def __init__(self, client: Bitrix24Client):
        self.client = client
        self.deals = Deals(client)
        self.leads = Leads(client)
        self.contacts = Contacts(client)
        self.companies = Companies(client)
        self.statuses = Statuses(client)
        self.currencies = Currencies(client)
        self.users = Users(client)

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Any other method."""
        return self.client.call(method, params)
