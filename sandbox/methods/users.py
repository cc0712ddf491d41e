"""Users and departments as Bitrix24 has them.

Users: user.get (filters, sort/order, select, paging), user.search, user.current, user.fields,
user.admin, user.access, user.add (an invitation), user.update. There is no user.list and no
user.delete in Bitrix24. Departments: department.get (filters, sort/order), department.fields,
department.add/update/delete. The field lists are the docs' (``sandbox/methods/fields.json``).
"""

from __future__ import annotations

import re
from typing import Any

from sandbox.methods.fieldlists import field_list
from sandbox.methods.listing import PAGE, compile_filter, matches, parse_start, project, sort_rows
from sandbox.registry import Call, ListPage, RestError, method
from sandbox.seed import bitrix_datetime
from sandbox.store import Row

USER_FIELDS: dict[str, str] = field_list("user")
USER_SCOPES = ("user", "user_brief", "user_basic")
# Keys of user.get that are parameters, not filter fields.
USER_GET_PARAMS = {"SORT", "ORDER", "FILTER", "ADMIN_MODE", "START", "SELECT", "IMAGE_RESIZE"}
# user.search's FILTER keys (RD user/user-search.md); FIND searches all of them.
USER_SEARCH_FIELDS = ("NAME", "LAST_NAME", "WORK_POSITION", "UF_DEPARTMENT_NAME", "USER_TYPE")
# What user.add and user.update may write: the fields of user.fields but those Bitrix24 keeps.
USER_READ_ONLY = {
    "ID",
    "LAST_LOGIN",
    "DATE_REGISTER",
    "IS_ONLINE",
    "TIMESTAMP_X",
    "LAST_ACTIVITY_DATE",
    "TITLE",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

DEPARTMENT_FIELDS: dict[str, str] = field_list("department")
DEPARTMENT_SORTABLE = ("ID", "NAME", "SORT", "PARENT", "UF_HEAD")


def public(row: Row) -> Row:
    return {k: v for k, v in row.items() if k in USER_FIELDS}


def _upper(params: dict[str, Any]) -> dict[str, Any]:
    return {str(k).upper(): v for k, v in params.items()}


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "y")


def _admin_mode(call: Call, params: dict[str, Any]) -> None:
    if _truthy(params.get("ADMIN_MODE", "")) and not call.is_admin:
        # ADMIN_MODE lists every account type (extranet, bots...): administrators only.
        raise RestError("ACCESS_DENIED", "Access denied!", 403)


def _user_page(call: Call, rows: list[Row], params: dict[str, Any]) -> ListPage:
    """Sort (``sort``/``order``, default ID ascending), page by 50 and apply ``select``."""
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
    select = params.get("SELECT")
    shown = [project(public(r), select, list(public(r))) if select else public(r) for r in page]
    return ListPage(rows=shown, total=total, next=offset + PAGE if has_next else None)


@method("user.get", scope=USER_SCOPES)
def user_get(call: Call) -> Any:
    params = _upper(call.params)
    _admin_mode(call, params)
    raw_filter = params.get("FILTER")
    flt: dict[str, Any] = dict(raw_filter) if isinstance(raw_filter, dict) else {}
    flt.update({k: v for k, v in call.params.items() if str(k).upper() not in USER_GET_PARAMS})
    find = None
    for key in ("FIND", "find", "NAME_SEARCH", "name_search"):
        find = flt.pop(key, None) or find
    conditions = compile_filter(flt)
    rows = [r for r in call.portal.users.values() if matches(r, conditions)]
    if find:
        needle = str(find).lower()
        rows = [
            r
            for r in rows
            if any(needle in str(r.get(f, "")).lower() for f in ("NAME", "LAST_NAME", "EMAIL"))
        ]
    return _user_page(call, rows, params)


def _department_names(call: Call, row: Row) -> str:
    departments = call.portal.departments
    names = [
        str(departments[int(d)]["NAME"]) for d in row.get("UF_DEPARTMENT") or [] if int(d) in departments
    ]
    return " ".join(names)


