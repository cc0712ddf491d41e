"""CRM methods as Bitrix24 has them: deals, leads, contacts, companies (list/get/add/update/
delete/fields), statuses and currencies. Rows keep Bitrix24's string values; every write calls
``call.changed`` so the data-change subscribers (events) hear about it."""

from __future__ import annotations

from typing import Any

from sandbox.methods.listing import list_rows, list_table
from sandbox.registry import Call, RestError, method
from sandbox.seed import bitrix_datetime
from sandbox.store import EntityTable, Row

ENTITIES = {"deal": "DEAL", "lead": "LEAD", "contact": "CONTACT", "company": "COMPANY"}
# Fields whose values are references to crm.status entries (type crm_status + statusType).
STATUS_FIELDS = {
    "deal": {"STAGE_ID": "DEAL_STAGE", "TYPE_ID": "DEAL_TYPE", "SOURCE_ID": "SOURCE"},
    "lead": {"STATUS_ID": "STATUS", "SOURCE_ID": "SOURCE"},
    "contact": {"TYPE_ID": "CONTACT_TYPE", "SOURCE_ID": "SOURCE"},
    "company": {"COMPANY_TYPE": "COMPANY_TYPE", "INDUSTRY": "INDUSTRY"},
}
READ_ONLY = {
    "ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "IS_NEW",
    "STAGE_SEMANTIC_ID",
    "STATUS_SEMANTIC_ID",
    "CLOSED",
    "HAS_PHONE",
    "HAS_EMAIL",
    "HAS_IMOL",
    "MOVED_BY_ID",
    "MOVED_TIME",
    "LAST_ACTIVITY_TIME",
    "LAST_ACTIVITY_BY",
}


def standard_fields(call: Call, entity: str) -> list[str]:
    table = call.portal.table(entity)
    sample = table.get(1) if table.generated else None
    if sample is None:
        sample = _blank(call, entity)
    return [k for k in sample if not k.startswith("UF_")]


def _blank(call: Call, entity: str) -> Row:
    from sandbox.seed import company_generator, contact_generator, deal_generator, lead_generator

    users = [call.portal.admin_user_id]
    generator = {
        "deal": lambda: deal_generator(0, users, 1, 1),
        "lead": lambda: lead_generator(0, users),
        "contact": lambda: contact_generator(0, users, 1),
        "company": lambda: company_generator(0, users),
    }[entity]()
    return generator(1)


def _id(call: Call) -> int:
    raw = call.params.get("id", call.params.get("ID"))
    try:
        value = int(str(raw))
    except (TypeError, ValueError):
        raise RestError("", "ID is not defined or invalid.", 400)
    if value <= 0:
        raise RestError("", "ID is not defined or invalid.", 400)
    return value


def _fields(call: Call) -> dict[str, Any]:
    fields = call.params.get("fields", call.params.get("FIELDS"))
    if fields in (None, "", []):
        return {}
    if not isinstance(fields, dict):
        raise RestError("", "Parameter 'fields' must be array.", 400)
    return {str(k).upper(): v for k, v in fields.items()}


def _stringify(value: Any) -> Any:
    if value is None or isinstance(value, list | dict | str):
        return value
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


MONEY_FIELDS = {"OPPORTUNITY", "TAX_VALUE", "REVENUE"}


def _apply(row: Row, fields: dict[str, Any], standard: list[str]) -> None:
    for key, value in fields.items():
        if key in READ_ONLY:
            continue
        if key in MONEY_FIELDS and value not in (None, ""):
            try:
                row[key] = f"{float(value):.2f}"  # Bitrix24 answers money with two decimals
            except (TypeError, ValueError):
                raise RestError("", f"Field {key} must be a number.", 400)
        elif key in standard or key.startswith("UF_"):
            row[key] = _stringify(value)


def _get(call: Call, entity: str) -> Row:
    row = call.portal.table(entity).get(_id(call))
    if row is None:
        raise RestError("", "Not found", 400)
    call.charge(call.sandbox.config.cost.per_row)
    return dict(row)


