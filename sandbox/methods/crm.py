"""CRM methods as Bitrix24 has them: deals, leads, contacts, companies (list/get/add/update/
delete/fields), statuses, currencies (with their base and localizations) and crm.type.list. Rows
keep Bitrix24's string values; every write calls ``call.changed`` so the data-change subscribers
(events) hear about it. Field lists are the docs' (``fieldlists``)."""

from __future__ import annotations

from typing import Any

from sandbox.methods import fieldlists
from sandbox.methods.listing import checked_order, list_rows, list_table, param
from sandbox.registry import Call, ListPage, RestError, method
from sandbox.seed import bitrix_datetime, currency_localization
from sandbox.store import EntityTable, Row

ENTITIES = {"deal": "DEAL", "lead": "LEAD", "contact": "CONTACT", "company": "COMPANY"}
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


def standard_fields(entity: str) -> list[str]:
    """The fields ``select: ["*"]`` (or no select) returns for ``entity``."""
    return list(fieldlists.standard(entity))


# Multiple fields of the communication kind (type crm_multifield): lists of
# {ID, VALUE_TYPE, VALUE, TYPE_ID}, returned by get only when set.
MULTIFIELDS = ("PHONE", "EMAIL", "WEB", "IM", "LINK")
HAS_FLAGS = {"PHONE": "HAS_PHONE", "EMAIL": "HAS_EMAIL"}


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


def _multifield(call: Call, row: Row, key: str, value: Any) -> None:
    """Apply PHONE/EMAIL/... values: new entries get an ID; ``{"ID": n, "VALUE": ...}`` changes
    entry n and ``{"ID": n, "DELETE": "Y"}`` removes it, as crm.contact.update documents."""
    if not isinstance(value, list | dict):
        raise RestError("", f"Field {key} must be an array.", 400)
    items = list(value.values()) if isinstance(value, dict) else value
    current = {str(e["ID"]): dict(e) for e in row.get(key) or []}
    for item in items:
        if not isinstance(item, dict):
            raise RestError("", f"Field {key} must be an array of values.", 400)
        entry_id = str(item.get("ID") or "")
        if entry_id and entry_id in current:
            if str(item.get("DELETE", "")).upper() == "Y":
                del current[entry_id]
                continue
            current[entry_id].update(
                {k: str(item[k]) for k in ("VALUE", "VALUE_TYPE") if item.get(k) not in (None, "")}
            )
            continue
        if item.get("VALUE") in (None, ""):
            continue
        counter = call.portal.extra.get("multifield_id", 0) + 1
        call.portal.extra["multifield_id"] = counter
        current[str(counter)] = {
            "ID": str(counter),
            "VALUE_TYPE": str(item.get("VALUE_TYPE") or "WORK"),
            "VALUE": str(item["VALUE"]),
            "TYPE_ID": key,
        }
    row[key] = list(current.values()) or None
    flag = HAS_FLAGS.get(key)
    if flag and flag in row:
        row[flag] = "Y" if row[key] else "N"
    if key == "IM" and "HAS_IMOL" in row:
        row["HAS_IMOL"] = "Y" if any(e["VALUE_TYPE"] == "IMOL" for e in row[key] or []) else "N"


def _id_list(key: str, value: Any) -> list[str]:
    items = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else [value]
    ids = []
    for item in items:
        try:
            number = int(str(item))
        except (TypeError, ValueError):
            raise RestError("", f"Field {key} must be a list of ids.", 400)
        if number > 0:
            ids.append(str(number))
    return ids


def _apply(call: Call, row: Row, fields: dict[str, Any], entity: str) -> None:
    standard = standard_fields(entity)
    multiple = fieldlists.multiple(entity)
    for key, value in fields.items():
        if key in READ_ONLY:
            continue
        if key in multiple:
            if key in MULTIFIELDS:
                _multifield(call, row, key, value)
            else:
                row[key] = _id_list(key, value)
                if key == "CONTACT_IDS" and "CONTACT_ID" in standard:
                    # The single CONTACT_ID is the first of the deal's (or lead's) contacts.
                    row["CONTACT_ID"] = row[key][0] if row[key] else None
            continue
        if key in MONEY_FIELDS and value not in (None, ""):
            try:
                row[key] = f"{float(value):.2f}"  # Bitrix24 answers money with two decimals
            except (TypeError, ValueError):
                raise RestError("", f"Field {key} must be a number.", 400)
        elif key in standard or key.startswith("UF_"):
            row[key] = _stringify(value)


