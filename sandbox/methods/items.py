"""The universal CRM API: crm.item.list/get/add/update/delete/fields with ``entityTypeId``.

Bitrix24 serves leads (1), deals (2), contacts (3) and companies (4) through it as well as through
the older crm.<entity>.* methods, over the same rows: an item added here is a deal there and fires
the same events. What differs is the shape (RD crm/universal/crm-item-*.md): camelCase names
(``stageId``; ``createdTime`` for DATE_CREATE...), typed values (ids and user ids as integers,
amounts as numbers), ``{"item": ...}`` / ``{"items": [...]}`` envelopes, ``NOT_FOUND`` errors and the
communications as one ``fm`` list. Smart processes, quotes and invoices aren't emulated: their
``entityTypeId`` answers NOT_FOUND, as an unknown smart process does.
"""

from __future__ import annotations

import functools
from typing import Any

from sandbox.methods import fieldlists
from sandbox.methods.crm import MULTIFIELDS, entity_add, entity_delete, entity_update, full_row
from sandbox.methods.listing import OPERATOR, checked_order, list_table, param
from sandbox.registry import Call, ListPage, RestError, method
from sandbox.store import Row

ENTITY_TYPES = {1: "lead", 2: "deal", 3: "contact", 4: "company"}
# Old names whose item name isn't their camelCase (RD crm/universal/object-fields.md).
RENAMED = {
    "DATE_CREATE": "createdTime",
    "DATE_MODIFY": "updatedTime",
    "CREATED_BY_ID": "createdBy",
    "MODIFY_BY_ID": "updatedBy",
    "MOVED_BY_ID": "movedBy",
    "STATUS_ID": "stageId",
    "STATUS_SEMANTIC_ID": "stageSemanticId",
}
INTEGER_TYPES = {
    "integer",
    "user",
    "crm_company",
    "crm_contact",
    "crm_lead",
    "crm_quote",
    "crm_category",
    "crm_entity",
}


def item_name(old: str, *, original_uf: bool = False) -> str:
    """``ASSIGNED_BY_ID`` → ``assignedById``; ``UF_CRM_17200`` → ``ufCrm_17200`` (unless
    useOriginalUfNames=Y)."""
    if old in RENAMED:
        return RENAMED[old]
    if old.startswith("UF_") and original_uf:
        return old
    if old.startswith("UF_CRM_"):
        return "ufCrm_" + old[len("UF_CRM_") :]
    return _camel(old)


def _camel(old: str) -> str:
    first, *rest = old.lower().split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


@functools.cache
def _names(entity: str) -> dict[str, str]:
    """item name → old name, for every field of ``entity``."""
    return {item_name(old): old for old in fieldlists.field_list(entity)}


def _old_name(entity: str, name: str) -> str | None:
    if name.startswith("ufCrm_"):
        return "UF_CRM_" + name[len("ufCrm_") :]
    if name.startswith("UF_"):
        return name
    return _names(entity).get(name)


def _entity(call: Call) -> tuple[int, str]:
    raw = call.params.get("entityTypeId", call.params.get("ENTITY_TYPE_ID"))
    try:
        type_id = int(str(raw))
    except (TypeError, ValueError):
        raise RestError("NOT_FOUND", "Smart process not found", 400)
    entity = ENTITY_TYPES.get(type_id)
    if entity is None:
        raise RestError("NOT_FOUND", "Smart process not found", 400)
    return type_id, entity


def _item_id(call: Call) -> int:
    try:
        value = int(str(call.params.get("id", call.params.get("ID"))))
    except (TypeError, ValueError):
        raise RestError("NOT_FOUND", "Item not found", 400)
    return value


def _typed(kind: str | None, value: Any) -> Any:
    if value in (None, "") or kind is None:
        return value
    if kind in INTEGER_TYPES:
        try:
            return int(str(value))
        except ValueError:
            return value
    if kind == "double":
        try:
            return float(value)
        except (TypeError, ValueError):
            return value
    return value


def to_item(row: Row, entity: str, type_id: int, *, with_fm: bool, original_uf: bool) -> Row:
    """A stored (old-named) row in crm.item's shape."""
    kinds = fieldlists.types(entity)
    item: Row = {}
    for old, value in row.items():
        if old in MULTIFIELDS:
            continue
        kind = kinds.get(old)
        if isinstance(value, list):
            item[item_name(old, original_uf=original_uf)] = [_typed(kind, v) for v in value]
        else:
            item[item_name(old, original_uf=original_uf)] = _typed(kind, value)
    if "CONTACT_IDS" in kinds and "CONTACT_ID" in row:
        contacts = row.get("CONTACT_IDS") or ([row["CONTACT_ID"]] if row.get("CONTACT_ID") else [])
        item["contactIds"] = [int(c) for c in contacts]
    if with_fm:
        item["fm"] = [
            {"id": int(e["ID"]), "valueType": e["VALUE_TYPE"], "value": e["VALUE"], "typeId": e["TYPE_ID"]}
            for key in MULTIFIELDS
            for e in row.get(key) or []
        ]
    item["entityTypeId"] = type_id
    return item


def _original_uf(call: Call) -> bool:
    return str(call.params.get("useOriginalUfNames", "N")).upper() == "Y"