def _add(call: Call, entity: str) -> int:
    table: EntityTable = call.portal.table(entity)
    standard = standard_fields(call, entity)
    fields = _fields(call)
    now = bitrix_datetime(call.sandbox.clock.time())
    user = str(call.auth.user_id)
    row: Row = {k: None for k in standard}
    row.update(
        {
            "DATE_CREATE": now,
            "DATE_MODIFY": now,
            "CREATED_BY_ID": user,
            "MODIFY_BY_ID": user,
            "ASSIGNED_BY_ID": user,
            "OPENED": "Y",
        }
    )
    defaults = {
        "deal": {
            "STAGE_ID": "NEW",
            "STAGE_SEMANTIC_ID": "P",
            "IS_NEW": "Y",
            "CATEGORY_ID": "0",
            "CURRENCY_ID": "USD",
            "OPPORTUNITY": "0.00",
            "CLOSED": "N",
            "TYPE_ID": "SALE",
        },
        "lead": {"STATUS_ID": "NEW", "STATUS_SEMANTIC_ID": "P", "CURRENCY_ID": "USD", "OPPORTUNITY": "0.00"},
        "contact": {"TYPE_ID": "CLIENT", "EXPORT": "Y"},
        "company": {"COMPANY_TYPE": "CUSTOMER", "CURRENCY_ID": "USD", "IS_MY_COMPANY": "N"},
    }[entity]
    row.update({k: v for k, v in defaults.items() if k in row})
    for flag in ("HAS_PHONE", "HAS_EMAIL", "HAS_IMOL"):
        if flag in row:
            row[flag] = "N"
    _apply(row, fields, standard)
    row_id = table.insert(row)
    if entity in ("deal", "lead") and not row.get("TITLE"):
        row["TITLE"] = f"{entity.title()} #{row_id}"
    if entity == "company" and not row.get("TITLE"):
        row["TITLE"] = f"Company #{row_id}"
    call.changed(f"ONCRM{ENTITIES[entity]}ADD", row_id)
    return row_id


def _update(call: Call, entity: str) -> bool:
    table = call.portal.table(entity)
    row_id = _id(call)
    row = table.get(row_id)
    if row is None:
        raise RestError("", "Not found", 400)
    changed = dict(row)
    _apply(changed, _fields(call), standard_fields(call, entity))
    changed["DATE_MODIFY"] = bitrix_datetime(call.sandbox.clock.time())
    changed["MODIFY_BY_ID"] = str(call.auth.user_id)
    if entity == "deal" and changed.get("STAGE_ID") != row.get("STAGE_ID"):
        stage = changed.get("STAGE_ID")
        changed["STAGE_SEMANTIC_ID"] = {"WON": "S", "LOSE": "F", "APOLOGY": "F"}.get(str(stage), "P")
        changed["CLOSED"] = "Y" if changed["STAGE_SEMANTIC_ID"] != "P" else "N"
        changed["IS_NEW"] = "Y" if stage == "NEW" else "N"
    table.put(row_id, changed)
    call.changed(f"ONCRM{ENTITIES[entity]}UPDATE", row_id)
    return True


def _delete(call: Call, entity: str) -> bool:
    row_id = _id(call)
    if not call.portal.table(entity).delete(row_id):
        raise RestError("", "Not found", 400)
    call.changed(f"ONCRM{ENTITIES[entity]}DELETE", row_id)
    return True


def _field_type(entity: str, field: str) -> dict[str, Any]:
    status_type = STATUS_FIELDS[entity].get(field)
    if status_type:
        return {"type": "crm_status", "statusType": status_type}
    if field == "ID" or field.endswith("_ID") and field not in ("CURRENCY_ID", "ORIGIN_ID", "ORIGINATOR_ID"):
        if field.endswith("_BY_ID") or field in ("ASSIGNED_BY_ID", "LAST_ACTIVITY_BY"):
            return {"type": "user"}
        if field == "CURRENCY_ID":
            return {"type": "crm_currency"}
        return {"type": "integer"}
    if field.startswith("DATE_") or field in ("BEGINDATE", "CLOSEDATE", "MOVED_TIME", "LAST_ACTIVITY_TIME"):
        return {"type": "datetime" if field != "BEGINDATE" and field != "CLOSEDATE" else "date"}
    if field in ("OPPORTUNITY", "TAX_VALUE", "REVENUE"):
        return {"type": "double"}
    if field in (
        "OPENED",
        "CLOSED",
        "IS_NEW",
        "IS_RECURRING",
        "EXPORT",
        "IS_MY_COMPANY",
        "IS_MANUAL_OPPORTUNITY",
        "IS_RETURN_CUSTOMER",
        "IS_REPEATED_APPROACH",
        "HAS_PHONE",
        "HAS_EMAIL",
        "HAS_IMOL",
    ):
        return {"type": "char"}
    if field == "CURRENCY_ID":
        return {"type": "crm_currency"}
    return {"type": "string"}


def _describe(call: Call, entity: str) -> dict[str, Any]:
    fields = {}
    for field in standard_fields(call, entity):
        fields[field] = {
            **_field_type(entity, field),
            "isRequired": False,
            "isReadOnly": field in READ_ONLY,
            "isImmutable": field == "ID",
            "isMultiple": False,
            "isDynamic": False,
            "title": field.replace("_", " ").title(),
        }
    return fields


