"""The migrated tasks family: tasks.task.{add,update,get,list,delete} (RD api-reference/tasks/
tasks-task-*-rest-v3.md, fields in fields-rest-v3.md).

camelCase fields; ``creator``/``responsible``/``changedBy``/``closedBy``/``parent`` are related
objects for ``select`` (``responsible.name``). Only ``id`` has the Filterable attribute, as the
list page says ("filtering by the id field is supported for tasks"); sortable fields are the
page's list. Who sees a task: an administrator, its creator, responsible person, accomplices and
auditors; who changes it: an administrator, its creator or responsible person; who deletes it:
an administrator or its creator. A missing task is ENTITYNOTFOUND on ``get`` and ACCESSDENIED on
``update``/``delete``, as their pages list.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from sandbox.registry import Call
from sandbox.rest_v3.errors import ACCESS_DENIED, NOT_FOUND, UNKNOWN_PROPERTY, V3Error, invalid
from sandbox.rest_v3.query import (
    format_datetime,
    parse_datetime,
    parse_filter,
    parse_order,
    parse_pagination,
    parse_select,
    project,
    sort_rows,
    typed,
)
from sandbox.rest_v3.registry import Dto, Field, dto, v3_method
from sandbox.rest_v3.state import Row, portal_v3
from sandbox.store import Portal
from sandbox.wire import iso

STATUSES = ("pending", "in_progress", "supposedly_completed", "completed", "deferred", "declined")
PRIORITIES = ("high", "average", "low")

USER = dto(
    "UserDto",
    Field("id", "integer", description="User identifier"),
    Field("name", "string", description="User name"),
    Field("role", "string", description="User role"),
    Field("gender", "string", description="Gender"),
    Field("email", "string", description="Email"),
    Field("externalAuthId", "string", description="External auth ID"),
)
GROUP = dto(
    "GroupDto",
    Field("id", "integer"),
    Field("name", "string"),
    Field("type", "string"),
    Field("isVisible", "boolean"),
)
STAGE = dto("StageDto", Field("id", "integer"), Field("title", "string"), Field("color", "string"))


def _f(name: str, type_: str, **kw: Any) -> Field:
    return Field(name, type_, **kw)


_W = {"creatable": True, "editable": True}
TASK: Dto = dto(
    "TaskDto",
    _f("id", "integer", filterable=True, sortable=True, description="Task identifier"),
    _f("title", "string", sortable=True, required=True, **_W, description="Task title"),
    _f("description", "string", **_W, description="Task description"),
    _f("creatorId", "integer", sortable=True, required=True, creatable=True, description="Creator"),
    _f("creator", "object", relation="UserDto", via="creatorId"),
    _f("created", "datetime", sortable=True, description="Creation date"),
    _f("responsibleId", "integer", sortable=True, required=True, **_W, description="Assignee"),
    _f("responsible", "object", relation="UserDto", via="responsibleId"),
    _f("deadline", "datetime", sortable=True, **_W, description="Deadline"),
    _f("needsControl", "boolean", **_W),
    _f("startPlan", "datetime", sortable=True, **_W),
    _f("endPlan", "datetime", sortable=True, **_W),
    _f("groupId", "integer", sortable=True, **_W),
    _f("group", "object", relation="GroupDto", via="groupId"),
    _f("stageId", "integer", **_W),
    _f("stage", "object", relation="StageDto", via="stageId"),
    _f("priority", "enum", sortable=True, values=PRIORITIES, **_W),
    _f("status", "enum", sortable=True, values=STATUSES, **_W),
    _f("statusChanged", "datetime"),
    _f("statusChangedById", "integer"),
    _f("statusChangedBy", "object", relation="UserDto", via="statusChangedById"),
    _f("parentId", "integer", **_W),
    _f("parent", "object", relation="TaskDto", via="parentId"),
    _f("accomplices", "array", items="integer", **_W),
    _f("auditors", "array", items="integer", **_W),
    _f("changed", "datetime", sortable=True),
    _f("changedById", "integer"),
    _f("changedBy", "object", relation="UserDto", via="changedById"),
    _f("closed", "datetime", sortable=True),
    _f("closedById", "integer"),
    _f("closedBy", "object", relation="UserDto", via="closedById"),
    _f("activity", "datetime", sortable=True),
    _f("started", "datetime", sortable=True),
    _f("estimatedTime", "integer", sortable=True, **_W),
    _f("mark", "string", sortable=True),
    _f("allowsChangeDeadline", "boolean", sortable=True, **_W),
    _f("allowsTimeTracking", "boolean", sortable=True, **_W),
    _f("crmItemIds", "array", items="string", **_W),
    _f("guid", "string"),
    _f("link", "string"),
)

_ID = {"id": {"type": "integer"}}
_SELECT = {"select": {"type": "array", "items": {"type": "string"}}}
_FIELDS = {"fields": {"$ref": "#/components/schemas/TaskDto"}}


# --- access and lookup ------------------------------------------------------------------------


def _members(task: Row) -> set[int]:
    return {task["creatorId"], task["responsibleId"], *task["accomplices"], *task["auditors"]}


def _sees(call: Call, task: Row) -> bool:
    return call.is_admin or call.auth.user_id in _members(task)


def _may_edit(call: Call, task: Row) -> bool:
    return call.is_admin or call.auth.user_id in (task["creatorId"], task["responsibleId"])


def _may_delete(call: Call, task: Row) -> bool:
    return call.is_admin or call.auth.user_id == task["creatorId"]


def _denied() -> V3Error:
    return V3Error(ACCESS_DENIED, "Access denied", 403)


def _task_id(params: dict[str, Any]) -> int:
    if params.get("id") is None:
        raise invalid("id", "Required field `id` is missing")
    value: int = typed(TASK.fields["id"], params["id"])
    return value


def user_dto(portal: Portal, user_id: Any) -> Row | None:
    user = portal.users.get(user_id) if isinstance(user_id, int) else None
    if user is None:
        return None
    return {
        "id": int(user["ID"]),
        "name": f"{user.get('NAME', '')} {user.get('LAST_NAME', '')}".strip(),
        "role": "employee",
        "gender": user.get("PERSONAL_GENDER") or None,
        "email": user.get("EMAIL") or None,
        "externalAuthId": None,
    }


def resolver(call: Call) -> Any:
    tasks = portal_v3(call.portal).tasks

    def resolve(dto_name: str, object_id: Any) -> Row | None:
        if dto_name == "UserDto":
            return user_dto(call.portal, object_id)
        if dto_name == "TaskDto" and isinstance(object_id, int):
            task = tasks.get(object_id)
            return task if task is not None and _sees(call, task) else None
        return None  # groups and stages: the sandbox has none

    return resolve


# --- writing ---------------------------------------------------------------------------------


def _values(call: Call, fields: Any, *, creating: bool, task_id: int | None = None) -> Row:
    """The written fields, checked: known, writable in this request, of the right type."""
    if fields is None:
        raise invalid("fields", "Required field `fields` is missing")
    if not isinstance(fields, dict):
        raise invalid("fields", "Field `fields` requires data type `object` for this request")
    values: Row = {}
    for name, value in fields.items():
        field = TASK.fields.get(name)
        if field is None or field.relation:
            raise V3Error(UNKNOWN_PROPERTY, f"Unknown field `{name}` for entity `{TASK.name}`")
        if not (field.creatable if creating else field.editable):
            attribute = "Creatable" if creating else "Editable"
            raise invalid(
                name,
                f"In DTO `{TASK.name}`, the field `{name}` requires the presence of the `{attribute}` "
                "attribute for such a request",
            )
        checked = typed(field, value)
        values[name] = format_datetime(checked) if field.type == "datetime" and checked else checked
    if creating:
        for name in ("title", "creatorId", "responsibleId"):
            if values.get(name) in (None, ""):
                raise invalid(name, f"Required field `{name}` is missing")
    users = call.portal.users
    for name, label in (("responsibleId", "Executor"), ("creatorId", "Creator")):
        if name in values and values[name] not in users:
            raise invalid(name, f'User specified in the "{label}" field not found')
    for name in ("accomplices", "auditors"):
        for user_id in values.get(name) or ():
            if user_id not in users:
                raise invalid(name, f"User {user_id} not found")
    parent = values.get("parentId")
    if parent is not None:
        if parent == task_id:
            raise invalid("parentId", "Cannot bind a node to itself")
        if parent not in portal_v3(call.portal).tasks:
            raise invalid("parentId", 'Task specified in the "Parent Task" field not found')
    return values


def new_task(task_id: int, values: Row, *, user_id: int, now: str) -> Row:
    task: Row = {
        "id": task_id,
        "title": "",
        "description": "",
        "creatorId": user_id,
        "created": now,
        "responsibleId": user_id,
        "deadline": None,
        "needsControl": False,
        "startPlan": None,
        "endPlan": None,
        "groupId": None,
        "stageId": None,
        "priority": "average",
        "status": "pending",
        "statusChanged": None,
        "statusChangedById": None,
        "parentId": None,
        "accomplices": [],
        "auditors": [],
        "changed": now,
        "changedById": user_id,
        "closed": None,
        "closedById": None,
        "activity": now,
        "started": None,
        "estimatedTime": 0,
        "mark": None,
        "allowsChangeDeadline": False,
        "allowsTimeTracking": False,
        "crmItemIds": [],
        "guid": "{" + str(uuid.UUID(int=random.getrandbits(128), version=4)) + "}",
    }
    task.update(values)
    task["link"] = f"/company/personal/user/{task['responsibleId']}/tasks/task/view/{task_id}/"
    return task


def _check_plan(task: Row) -> None:
    start, end = parse_datetime(task.get("startPlan")), parse_datetime(task.get("endPlan"))
    if start is not None and end is not None and end < start:
        raise invalid("endPlan", "The specified end date is earlier than the start date in the planning")


def _now(call: Call) -> str:
    return iso(call.sandbox.clock.time())


def insert(portal: Portal, values: Row, *, user_id: int, now: str) -> Row:
    store = portal_v3(portal)
    task = new_task(store.next_task_id, values, user_id=user_id, now=now)
    store.tasks[task["id"]] = task
    store.next_task_id += 1
    return task


# --- methods ---------------------------------------------------------------------------------


@v3_method(
    "tasks.task.add",
    scope="task",
    result="item",
    write=True,
    dto=TASK,
    summary="Create a task",
    request={"required": ["fields"], "properties": _FIELDS},
)
def task_add(call: Call) -> Row:
    values = _values(call, call.params.get("fields"), creating=True)
    draft = new_task(0, values, user_id=call.auth.user_id, now=_now(call))
    _check_plan(draft)
    task = insert(call.portal, values, user_id=call.auth.user_id, now=_now(call))
    return {"item": project(task, {n: None for n in TASK.scalar_names()}, TASK, resolver(call))}


@v3_method(
    "tasks.task.update",
    scope="task",
    result="result",
    write=True,
    dto=TASK,
    summary="Change a task",
    request={"required": ["id", "fields"], "properties": {**_ID, **_FIELDS}},
)
def task_update(call: Call) -> Row:
    task_id = _task_id(call.params)
    values = _values(call, call.params.get("fields"), creating=False, task_id=task_id)
    task = portal_v3(call.portal).tasks.get(task_id)
    if task is None or not _may_edit(call, task):
        raise _denied()
    changed = {**task, **values}
    _check_plan(changed)
    now, user_id = _now(call), call.auth.user_id
    if values.get("status") not in (None, task["status"]):
        changed["statusChanged"], changed["statusChangedById"] = now, user_id
        if values["status"] == "completed":
            changed["closed"], changed["closedById"] = now, user_id
        if values["status"] == "in_progress" and task["started"] is None:
            changed["started"] = now
    changed["changed"], changed["changedById"], changed["activity"] = now, user_id, now
    task.update(changed)
    return {"result": True}


@v3_method(
    "tasks.task.get",
    scope="task",
    result="item",
    dto=TASK,
    summary="A task by its id",
    request={"required": ["id"], "properties": {**_ID, **_SELECT}},
)
def task_get(call: Call) -> Row:
    task_id = _task_id(call.params)
    tree = parse_select(TASK, call.params.get("select"), default=TASK.scalar_names())
    task = portal_v3(call.portal).tasks.get(task_id)
    if task is None:
        raise V3Error(NOT_FOUND, f"Record with ID = `{task_id}` not found")
    if not _sees(call, task):
        raise _denied()
    call.charge(call.sandbox.config.cost.per_row)
    return {"item": project(task, tree, TASK, resolver(call))}


@v3_method(
    "tasks.task.list",
    scope="task",
    result="items",
    dto=TASK,
    summary="Tasks matching a filter, one page",
    request={
        "properties": {
            **_SELECT,
            "filter": {"type": "array", "items": {}},
            "order": {"type": "object", "additionalProperties": {"type": "string", "enum": ["ASC", "DESC"]}},
            "pagination": {
                "type": "object",
                "properties": {
                    "page": {"type": "integer"},
                    "limit": {"type": "integer", "maximum": 1000},
                    "offset": {"type": "integer"},
                },
            },
        }
    },
)
def task_list(call: Call) -> Row:
    params = call.params
    tree = parse_select(TASK, params.get("select"), default=["id"])
    keep = parse_filter(TASK, params.get("filter"))
    order = parse_order(TASK, params.get("order"))
    offset, limit = parse_pagination(params.get("pagination"))
    rows = [t for t in portal_v3(call.portal).tasks.values() if keep(t) and _sees(call, t)]
    page = sort_rows(rows, order, TASK)[offset : offset + limit]
    cost = call.sandbox.config.cost
    call.charge(cost.per_row * len(page) + cost.per_offset_row * offset)
    resolve = resolver(call)
    return {"items": [project(t, tree, TASK, resolve) for t in page]}


@v3_method(
    "tasks.task.delete",
    scope="task",
    result="result",
    write=True,
    dto=TASK,
    summary="Delete a task",
    request={"required": ["id"], "properties": _ID},
)
def task_delete(call: Call) -> Row:
    task_id = _task_id(call.params)
    tasks = portal_v3(call.portal).tasks
    task = tasks.get(task_id)
    if task is None or not _may_delete(call, task):
        raise _denied()
    del tasks[task_id]
    return {"result": True}


def seed_tasks(portal: Portal, count: int, *, now: float, seed: int = 0) -> int:
    """Add ``count`` generated tasks (the control API's ``rest_v3/tasks/seed``); returns the total."""
    rng = random.Random(seed * 7_919 + portal.index)
    users = sorted(portal.users)
    stamp = iso(now)
    for n in range(count):
        insert(
            portal,
            {
                "title": f"Task {n + 1}",
                "creatorId": portal.admin_user_id,
                "responsibleId": users[n % len(users)],
                "priority": PRIORITIES[rng.randrange(len(PRIORITIES))],
                "status": STATUSES[rng.randrange(len(STATUSES))],
            },
            user_id=portal.admin_user_id,
            now=stamp,
        )
    return len(portal_v3(portal).tasks)