@method("user.search", scope=USER_SCOPES)
def user_search(call: Call) -> Any:
    """user.search (RD user/user-search.md): FILTER by NAME, LAST_NAME, WORK_POSITION,
    UF_DEPARTMENT_NAME and USER_TYPE (each a substring match), or FIND across all of them; the
    two can't be combined."""
    params = _upper(call.params)
    _admin_mode(call, params)
    raw = params.get("FILTER")
    if raw not in (None, "", []) and not isinstance(raw, dict):
        raise RestError("", "Parameter 'FILTER' must be array.", 400)
    wanted = _upper(raw) if isinstance(raw, dict) else {}
    find = wanted.pop("FIND", None)
    if find is not None and wanted:
        raise RestError("INVALID_FILTER", "FIND can't be combined with other filter fields", 400)
    unknown = sorted(set(wanted) - set(USER_SEARCH_FIELDS))
    if unknown:
        raise RestError("INVALID_FILTER", f"Unknown filter field {unknown[0]}", 400)

    def text(row: Row, field: str) -> str:
        value = _department_names(call, row) if field == "UF_DEPARTMENT_NAME" else row.get(field, "")
        return str(value or "").lower()

    rows = []
    for row in call.portal.users.values():
        if find is not None:
            needle = str(find).lower()
            if not any(needle in text(row, f) for f in USER_SEARCH_FIELDS):
                continue
        elif not all(str(v).lower() in text(row, f) for f, v in wanted.items()):
            continue
        rows.append(row)
    return _user_page(call, rows, params)


@method("user.current", scope="user_brief")
def user_current(call: Call) -> Any:
    return public(call.user)


@method("user.fields", scope="user_brief")
def user_fields(call: Call) -> Any:
    return dict(USER_FIELDS)


@method("user.admin", scope=None)
def user_admin(call: Call) -> Any:
    return call.is_admin


@method("user.access", scope=None)
def user_access(call: Call) -> Any:
    """Whether the calling user holds one of the ACCESS codes (RD common/users/user-access.md).

    Administrators always get true. Codes: ``U<id>`` the user, ``AU`` any authorised user,
    ``G1`` administrators, ``G2`` everyone, ``D<id>`` / ``DR<id>`` a department (DR with its
    sub-departments).
    """
    raw = call.params.get("ACCESS", call.params.get("access"))
    codes = [str(c).strip().upper() for c in (raw if isinstance(raw, list | tuple) else [raw]) if c]
    if call.is_admin:
        return True
    user = call.user
    held = {f"U{user['ID']}", "AU", "G2"}
    for department in user.get("UF_DEPARTMENT") or []:
        held.add(f"D{department}")
        current: Any = int(department)
        while current is not None and int(current) in call.portal.departments:
            held.add(f"DR{current}")
            parent = call.portal.departments[int(current)].get("PARENT")
            current = int(parent) if parent else None
    return any(code in held for code in codes)


def _require_admin(call: Call, description: str) -> None:
    if not call.is_admin:
        raise RestError("ERROR_CORE", description, 400)


def _user_values(params: dict[str, Any]) -> dict[str, Any]:
    """The writable user fields among ``params`` (upper-cased), with Bitrix24's value shapes."""
    values: dict[str, Any] = {}
    for key, value in _upper(params).items():
        if key not in USER_FIELDS or key in USER_READ_ONLY:
            continue
        if key == "ACTIVE":
            values[key] = _truthy(value)
        elif key == "UF_DEPARTMENT":
            items = value if isinstance(value, list | tuple) else [value]
            try:
                values[key] = [int(d) for d in items if str(d).strip()]
            except (TypeError, ValueError):
                raise RestError("ERROR_ARGUMENT", "UF_DEPARTMENT must be department ids", 400, argument="")
        else:
            values[key] = "" if value is None else str(value)
    return values


def _email_taken(call: Call, email: str, *, other_than: int | None = None) -> bool:
    return any(
        str(u.get("EMAIL", "")).lower() == email.lower() and int(u["ID"]) != other_than
        for u in call.portal.users.values()
    )


