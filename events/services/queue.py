"""The events app's tasks, queued from its services by name.

Tasks call services and services queue tasks. Naming the task, Celery's own way to queue one
without importing it, keeps the imports one-way (``events.tasks`` → ``events.services``). The
signature resolves to the registered task, so ``task_always_eager`` (single-process mode) still
runs it inline, and a renamed task fails the tests that queue it.
"""

from __future__ import annotations

from celery import current_app

DRAIN = "events.tasks.events_drain"
OFFLINE_DRAIN = "events.tasks.events_offline_drain"


def drain_queue(shard: int, *, scheduled: bool = False, countdown: float | None = None) -> None:
    """Queue a drain of ``shard`` (``scheduled``: the shard's earliest retry, after ``countdown``)."""
    kwargs = {"scheduled": True} if scheduled else {}
    current_app.signature(DRAIN, args=(shard,), kwargs=kwargs).apply_async(countdown=countdown)


def offline_drain_queue(portal_id: int) -> None:
    current_app.signature(OFFLINE_DRAIN, args=(portal_id,)).apply_async()
