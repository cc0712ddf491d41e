"""Typed helpers for the entities the app uses, with the methods each really has.

Thin on purpose: each helper names one documented REST method and its parameters, so callers
get types and discoverability, and everything still goes through ``Bitrix24Client`` (limits,
retries, metrics). Anything not covered here: ``client.call(method, params)``.

    crm = Crm(client)
    deal_id = crm.deals.add({"TITLE": "Boiler", "OPPORTUNITY": 1200})
    for deal in crm.deals.iterate(filter={"STAGE_ID": "WON"}, select=["ID", "TITLE"]):
        ...
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .client import Bitrix24Client

Row = dict[str, Any]
Rows = list[Row]  # an alias: classes below define a method named ``list``
Fields = Mapping[str, Any]


@dataclass(frozen=True)
class Page:
    """One page of a list method: up to 50 rows, the ``next`` start (None on the last), ``total``."""

    rows: Rows
    next: int | None
    total: int | None


def _page(payload: Mapping[str, Any]) -> Page:
    result = payload.get("result") or []
    rows = list(result.values()) if isinstance(result, Mapping) else list(result)
    nxt = payload.get("next")
    total = payload.get("total")
    return Page(
        rows=rows, next=int(nxt) if nxt is not None else None, total=int(total) if total is not None else None
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
    """crm.<entity>.{get,list,add,update,delete,fields}: what deals, leads, contacts, companies share."""

    prefix: ClassVar[str]

    def __init__(self, client: Bitrix24Client):
        self.client = client

    def get(self, id: int) -> Row:
        """The entity's fields; raises Bitrix24NotFound for a missing id."""
        result: Row = self.client.call(f"{self.prefix}.get", {"id": id})
        return result

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
        return _page(response.payload)

    def iterate(
        self, *, filter: Fields | None = None, select: Sequence[str] | None = None, parallel: int = 4
    ) -> Iterator[Row]:
        """Every matching row, streamed by keyset traversal (see Bitrix24Client.list_all)."""
        params: dict[str, Any] = {}
        if filter:
            params["filter"] = dict(filter)
        if select:
            params["select"] = list(select)
        return self.client.list_all(f"{self.prefix}.list", params, parallel=parallel)

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

    def product_rows(self, id: int) -> Rows:
        rows: Rows = self.client.call("crm.lead.productrows.get", {"id": id})
        return rows

    def set_product_rows(self, id: int, rows: Sequence[Fields]) -> bool:
        return bool(self.client.call("crm.lead.productrows.set", {"id": id, "rows": [dict(r) for r in rows]}))


class Contacts(_CrmEntity):
    prefix = "crm.contact"

    def companies(self, id: int) -> Rows:
        items: Rows = self.client.call("crm.contact.company.items.get", {"id": id})
        return items


class Companies(_CrmEntity):
    prefix = "crm.company"

    def contacts(self, id: int) -> Rows:
        items: Rows = self.client.call("crm.company.contact.items.get", {"id": id})
        return items


class Statuses:
    """crm.status.*: reference lists (deal stages, sources...). No paging: one call returns all."""

    def __init__(self, client: Bitrix24Client):
        self.client = client

    def list(self, *, filter: Fields | None = None, order: Mapping[str, str] | None = None) -> Rows:
        params: dict[str, Any] = {}
        if filter:
            params["filter"] = dict(filter)
        if order:
            params["order"] = dict(order)
        rows: Rows = self.client.call("crm.status.list", params)
        return rows

    def get(self, id: int) -> Row:
        row: Row = self.client.call("crm.status.get", {"id": id})
        return row

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
        """The statuses of one reference, e.g. "DEAL_STAGE" or "SOURCE", in sort order."""
        rows: Rows = self.client.call("crm.status.entity.items", {"entityId": entity_id})
        return rows


class Currencies:
    """crm.currency.*: ids are currency codes ("USD"), not numbers."""

    def __init__(self, client: Bitrix24Client):
        self.client = client

    def list(self, *, order: Mapping[str, str] | None = None) -> Rows:
        rows: Rows = self.client.call("crm.currency.list", {"order": dict(order)} if order else {})
        return rows

    def get(self, id: str) -> Row:
        row: Row = self.client.call("crm.currency.get", {"id": id})
        return row

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

    def get(self, id: int) -> Row | None:
        """One user by id, or None when there is none (user.get answers an empty list)."""
        rows: Rows = self.client.call("user.get", {"FILTER": {"ID": id}})
        return rows[0] if rows else None

    def list(self, *, filter: Fields | None = None, start: int = 0) -> Page:
        params: dict[str, Any] = {"sort": "ID", "order": "ASC", "start": start}
        if filter:
            params["FILTER"] = dict(filter)
        return _page(self.client.call_raw("user.get", params).payload)

    def iterate(self, *, filter: Fields | None = None) -> Iterator[Row]:
        return self.client.list_all("user.get", {"FILTER": dict(filter)} if filter else {}, parallel=1)

    def current(self) -> Row:
        row: Row = self.client.call("user.current")
        return row

    def search(self, **criteria: Any) -> Rows:
        """user.search: FIND (free text), NAME, LAST_NAME, WORK_POSITION, UF_DEPARTMENT_NAME, USER_TYPE."""
        rows: Rows = self.client.call("user.search", {"FILTER": criteria})
        return rows

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
