"""Celery tasks of the console."""

from __future__ import annotations

from celery import shared_task

from .rollups import rollups_prune


@shared_task(name="console.tasks.console_rollups_prune", ignore_result=True)
def console_rollups_prune() -> None:
    rollups_prune()
