"""Celery tasks of the portals app: thin wrappers over services, taking ids."""

from __future__ import annotations

import logging
import random

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from .bitrix.exceptions import Bitrix24AuthError, Bitrix24Error, Bitrix24ServerError, Bitrix24TransportError
from .bitrix.retry import Backoff
from .models import Portal
from .services import lifecycle
from .services.sweep import dormant_age, portals_sweep_plan, warm_window
from .services.tokens import RefreshWhen, portal_tokens_refresh

logger = logging.getLogger(__name__)

WARM = "warm"
KEEPALIVE = "keepalive"


@shared_task(bind=True, ignore_result=True, max_retries=5, acks_late=True)
def portal_tokens_refresh_task(self, portal_id: int, reason: str) -> None:
    """Refresh one portal's pair if the reason still holds (single-flight, so duplicates are free)."""
    now = timezone.now()
    if reason == KEEPALIVE:
        when = RefreshWhen(issued_before=now - dormant_age())
    else:
        when = RefreshWhen(expiring_within=warm_window())
    try:
        portal_tokens_refresh(portal_id=portal_id, when=when, reason=reason)
    except (Bitrix24TransportError, Bitrix24ServerError) as e:
        # No answer from the OAuth server: the pair is unchanged (or spent and the next attempt
        # records that), so try again later.
        countdown = Backoff(base=30, cap=600, jitter="equal").delay(self.request.retries)
        raise self.retry(exc=e, countdown=countdown)
    except Bitrix24AuthError:
        pass  # recorded on the portal (state + reason) by the service


# What the last binding of each portal's events came to, for the installer page, which calls
# installFinish only once the events are bound (docs/portals.md, "Finishing the install"). Kept in
# the cache: Redis is shared by web and workers; single-process mode binds inline in its one web process.
BIND_DONE, BIND_FAILED, BIND_PENDING = "done", "failed", "pending"
BIND_STATE_TTL = 3600


def _bind_state_key(portal_id: int) -> str:
    return f"portals:events-bind:{portal_id}"


def _bind_state_record(portal_id: int, installed_at: float | None, state: str) -> None:
    current = cache.get(_bind_state_key(portal_id))
    if current and (current.get("installed_at") or 0) > (installed_at or 0):
        return  # a binding for a later install finished first: its outcome stands
    cache.set(_bind_state_key(portal_id), {"installed_at": installed_at, "state": state}, BIND_STATE_TTL)


def portal_events_bind_state(*, portal_id: int, installed_at: float) -> str:
    """BIND_DONE once a binding made for this install (or a later one) completed, BIND_FAILED if it
    gave up, else BIND_PENDING. ``installed_at`` is the install's Portal.installed_at timestamp."""
    record = cache.get(_bind_state_key(portal_id))
    if not record or record.get("installed_at") is None or record["installed_at"] < installed_at:
        return BIND_PENDING
    return str(record["state"])


@shared_task(bind=True, ignore_result=True, max_retries=8, acks_late=True)
def portal_events_bind_task(self, portal_id: int) -> None:
    """Bind the app's events on a freshly installed portal (the events layer owns the binding).

    Records the outcome for the install it was made for (portal_events_bind_state): done, or
    failed once it gives up; a retry leaves it pending.
    """
    # Imported here: the events app depends on portals, never the other way round at import time.
    from events.services.binding import app_events_bind

    installed_at = Portal.objects.filter(pk=portal_id).values_list("installed_at", flat=True).first()
    stamp = installed_at.timestamp() if installed_at else None
    try:
        app_events_bind(portal_id=portal_id)
    except (Bitrix24TransportError, Bitrix24ServerError) as e:
        if self.request.is_eager or self.request.retries >= self.max_retries:
            logger.warning(
                "portal.events_bind_failed", extra={"portal_id": portal_id, "error": type(e).__name__}
            )
            _bind_state_record(portal_id, stamp, BIND_FAILED)
            return
        countdown = Backoff(base=15, cap=900, jitter="equal").delay(self.request.retries)
        raise self.retry(exc=e, countdown=countdown)
    except Bitrix24Error as e:
        logger.warning("portal.events_bind_failed", extra={"portal_id": portal_id, "error": type(e).__name__})
        _bind_state_record(portal_id, stamp, BIND_FAILED)
        return
    _bind_state_record(portal_id, stamp, BIND_DONE)


@shared_task(ignore_result=True)
def portals_tokens_sweep() -> dict[str, int]:
    """The periodic sweep: queue warm-ups and keep-alives, spread over the jitter window."""
    plan = portals_sweep_plan(now=timezone.now())
    jitter = settings.BITRIX24_TOKEN_SWEEP_JITTER
    for reason, ids in ((WARM, plan.warm), (KEEPALIVE, plan.keepalive)):
        for portal_id in ids:
            countdown = random.uniform(0, jitter)
            portal_tokens_refresh_task.apply_async(args=(portal_id, reason), countdown=countdown)
    counts = {"warm": len(plan.warm), "keepalive": len(plan.keepalive)}
    logger.info("portal.tokens_sweep", extra=counts)
    return counts


@shared_task(ignore_result=True)
def portals_data_purge() -> list[str]:
    """Delete the data of portals uninstalled with CLEAN once their grace period is over."""
    return lifecycle.portals_data_purge()
