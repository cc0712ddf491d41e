"""Control routes of REST 3.0 (under ``/_sandbox/rest_v3/``): seed tasks, read the counters."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from sandbox import extensions
from sandbox.control import ControlError, endpoint
from sandbox.rest_v3.state import portal_v3
from sandbox.rest_v3.tasks import seed_tasks
from sandbox.state import Sandbox
from sandbox.store import Portal

SEED_MAX = 1_000_000


def _portal(sandbox: Sandbox, data: dict[str, Any]) -> Portal:
    portal = sandbox.by_member.get(str(data.get("member_id")))
    if portal is None:
        raise ControlError("unknown member_id", 404)
    return portal


def tasks_seed(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    """``{"member_id", "tasks": N}``: add N generated tasks; answers the portal's task count."""
    portal = _portal(sandbox, data)
    count = int(data.get("tasks", 0))
    if not 0 <= count <= SEED_MAX:
        raise ControlError(f"tasks must be between 0 and {SEED_MAX}")
    total = seed_tasks(
        portal, count, now=sandbox.clock.time(), seed=int(data.get("seed", sandbox.config.seed))
    )
    return {"member_id": portal.member_id, "tasks": total}


def state(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    """``?member_id=``: task count, last task id, stored answers and Idempotency-Key counters."""
    portal = _portal(sandbox, data)
    store = portal_v3(portal)
    return {
        "member_id": portal.member_id,
        "tasks": len(store.tasks),
        "last_task_id": store.next_task_id - 1,
        "stored_replies": len(store.replies),
        "idempotency": {
            name: store.idempotency[name]
            for name in ("stored", "replayed", "reused", "invalid", "overlapping")
        },
    }


extensions.control_routes.extend(
    [
        Route("/rest_v3/tasks/seed", endpoint(tasks_seed), methods=["POST"]),
        Route("/rest_v3/state", endpoint(state), methods=["GET"]),
    ]
)
