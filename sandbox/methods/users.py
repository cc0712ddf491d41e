"""Users and departments as Bitrix24 has them: user.get (filters, sort/order, paging), user.current,
user.fields, user.admin, department.get. There is no user.list and no user.delete in Bitrix24."""

from __future__ import annotations

from typing import Any

from sandbox.methods.listing import PAGE, compile_filter, matches, parse_start, sort_rows
from sandbox.registry import Call, ListPage, RestError, method
from sandbox.store import Row

USER_FIELDS = {
    "ID": "ID",
    "XML_ID": "XML_ID",
    "ACTIVE": "Active",
    "NAME": "First name",
    "LAST_NAME": "Last name",
    "SECOND_NAME": "Second name",
    "EMAIL": "E-mail",
    "LAST_LOGIN": "Last login",
    "DATE_REGISTER": "Registration date",
    "IS_ONLINE": "Is online",
    "TIME_ZONE": "Time zone",
    "TIME_ZONE_OFFSET": "Time zone offset",
    "TIMESTAMP_X": "Last modified",
    "LAST_ACTIVITY_DATE": "Last activity",
    "PERSONAL_GENDER": "Gender",
    "PERSONAL_BIRTHDAY": "Birthday",
    "PERSONAL_PHOTO": "Photo",
    "PERSONAL_CITY": "City",
    "PERSONAL_MOBILE": "Mobile",
    "WORK_PHONE": "Work phone",
    "WORK_POSITION": "Position",
    "UF_EMPLOYMENT_DATE": "Employment date",
    "UF_DEPARTMENT": "Departments",
    "UF_PHONE_INNER": "Extension number",
    "USER_TYPE": "User type",
}
# Keys of user.get that are parameters, not filter fields.
USER_GET_PARAMS = {"SORT", "ORDER", "FILTER", "ADMIN_MODE", "START"}


def public(row: Row) -> Row:
    return {k: v for k, v in row.items() if k in USER_FIELDS}


@method("user.get", scope="user_basic")
def user_get(call: Call) -> Any:
    params = {str(k).upper(): v for k, v in call.params.items()}
    if str(params.get("ADMIN_MODE", "")).lower() in ("1", "true", "y") and not call.is_admin:
        # ADMIN_MODE lists every account type (extranet, bots...): administrators only.
        raise RestError("ACCESS_DENIED", "Access denied!", 403)
    raw_filter = params.get("FILTER")
    flt: dict[str, Any] = dict(raw_filter) if isinstance(raw_filter, dict) else {}
    flt.update({k: v for k, v in call.params.items() if str(k).upper() not in USER_GET_PARAMS})
    find = flt.pop("FIND", None) or flt.pop("find", None)
    conditions = compile_filter(flt)
    rows = [r for r in call.portal.users.values() if matches(r, conditions)]
    if find:
        needle = str(find).lower()
        rows = [
            r
            for r in rows
            if any(needle in str(r.get(f, "")).lower() for f in ("NAME", "LAST_NAME", "EMAIL"))
        ]
    sort_field = str(params.get("SORT") or "ID").upper()
    descending = str(params.get("ORDER") or "ASC").upper() == "DESC"
    sort_rows(rows, [(sort_field, descending)])
    start = parse_start(params.get("START"))
    offset = max(start, 0)
    page = rows[offset : offset + PAGE]
    cost = call.sandbox.config.cost
    call.charge(cost.per_row * len(page) + cost.per_offset_row * offset + cost.per_count_row * len(rows))
    total = len(rows) if start != -1 else 0
    has_next = start != -1 and offset + PAGE < total
    return ListPage(rows=[public(r) for r in page], total=total, next=offset + PAGE if has_next else None)


@method("user.current", scope="user_brief")
def user_current(call: Call) -> Any:
    return public(call.user)


@method("user.fields", scope="user_brief")
def user_fields(call: Call) -> Any:
    return dict(USER_FIELDS)


@method("user.admin", scope=None)
def user_admin(call: Call) -> Any:
    return call.is_admin


@method("department.get", scope="department")
def department_get(call: Call) -> Any:
    conditions = compile_filter(
        {k: v for k, v in call.params.items() if str(k).upper() not in USER_GET_PARAMS}
    )
    rows = [d for d in call.portal.departments.values() if matches(d, conditions)]
    start = parse_start(call.params.get("START", call.params.get("start")))
    offset = max(start, 0)
    page = rows[offset : offset + PAGE]
    has_next = start != -1 and offset + PAGE < len(rows)
    return ListPage(
        rows=page, total=len(rows) if start != -1 else 0, next=offset + PAGE if has_next else None
    )