@method("user.add", scope="user", write=True)
def user_add(call: Call) -> Any:
    """Invite a user (RD user/user-add.md): administrators only, EMAIL required and unique;
    returns the new user's id."""
    _require_admin(call, "access_denied")
    values = _user_values(call.params)
    email = str(values.get("EMAIL", "")).strip()
    if not _EMAIL.match(email):
        raise RestError("ERROR_ARGUMENT", "wrong_email", 400, argument="")
    if _email_taken(call, email):
        raise RestError("ERROR_ARGUMENT", "A user with this email already exists", 400, argument="")
    users = call.portal.users
    user_id = max(users, default=0) + 1
    now = bitrix_datetime(call.sandbox.clock.time())
    root = min(call.portal.departments, default=1)
    users[user_id] = {
        "ID": str(user_id),
        "XML_ID": "",
        "ACTIVE": True,
        "NAME": "",
        "LAST_NAME": "",
        "SECOND_NAME": "",
        "EMAIL": email,
        "LAST_LOGIN": "",
        "DATE_REGISTER": now,
        "IS_ONLINE": "N",
        "TIME_ZONE": "",
        "TIME_ZONE_OFFSET": "10800",
        "TIMESTAMP_X": now,
        "LAST_ACTIVITY_DATE": "",
        "UF_DEPARTMENT": [root],
        "USER_TYPE": "employee",
        **values,
        "IS_ADMIN": False,
    }
    return user_id


@method("user.update", scope="user", write=True)
def user_update(call: Call) -> Any:
    """Change a user's fields (RD user/user-update.md): administrators only; an unknown ID is
    ERROR_CORE "access_denied", as the page documents."""
    _require_admin(call, "access_denied")
    params = _upper(call.params)
    try:
        user_id = int(str(params.get("ID")))
    except (TypeError, ValueError):
        raise RestError("ERROR_CORE", "access_denied", 400)
    row = call.portal.users.get(user_id)
    if row is None:
        raise RestError("ERROR_CORE", "access_denied", 400)
    values = _user_values(call.params)
    if "EMAIL" in values:
        if not _EMAIL.match(values["EMAIL"]):
            raise RestError("ERROR_ARGUMENT", "wrong_email", 400, argument="")
        if _email_taken(call, values["EMAIL"], other_than=user_id):
            raise RestError("ERROR_ARGUMENT", "A user with this email already exists", 400, argument="")
    row.update(values)
    row["TIMESTAMP_X"] = bitrix_datetime(call.sandbox.clock.time())
    return True


# --- departments --------------------------------------------------------------------------------


def _department_row(row: Row) -> Row:
    """department.get's row: UF_HEAD only when a head is set, as in the docs' example."""
    return {k: v for k, v in row.items() if not (k == "UF_HEAD" and v in (None, ""))}


@method("department.get", scope="department")
def department_get(call: Call) -> Any:
    """department.get (RD departments/department-get.md): filters ID, NAME, SORT, PARENT,
    UF_HEAD; ``sort`` names the field to sort by and ``order`` the direction.

    ``sort`` and the SORT filter share a name once upper-cased: a value that names a sortable
    field sorts, a number filters by the sorting field.
    """
    params = _upper(call.params)
    sort_field = "SORT"
    raw_sort = params.pop("SORT", None)
    if raw_sort not in (None, ""):
        if str(raw_sort).upper() in DEPARTMENT_SORTABLE:
            sort_field = str(raw_sort).upper()
        else:
            params["SORT"] = raw_sort
    descending = str(params.pop("ORDER", "ASC") or "ASC").upper() == "DESC"
    start = parse_start(params.pop("START", None))
    filters = {k: v for k, v in params.items() if k in DEPARTMENT_FIELDS}
    conditions = compile_filter(filters)
    rows = [d for d in call.portal.departments.values() if matches(d, conditions)]
    sort_rows(
        rows, [(sort_field, descending), ("ID", descending)] if sort_field != "ID" else [("ID", descending)]
    )
    offset = max(start, 0)
    page = rows[offset : offset + PAGE]
    cost = call.sandbox.config.cost
    call.charge(cost.per_row * len(page) + cost.per_offset_row * offset + cost.per_count_row * len(rows))
    has_next = start != -1 and offset + PAGE < len(rows)
    return ListPage(
        rows=[_department_row(d) for d in page],
        total=len(rows) if start != -1 else 0,
        next=offset + PAGE if has_next else None,
    )


@method("department.fields", scope="department")
def department_fields(call: Call) -> Any:
    return dict(DEPARTMENT_FIELDS)


