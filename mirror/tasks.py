"""Celery tasks of the mirror: thin wrappers that take ids and call services."""

from __future__ import annotations

import logging

from celery import shared_task

from portals.bitrix.exceptions import Bitrix24Error
from portals.services.coordination import coordination

from .services import schedule, sync
from .services.incremental import fetch_flag

logger = logging.getLogger("mirror")


@shared_task(name="mirror.tasks.mirror_sync", ignore_result=True, acks_late=True)
def mirror_sync(portal_id: int, entity: str) -> None:
    """The initial sync (or its resumption). A failure leaves its checkpoint; the sweep resumes it."""
    try:
        sync.mirror_sync(portal_id=portal_id, entity=entity)
    except sync.MirrorBusy:
        return
    except Bitrix24Error as e:
        logger.warning(
            "mirror.sync_stopped", extra={"portal_id": portal_id, "entity": entity, "error": type(e).__name__}
        )


@shared_task(name="mirror.tasks.mirror_fetch", ignore_result=True, acks_late=True)
def mirror_fetch(portal_id: int, entity: str) -> None:
    # The flag comes down first: a mark committed from now on queues another fetch, so none is
    # left waiting for the reconciliation.
    coordination().flag_clear(fetch_flag(portal_id, entity))
    try:
        sync.mirror_fetch(portal_id=portal_id, entity=entity)
    except Bitrix24Error as e:
        logger.warning(
            "mirror.fetch_failed", extra={"portal_id": portal_id, "entity": entity, "error": type(e).__name__}
        )


@shared_task(name="mirror.tasks.mirror_reconcile", ignore_result=True, acks_late=True)
def mirror_reconcile(portal_id: int, entity: str) -> None:
    try:
        sync.mirror_reconcile(portal_id=portal_id, entity=entity)
    except sync.MirrorBusy:
        return
    except Bitrix24Error as e:
        logger.warning(
            "mirror.reconcile_failed",
            extra={"portal_id": portal_id, "entity": entity, "error": type(e).__name__},
        )


@shared_task(name="mirror.tasks.mirror_sweep", ignore_result=True)
def mirror_sweep() -> None:
    schedule.mirror_sweep()
