"""Typed helpers for tasks over REST 3.0 (the family Bitrix24 migrated first), beside crm.py.

    tasks = Tasks(client)
    task = tasks.add({"title": "Report", "creatorId": 1, "responsibleId": 3})
    tasks.update(task["id"], {"status": "in_progress"})
    for row in tasks.iterate(filter=[["id", ">", 100]], select=["id", "title", "responsible.name"]):
        ...

Fields are 3.0's camelCase ones (RD api-reference/tasks/fields-rest-v3.md); related objects come
with dotted ``select`` names. Writes are retried safely: each carries an Idempotency-Key made
once for the call (or the caller's own, to make a call idempotent across processes).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypedDict, cast

from .client import Bitrix24Client

Filter = Sequence[Sequence[Any] | Mapping[str, Any]]


class Task(TypedDict, total=False):
    """A task as 3.0 returns it; which keys are present depends on ``select``."""

    id: int
    title: str
    description: str
    creatorId: int
    responsibleId: int
    created: str
    deadline: str | None
    status: str
    priority: str
    parentId: int | None
    accomplices: list[int]
    auditors: list[int]
    changed: str
    closed: str | None
    crmItemIds: list[str]
    responsible: dict[str, Any] | None
    creator: dict[str, Any] | None


class Tasks:
    """tasks.task.{add,update,get,list,delete} on REST 3.0."""

    def __init__(self, client: Bitrix24Client):
        self.v3 = client.v3

    def add(self, fields: Mapping[str, Any], *, idempotency_key: str | None = None) -> Task:
        """Create a task (``title``, ``creatorId``, ``responsibleId`` required); the created task."""
        item = self.v3.item("tasks.task.add", {"fields": dict(fields)}, idempotency_key=idempotency_key)
        return cast(Task, item)

    def update(self, id: int, fields: Mapping[str, Any], *, idempotency_key: str | None = None) -> bool:
        return self.v3.flag(
            "tasks.task.update", {"id": id, "fields": dict(fields)}, idempotency_key=idempotency_key
        )

    def delete(self, id: int, *, idempotency_key: str | None = None) -> bool:
        return self.v3.flag("tasks.task.delete", {"id": id}, idempotency_key=idempotency_key)

    def get(self, id: int, *, select: Sequence[str] | None = None) -> Task:
        """One task; raises Bitrix24NotFound for a missing id, Bitrix24AccessDenied for one the
        caller may not see."""
        params: dict[str, Any] = {"id": id}
        if select:
            params["select"] = list(select)
        return cast(Task, self.v3.item("tasks.task.get", params))

    def list(
        self,
        *,
        filter: Filter | None = None,
        select: Sequence[str] | None = None,
        order: Mapping[str, str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Task]:
        """One page (``limit`` up to 1,000); without ``select`` only ``id``. For all rows: :meth:`iterate`."""
        params: dict[str, Any] = {"pagination": {"limit": limit, "offset": offset}}
        if filter:
            params["filter"] = [list(c) if not isinstance(c, Mapping) else dict(c) for c in filter]
        if select:
            params["select"] = list(select)
        if order:
            params["order"] = dict(order)
        return cast(list[Task], self.v3.items("tasks.task.list", params))

    def iterate(
        self,
        *,
        filter: Filter | None = None,
        select: Sequence[str] | None = None,
        parallel: int = 4,
        checkpoint: Mapping[str, Any] | None = None,
        on_checkpoint: Any = None,
    ) -> Iterator[Task]:
        """Every matching task, streamed in parallel ID ranges (see RestV3.list_all)."""
        params: dict[str, Any] = {}
        if filter:
            params["filter"] = [list(c) if not isinstance(c, Mapping) else dict(c) for c in filter]
        if select:
            params["select"] = list(select)
        rows = self.v3.list_all(
            "tasks.task.list", params, parallel=parallel, checkpoint=checkpoint, on_checkpoint=on_checkpoint
        )
        return cast(Iterator[Task], rows)