def full_row(row: Row, entity: str) -> Row:
    """A row as ``*.get`` answers it: every standard field (null when unset), the user fields,
    and the communication fields that are set."""
    shown = {k: row.get(k) for k in standard_fields(entity)}
    shown.update({k: v for k, v in row.items() if k.startswith("UF_")})
    shown.update({k: row[k] for k in MULTIFIELDS if row.get(k)})
    return shown


def _get(call: Call, entity: str) -> Row:
    row = call.portal.table(entity).get(_id(call))
    if row is None:
        raise RestError("", "Not found", 400)
    call.charge(call.sandbox.config.cost.per_row)
    return full_row(row, entity)


def entity_add(call: Call, entity: str, fields: dict[str, Any]) -> int:
    """Store a new ``entity`` row from upper-case ``fields`` (the docs' defaults filled in) and
    announce it; returns its id. Shared by crm.<entity>.add and crm.item.add."""
    table: EntityTable = call.portal.table(entity)
    standard = standard_fields(entity)
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
    _apply(call, row, fields, entity)
    row_id = table.insert(row)
    if entity in ("deal", "lead") and not row.get("TITLE"):
        row["TITLE"] = f"{entity.title()} #{row_id}"
    if entity == "company" and not row.get("TITLE"):
        row["TITLE"] = f"Company #{row_id}"
    call.changed(f"ONCRM{ENTITIES[entity]}ADD", row_id)
    return row_id


def entity_update(call: Call, entity: str, row_id: int, fields: dict[str, Any]) -> bool:
    """Change row ``row_id`` of ``entity`` (False when there is none) and announce it."""
    table = call.portal.table(entity)
    row = table.get(row_id)
    if row is None:
        return False
    changed = dict(row)
    _apply(call, changed, fields, entity)
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


def entity_delete(call: Call, entity: str, row_id: int) -> bool:
    """Delete row ``row_id`` of ``entity`` (False when there is none) and announce it."""
    if not call.portal.table(entity).delete(row_id):
        return False
    call.changed(f"ONCRM{ENTITIES[entity]}DELETE", row_id)
    return True


def _register(entity: str) -> None:
    prefix = f"crm.{entity}"

    @method(f"{prefix}.list", scope="crm")
    def list_(call: Call) -> Any:
        return list_table(call, call.portal.table(entity), standard_fields(entity))

    @method(f"{prefix}.get", scope="crm")
    def get(call: Call) -> Any:
        return _get(call, entity)

    @method(f"{prefix}.add", scope="crm", write=True)
    def add(call: Call) -> Any:
        return entity_add(call, entity, _fields(call))

    @method(f"{prefix}.update", scope="crm", write=True)
    def update(call: Call) -> Any:
        if not entity_update(call, entity, _id(call), _fields(call)):
            raise RestError("", "Not found", 400)
        return True

    @method(f"{prefix}.delete", scope="crm", write=True)
    def delete(call: Call) -> Any:
        if not entity_delete(call, entity, _id(call)):
            raise RestError("", "Not found", 400)
        return True

    @method(f"{prefix}.fields", scope="crm")
    def fields(call: Call) -> Any:
        return fieldlists.field_list(entity)


for _entity in ENTITIES:
    _register(_entity)


# --- statuses -----------------------------------------------------------------------------------

STATUS_STANDARD = list(fieldlists.standard("status"))
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
    return fieldlists.field_list("status")


@method("crm.status.entity.types", scope="crm")
def status_entity_types(call: Call) -> Any:
    return [{"ID": entity_id, "NAME": name} for entity_id, name in STATUS_ENTITY_TYPES]


@method("crm.status.entity.items", scope="crm")
def status_entity_items(call: Call) -> Any:
    entity_id = str(call.params.get("entityId", call.params.get("ENTITY_ID", "")))
    rows = sorted((r for r in _statuses(call) if r["ENTITY_ID"] == entity_id), key=lambda r: int(r["SORT"]))
    return [{"NAME": r["NAME"], "SORT": int(r["SORT"]), "STATUS_ID": r["STATUS_ID"]} for r in rows]


# --- currencies ---------------------------------------------------------------------------------