def _register(entity: str) -> None:
    prefix = f"crm.{entity}"

    @method(f"{prefix}.list", scope="crm")
    def list_(call: Call) -> Any:
        return list_table(call, call.portal.table(entity), standard_fields(call, entity))

    @method(f"{prefix}.get", scope="crm")
    def get(call: Call) -> Any:
        return _get(call, entity)

    @method(f"{prefix}.add", scope="crm", write=True)
    def add(call: Call) -> Any:
        return _add(call, entity)

    @method(f"{prefix}.update", scope="crm", write=True)
    def update(call: Call) -> Any:
        return _update(call, entity)

    @method(f"{prefix}.delete", scope="crm", write=True)
    def delete(call: Call) -> Any:
        return _delete(call, entity)

    @method(f"{prefix}.fields", scope="crm")
    def fields(call: Call) -> Any:
        return _describe(call, entity)


for _entity in ENTITIES:
    _register(_entity)


# --- statuses -----------------------------------------------------------------------------------

STATUS_STANDARD = [
    "ID",
    "ENTITY_ID",
    "STATUS_ID",
    "NAME",
    "NAME_INIT",
    "SORT",
    "SYSTEM",
    "CATEGORY_ID",
    "COLOR",
    "SEMANTICS",
    "EXTRA",
]
STATUS_ENTITY_TYPES = [
    ("STATUS", "Lead statuses"),
    ("SOURCE", "Sources"),
    ("CONTACT_TYPE", "Contact type"),
    ("COMPANY_TYPE", "Company type"),
    ("EMPLOYEES", "Employees"),
    ("INDUSTRY", "Industry"),
    ("DEAL_TYPE", "Deal type"),
    ("DEAL_STAGE", "Deal stages"),
]


def _statuses(call: Call) -> list[Row]:
    table = call.portal.statuses
    return [r for r in (table.get(i) for i in table.ids()) if r is not None]


@method("crm.status.list", scope="crm")
def status_list(call: Call) -> Any:
    return list_rows(call, _statuses(call), STATUS_STANDARD, default_order="SORT")


@method("crm.status.get", scope="crm")
def status_get(call: Call) -> Any:
    row = call.portal.statuses.get(_id(call))
    if row is None:
        raise RestError("", "Not found", 400)
    return dict(row)


@method("crm.status.add", scope="crm", write=True)
def status_add(call: Call) -> Any:
    fields = _fields(call)
    missing = [f for f in ("ENTITY_ID", "STATUS_ID", "NAME") if not fields.get(f)]
    if missing:
        raise RestError("", f"The field {missing[0]} is required.", 400)
    for row in _statuses(call):
        if row["ENTITY_ID"] == fields["ENTITY_ID"] and row["STATUS_ID"] == fields["STATUS_ID"]:
            raise RestError("", "The status with this ID already exists.", 400)
    row = {
        "ENTITY_ID": str(fields["ENTITY_ID"]),
        "STATUS_ID": str(fields["STATUS_ID"]),
        "NAME": str(fields["NAME"]),
        "NAME_INIT": None,
        "SORT": str(fields.get("SORT", 10)),
        "SYSTEM": "N",
        "CATEGORY_ID": None,
        "COLOR": fields.get("COLOR"),
        "SEMANTICS": fields.get("SEMANTICS"),
        "EXTRA": None,
    }
    return call.portal.statuses.insert(row)


@method("crm.status.update", scope="crm", write=True)
def status_update(call: Call) -> Any:
    row_id = _id(call)
    row = call.portal.statuses.get(row_id)
    if row is None:
        raise RestError("", "Not found", 400)
    changed = dict(row)
    for key, value in _fields(call).items():
        if key in ("NAME", "SORT", "COLOR", "SEMANTICS"):
            changed[key] = _stringify(value)
    call.portal.statuses.put(row_id, changed)
    return True


@method("crm.status.delete", scope="crm", write=True)
def status_delete(call: Call) -> Any:
    row_id = _id(call)
    row = call.portal.statuses.get(row_id)
    if row is None:
        raise RestError("", "Not found", 400)
    if row.get("SYSTEM") == "Y":
        raise RestError("", "Can't delete system status", 400)
    call.portal.statuses.delete(row_id)
    return True


@method("crm.status.fields", scope="crm")
def status_fields(call: Call) -> Any:
    return {
        f: {
            "type": "integer" if f in ("ID", "SORT") else "string",
            "isRequired": f in ("ENTITY_ID", "STATUS_ID", "NAME"),
            "isReadOnly": f in ("ID", "SYSTEM", "NAME_INIT"),
            "isImmutable": f in ("ENTITY_ID", "STATUS_ID"),
            "isMultiple": False,
            "isDynamic": False,
            "title": f.replace("_", " ").title(),
        }
        for f in STATUS_STANDARD
    }


