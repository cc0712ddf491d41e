"""Celery tasks of the portals app: thin wrappers over services, taking ids."""

from __future__ import annotations

import logging
import random

from celery import shared_task
from django.utils import timezone

from portals.conf import app_settings

from .bitrix.exceptions import Bitrix24AuthError, Bitrix24ServerError, Bitrix24TransportError
from .bitrix.retry import Backoff
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


@shared_task(ignore_result=True)
def portals_tokens_sweep() -> dict[str, int]:
    """The periodic sweep: queue warm-ups and keep-alives, spread over the jitter window."""
    plan = portals_sweep_plan(now=timezone.now())
    jitter = app_settings.token_sweep_jitter
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