def _old_fields(call: Call, entity: str) -> dict[str, Any]:
    """crm.item's ``fields`` in the old names; unknown fields are ignored, as documented."""
    given = call.params.get("fields")
    if given in (None, "", []):
        return {}
    if not isinstance(given, dict):
        raise RestError("INVALID_ARG_VALUE", "Parameter 'fields' must be an object", 400)
    fields: dict[str, Any] = {}
    for name, value in given.items():
        if name == "fm" and isinstance(value, list):
            for entry in value:
                if isinstance(entry, dict) and str(entry.get("typeId", "")).upper() in MULTIFIELDS:
                    fields.setdefault(str(entry["typeId"]).upper(), []).append(
                        {
                            "ID": entry.get("id"),
                            "VALUE": entry.get("value"),
                            "VALUE_TYPE": entry.get("valueType"),
                        }
                    )
            continue
        old = _old_name(entity, str(name))
        if old is not None:
            fields[old] = value
    return fields


def _translate_list(call: Call, entity: str) -> dict[str, Any]:
    """crm.item.list's select/filter/order in the old names, checked as documented."""
    params: dict[str, Any] = {"start": param(call.params, "start")}
    raw_filter = param(call.params, "filter") or {}
    if not isinstance(raw_filter, dict):
        raise RestError("INVALID_ARG_VALUE", "Invalid filter: an object is expected", 400)
    translated: dict[str, Any] = {}
    for key, value in raw_filter.items():
        match = OPERATOR.match(str(key))
        prefix, name = (match.group(1) or "", match.group(2)) if match else ("", str(key))
        old = _old_name(entity, name)
        if old is None:
            raise RestError(
                "INVALID_ARG_VALUE", f"Invalid filter: field '{name[:64]}' is not allowed in filter", 400
            )
        translated[prefix + old] = value
    params["filter"] = translated
    params["order"] = checked_order(param(call.params, "order"), lambda name: _old_name(entity, name))
    select = param(call.params, "select")
    names = [str(s) for s in (select.values() if isinstance(select, dict) else select or [])]
    if names and "*" not in names:
        params["select"] = [old for old in (_old_name(entity, n) for n in names) if old is not None] or ["ID"]
    return params


@method("crm.item.list", scope="crm")
def item_list(call: Call) -> Any:
    type_id, entity = _entity(call)
    params = _translate_list(call, entity)
    page = list_table(call, call.portal.table(entity), list(fieldlists.standard(entity)), params=params)
    with_fm = "select" not in params
    table = call.portal.table(entity)
    items = []
    for row in page.rows:
        stored = table.get(int(row["ID"])) if with_fm else None
        source = {**row, **(_extras(stored) if stored else {})}
        items.append(to_item(source, entity, type_id, with_fm=with_fm, original_uf=_original_uf(call)))
    return ListPage(rows={"items": items}, total=page.total, next=page.next)


def _extras(stored: Row) -> Row:
    """What an item shows beyond the single-valued fields: communications and the contact list."""
    return {k: stored[k] for k in (*MULTIFIELDS, "CONTACT_IDS") if stored.get(k)}


def _item(call: Call, entity: str, type_id: int, row_id: int, missing: str) -> Row:
    row = call.portal.table(entity).get(row_id)
    if row is None:
        raise RestError("NOT_FOUND", missing, 400)
    call.charge(call.sandbox.config.cost.per_row)
    shown = {**full_row(row, entity), **_extras(row)}
    return {"item": to_item(shown, entity, type_id, with_fm=True, original_uf=_original_uf(call))}


@method("crm.item.get", scope="crm")
def item_get(call: Call) -> Any:
    type_id, entity = _entity(call)
    return _item(call, entity, type_id, _item_id(call), "Element not found")


@method("crm.item.add", scope="crm", write=True)
def item_add(call: Call) -> Any:
    type_id, entity = _entity(call)
    row_id = entity_add(call, entity, _old_fields(call, entity))
    return _item(call, entity, type_id, row_id, "Item not found")


@method("crm.item.update", scope="crm", write=True)
def item_update(call: Call) -> Any:
    type_id, entity = _entity(call)
    row_id = _item_id(call)
    if not entity_update(call, entity, row_id, _old_fields(call, entity)):
        raise RestError("NOT_FOUND", "Item not found", 400)
    return _item(call, entity, type_id, row_id, "Item not found")


@method("crm.item.delete", scope="crm", write=True)
def item_delete(call: Call) -> Any:
    _, entity = _entity(call)
    if not entity_delete(call, entity, _item_id(call)):
        raise RestError("NOT_FOUND", "Item not found", 400)
    return []


@method("crm.item.fields", scope="crm")
def item_fields(call: Call) -> Any:
    """The item fields of an entity type: the old field list renamed, ``char`` flags as
    ``boolean`` and ``upperName`` the old name, as RD crm/universal/crm-item-fields.md shows."""
    _, entity = _entity(call)
    fields = {}
    for old, spec in fieldlists.field_list(entity).items():
        if old in MULTIFIELDS:
            continue
        described = {**spec, "type": "boolean" if spec["type"] == "char" else spec["type"], "upperName": old}
        fields[item_name(old)] = described
    return {"fields": fields}