@method("crm.status.entity.types", scope="crm")
def status_entity_types(call: Call) -> Any:
    return [{"ID": entity_id, "NAME": name} for entity_id, name in STATUS_ENTITY_TYPES]


@method("crm.status.entity.items", scope="crm")
def status_entity_items(call: Call) -> Any:
    entity_id = str(call.params.get("entityId", call.params.get("ENTITY_ID", "")))
    rows = sorted((r for r in _statuses(call) if r["ENTITY_ID"] == entity_id), key=lambda r: int(r["SORT"]))
    return [{"NAME": r["NAME"], "SORT": int(r["SORT"]), "STATUS_ID": r["STATUS_ID"]} for r in rows]


# --- currencies ---------------------------------------------------------------------------------

CURRENCY_STANDARD = [
    "CURRENCY",
    "AMOUNT_CNT",
    "AMOUNT",
    "SORT",
    "BASE",
    "FULL_NAME",
    "LID",
    "FORMAT_STRING",
    "DEC_POINT",
    "THOUSANDS_SEP",
    "DECIMALS",
    "DATE_UPDATE",
]


def _currency_id(call: Call) -> str:
    value = call.params.get("id", call.params.get("ID"))
    if not value or not isinstance(value, str):
        raise RestError("", "ID is not defined or invalid.", 400)
    return value.upper()


@method("crm.currency.list", scope="crm")
def currency_list(call: Call) -> Any:
    rows = list(call.portal.currencies.values())
    page = list_rows(call, rows, CURRENCY_STANDARD, default_order="SORT")
    return page


@method("crm.currency.get", scope="crm")
def currency_get(call: Call) -> Any:
    row = call.portal.currencies.get(_currency_id(call))
    if row is None:
        raise RestError("", "Not found", 400)
    return dict(row)


@method("crm.currency.add", scope="crm", write=True)
def currency_add(call: Call) -> Any:
    fields = _fields(call)
    code = str(fields.get("CURRENCY", "")).upper()
    if len(code) != 3 or not code.isalpha():
        raise RestError("", "The field CURRENCY is required.", 400)
    if code in call.portal.currencies:
        raise RestError("", f"Currency {code} already exists.", 400)
    lang = fields.get("LANG") if isinstance(fields.get("LANG"), dict) else {}
    full_name = str((lang.get("en") or {}).get("FULL_NAME", code)) if lang else code
    call.portal.currencies[code] = {
        "CURRENCY": code,
        "AMOUNT_CNT": str(fields.get("AMOUNT_CNT", 1)),
        "AMOUNT": f"{float(fields.get('AMOUNT', 1)):.4f}",
        "SORT": str(fields.get("SORT", 100)),
        "BASE": "N",
        "FULL_NAME": full_name,
        "LID": "en",
        "FORMAT_STRING": f"# {code}",
        "DEC_POINT": ".",
        "THOUSANDS_SEP": ",",
        "DECIMALS": "2",
        "DATE_UPDATE": bitrix_datetime(call.sandbox.clock.time()),
        "LANG": lang or {"en": {"FULL_NAME": full_name, "FORMAT_STRING": f"# {code}"}},
    }
    return code


@method("crm.currency.update", scope="crm", write=True)
def currency_update(call: Call) -> Any:
    row = call.portal.currencies.get(_currency_id(call))
    if row is None:
        raise RestError("", "Not found", 400)
    for key, value in _fields(call).items():
        if key in ("AMOUNT_CNT", "AMOUNT", "SORT"):
            row[key] = _stringify(value)
        elif key == "LANG" and isinstance(value, dict):
            row["LANG"] = value
    row["DATE_UPDATE"] = bitrix_datetime(call.sandbox.clock.time())
    return True


@method("crm.currency.delete", scope="crm", write=True)
def currency_delete(call: Call) -> Any:
    code = _currency_id(call)
    row = call.portal.currencies.get(code)
    if row is None:
        raise RestError("", "Not found", 400)
    if row["BASE"] == "Y":
        raise RestError("", "Base currency can't be deleted.", 400)
    del call.portal.currencies[code]
    return True


@method("crm.currency.fields", scope="crm")
def currency_fields(call: Call) -> Any:
    return {
        f: {
            "type": "string" if f not in ("AMOUNT_CNT", "SORT", "DECIMALS") else "integer",
            "isRequired": f == "CURRENCY",
            "isReadOnly": f in ("BASE", "DATE_UPDATE"),
            "isImmutable": f == "CURRENCY",
            "isMultiple": False,
            "isDynamic": False,
            "title": f.replace("_", " ").title(),
        }
        for f in CURRENCY_STANDARD
    }


@method("crm.currency.base.get", scope="crm")
def currency_base_get(call: Call) -> Any:
    for code, row in call.portal.currencies.items():
        if row["BASE"] == "Y":
            return code
    return ""
