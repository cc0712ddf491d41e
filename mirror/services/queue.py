"""The mirror's tasks, queued from its services by name (imports stay one-way: tasks → services).

The signature resolves to the registered task, so single-process mode (task_always_eager) still
runs it inline. See events/services/queue.py for the same pattern.
"""

from __future__ import annotations

from celery import current_app

SYNC = "mirror.tasks.mirror_sync"
FETCH = "mirror.tasks.mirror_fetch"
RECONCILE = "mirror.tasks.mirror_reconcile"


def sync_queue(portal_id: int, entity: str) -> None:
    current_app.signature(SYNC, args=(portal_id, entity)).apply_async()


def fetch_queue(portal_id: int, entity: str) -> None:
    current_app.signature(FETCH, args=(portal_id, entity)).apply_async()


def reconcile_queue(portal_id: int, entity: str) -> None:
    current_app.signature(RECONCILE, args=(portal_id, entity)).apply_async()