CURRENCY_STANDARD = list(fieldlists.standard("currency"))


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
        "LANG": lang or {"en": currency_localization(full_name, f"# {code}", 2)},
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
    return fieldlists.field_list("currency")


@method("crm.currency.base.get", scope="crm")
def currency_base_get(call: Call) -> Any:
    for code, row in call.portal.currencies.items():
        if row["BASE"] == "Y":
            return code
    return ""


def _crm_settings_admin(call: Call) -> None:
    """Currency settings need "access to modify CRM settings": the administrator, in the sandbox."""
    if not call.is_admin:
        raise RestError("", "Access denied.", 400)


def _currency_param(call: Call) -> str:
    value = call.params.get("id", call.params.get("ID"))
    if not value or not isinstance(value, str):
        raise RestError("", "The parameter id is invalid or not defined.", 400)
    return value.upper()


@method("crm.currency.base.set", scope="crm", write=True)
def currency_base_set(call: Call) -> Any:
    """Make a currency the base one (RD crm/currency/crm-currency-base-set.md); false when there
    is no such currency ("could not be completed, but there is no error")."""
    _crm_settings_admin(call)
    code = _currency_param(call)
    if code not in call.portal.currencies:
        return False
    for other, row in call.portal.currencies.items():
        row["BASE"] = "Y" if other == code else "N"
    return True


LOCALIZATION_FIELDS = list(fieldlists.field_list("currency_localization"))


@method("crm.currency.localizations.get", scope="crm")
def currency_localizations_get(call: Call) -> Any:
    """A currency's localizations by language (RD .../crm-currency-localizations-get.md); an
    unknown currency has none."""
    _crm_settings_admin(call)
    row = call.portal.currencies.get(_currency_param(call))
    return dict(row.get("LANG") or {}) if row else []


@method("crm.currency.localizations.set", scope="crm", write=True)
def currency_localizations_set(call: Call) -> Any:
    """Add or change localizations; languages not given stay (RD .../crm-currency-localizations-
    set.md). False when nothing was given or the currency doesn't exist."""
    _crm_settings_admin(call)
    row = call.portal.currencies.get(_currency_param(call))
    given = call.params.get("localizations")
    if row is None or not isinstance(given, dict) or not given:
        return False
    lang = row.setdefault("LANG", {})
    for language, values in given.items():
        if not isinstance(values, dict):
            raise RestError("", f"Localization {str(language)[:8]} must be an object.", 400)
        current = lang.setdefault(
            str(language), currency_localization(row["CURRENCY"], f"# {row['CURRENCY']}", 2)
        )
        current.update({k: _stringify(v) for k, v in values.items() if k in LOCALIZATION_FIELDS})
    if "en" in given and "FULL_NAME" in given["en"]:
        row["FULL_NAME"] = str(given["en"]["FULL_NAME"])
    row["DATE_UPDATE"] = bitrix_datetime(call.sandbox.clock.time())
    return True


@method("crm.currency.localizations.delete", scope="crm", write=True)
def currency_localizations_delete(call: Call) -> Any:
    """Delete the localizations of the languages in ``lids``; false when none was deleted."""
    _crm_settings_admin(call)
    row = call.portal.currencies.get(_currency_param(call))
    lids = call.params.get("lids")
    languages = [str(x) for x in (lids.values() if isinstance(lids, dict) else lids or [])]
    if row is None or not languages:
        return False
    lang = row.get("LANG") or {}
    removed = [language for language in languages if lang.pop(language, None) is not None]
    return bool(removed)


@method("crm.currency.localizations.fields", scope="crm")
def currency_localizations_fields(call: Call) -> Any:
    _crm_settings_admin(call)
    return fieldlists.field_list("currency_localization")


# --- smart processes ----------------------------------------------------------------------------


@method("crm.type.list", scope="crm")
def type_list(call: Call) -> Any:
    """The portal's smart processes (RD crm/universal/user-defined-object-types/crm-type-list.md):
    a fresh account has none, and the sandbox doesn't emulate creating them. CRM administrators
    only; ``order`` directions are checked as documented."""
    if not call.is_admin:
        raise RestError("ACCESS_DENIED", "Access denied", 400)
    checked_order(param(call.params, "order"))
    return ListPage(rows={"types": []}, total=0, next=None)
