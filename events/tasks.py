"""Celery tasks of the events app: thin wrappers that take ids and call services."""

from __future__ import annotations

from celery import shared_task

from events.services import binding, drain, offline, replay


@shared_task(name="events.tasks.events_drain", ignore_result=True)
def events_drain(shard: int, scheduled: bool = False) -> None:
    drain.events_drain_shard(shard=shard, scheduled=scheduled)


@shared_task(name="events.tasks.events_sweep", ignore_result=True)
def events_sweep() -> None:
    replay.events_sweep()


@shared_task(name="events.tasks.events_prune", ignore_result=True)
def events_prune() -> None:
    replay.events_prune()


@shared_task(name="events.tasks.events_bind_app", ignore_result=True)
def events_bind_app(portal_id: int) -> None:
    binding.app_events_bind(portal_id=portal_id)


@shared_task(name="events.tasks.events_bindings_reconcile", ignore_result=True)
def events_bindings_reconcile() -> None:
    binding.app_events_reconcile_all()


@shared_task(name="events.tasks.events_offline_drain", ignore_result=True)
def events_offline_drain(portal_id: int) -> None:
    offline.offline_events_drain(portal_id=portal_id)


@shared_task(name="events.tasks.events_offline_sweep", ignore_result=True)
def events_offline_sweep() -> None:
    offline.offline_events_sweep()