def _department_id(params: dict[str, Any], key: str = "ID") -> int | None:
    try:
        return int(str(params.get(key)))
    except (TypeError, ValueError):
        return None


def _check_parent(call: Call, parent: int | None, *, moving: int | None = None) -> None:
    departments = call.portal.departments
    if not parent:
        raise RestError(
            "ERROR_CORE", "There can only be one top-level department in the company structure", 400
        )
    if parent not in departments:
        raise RestError("ERROR_CORE", "Department not found", 400)
    current: int | None = parent
    while current is not None and moving is not None:
        if current == moving:
            raise RestError("ERROR_CORE", "A department can't be moved under itself", 400)
        up = departments[current].get("PARENT") if current in departments else None
        current = int(up) if up else None


def _head(call: Call, raw: Any) -> str | None:
    if raw in (None, "", 0, "0"):
        return None
    try:
        head = int(str(raw))
    except (TypeError, ValueError):
        raise RestError("ERROR_CORE", "UF_HEAD must be a user id", 400)
    if head not in call.portal.users:
        raise RestError("ERROR_CORE", "User not found", 400)
    return str(head)


@method("department.add", scope="department", write=True)
def department_add(call: Call) -> Any:
    """department.add (RD departments/department-add.md): NAME and PARENT required; the one
    top-level department exists already. Administrators stand for "rights to modify the
    structure"."""
    _require_admin(call, "Access denied")
    params = _upper(call.params)
    name = str(params.get("NAME") or "").strip()
    if not name:
        raise RestError("ERROR_CORE", "Department name not provided.<br>", 400)
    parent = _department_id(params, "PARENT")
    _check_parent(call, parent)
    departments = call.portal.departments
    department_id = max(departments, default=0) + 1
    try:
        sort = int(params.get("SORT") or 500)
    except (TypeError, ValueError):
        raise RestError("ERROR_CORE", "SORT must be a number", 400)
    departments[department_id] = {
        "ID": str(department_id),
        "NAME": name,
        "SORT": sort,
        "PARENT": str(parent),
        "UF_HEAD": _head(call, params.get("UF_HEAD")),
    }
    return department_id


@method("department.update", scope="department", write=True)
def department_update(call: Call) -> Any:
    """department.update (RD departments/department-update.md); the top-level department stays
    at the top."""
    _require_admin(call, "Access denied")
    params = _upper(call.params)
    department_id = _department_id(params)
    row = call.portal.departments.get(department_id) if department_id is not None else None
    if row is None or department_id is None:
        raise RestError("ERROR_CORE", "Department not found", 400)
    changed = dict(row)
    if "NAME" in params:
        name = str(params.get("NAME") or "").strip()
        if not name:
            raise RestError("ERROR_CORE", "Department name not provided.<br>", 400)
        changed["NAME"] = name
    if "SORT" in params:
        try:
            changed["SORT"] = int(params["SORT"])
        except (TypeError, ValueError):
            raise RestError("ERROR_CORE", "SORT must be a number", 400)
    if "PARENT" in params and row.get("PARENT"):
        parent = _department_id(params, "PARENT")
        _check_parent(call, parent, moving=department_id)
        changed["PARENT"] = str(parent)
    if "UF_HEAD" in params:
        changed["UF_HEAD"] = _head(call, params.get("UF_HEAD"))
    call.portal.departments[department_id] = changed
    return True


@method("department.delete", scope="department", write=True)
def department_delete(call: Call) -> Any:
    """department.delete (RD departments/department-delete.md). Departments are sections of one
    tree, so a department goes with its sub-departments; the top-level one can't go."""
    _require_admin(call, "Access denied")
    department_id = _department_id(_upper(call.params))
    departments = call.portal.departments
    if department_id is None or department_id not in departments:
        raise RestError("ERROR_CORE", "Department not found", 400)
    if not departments[department_id].get("PARENT"):
        raise RestError("ERROR_CORE", "The top-level department can't be deleted", 400)
    doomed = {department_id}
    grew = True
    while grew:
        children = {i for i, d in departments.items() if d.get("PARENT") and int(d["PARENT"]) in doomed}
        grew = not children <= doomed
        doomed |= children
    for gone in doomed:
        del departments[gone]
    return True
