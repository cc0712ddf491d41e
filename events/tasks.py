"""Celery tasks of the events app: thin wrappers that take ids and call services."""

from __future__ import annotations

import logging

from celery import shared_task

from events.services import binding, drain, offline, replay
from portals.bitrix.exceptions import Bitrix24Error, Bitrix24ServerError, Bitrix24TransportError
from portals.bitrix.retry import Backoff
from portals.models import Portal
from portals.services.setup import SETUP_DONE, SETUP_FAILED, portal_setup_record

logger = logging.getLogger("events")

_BIND_BACKOFF = Backoff(base=15, cap=900, jitter="equal")


@shared_task(name="events.tasks.events_drain", ignore_result=True)
def events_drain(shard: int, scheduled: bool = False) -> None:
    drain.events_drain_shard(shard=shard, scheduled=scheduled)


@shared_task(name="events.tasks.events_sweep", ignore_result=True)
def events_sweep() -> None:
    replay.events_sweep()


@shared_task(name="events.tasks.events_prune", ignore_result=True)
def events_prune() -> None:
    replay.events_prune()


@shared_task(
    name="events.tasks.events_bind_app", bind=True, ignore_result=True, max_retries=8, acks_late=True
)
def events_bind_app(self, portal_id: int) -> None:
    """Bind the app's events on a freshly installed portal, and record the outcome for its installer.

    The installer page calls installFinish once this reports done (portals.services.setup): done,
    or failed once it gives up; a retry leaves it pending. A portal that can't be reached is
    retried with backoff.
    """
    installed_at = Portal.objects.filter(pk=portal_id).values_list("installed_at", flat=True).first()
    stamp = installed_at.timestamp() if installed_at else None
    try:
        binding.app_events_bind(portal_id=portal_id)
    except (Bitrix24TransportError, Bitrix24ServerError) as e:
        if not self.request.is_eager and self.request.retries < self.max_retries:
            raise self.retry(exc=e, countdown=_BIND_BACKOFF.delay(self.request.retries))
        logger.warning("events.bind_failed", extra={"portal_id": portal_id, "error": type(e).__name__})
        portal_setup_record(portal_id=portal_id, installed_at=stamp, state=SETUP_FAILED)
    except Bitrix24Error as e:
        logger.warning("events.bind_failed", extra={"portal_id": portal_id, "error": type(e).__name__})
        portal_setup_record(portal_id=portal_id, installed_at=stamp, state=SETUP_FAILED)
    else:
        portal_setup_record(portal_id=portal_id, installed_at=stamp, state=SETUP_DONE)


@shared_task(name="events.tasks.events_bindings_reconcile", ignore_result=True)
def events_bindings_reconcile() -> None:
    binding.app_events_reconcile_all()


@shared_task(name="events.tasks.events_offline_drain", ignore_result=True)
def events_offline_drain(portal_id: int) -> None:
    offline.offline_events_drain(portal_id=portal_id)


@shared_task(name="events.tasks.events_offline_sweep", ignore_result=True)
def events_offline_sweep() -> None:
    offline.offline_events_sweep()
