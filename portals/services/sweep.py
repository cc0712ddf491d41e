"""Which portals the periodic sweep refreshes (selectors), by the refresh policy.

Bitrix24 warns that apps refreshing every portal hourly or daily get blocked by automation
(protocol §2.7), so the sweep refreshes only:

* **warm**: portals with background work due within BITRIX24_WARM_WORK_MINUTES whose access
  token will have expired by then, so the work does not start with a refresh;
* **keep-alive**: dormant portals whose refresh token is older than BITRIX24_DORMANT_REFRESH_DAYS,
  so it never ages out unused (refresh tokens live 28-30 days on Bitrix24 today).

Every other refresh happens on demand, when a call finds the token expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import F, Q

from portals.conf import app_settings

from ..models import Portal


@dataclass(frozen=True)
class SweepPlan:
    warm: list[int]
    keepalive: list[int]


def warm_window() -> timedelta:
    return timedelta(minutes=app_settings.warm_work_minutes)


def dormant_age() -> timedelta:
    return timedelta(days=app_settings.dormant_refresh_days)


def portals_to_warm(*, now: datetime, limit: int) -> list[int]:
    """Active portals with work due within the window whose token expires before the work runs."""
    margin = timedelta(seconds=app_settings.token_refresh_margin)
    rows = (
        Portal.objects.active()
        .with_work_due_before(now + warm_window())
        .filter(Q(expires_at__isnull=True) | Q(expires_at__lt=F("work_due_at") + margin))
        .order_by("work_due_at")
        .values_list("pk", flat=True)[:limit]
    )
    return list(rows)


def portals_to_keep_alive(*, now: datetime, limit: int) -> list[int]:
    """Active portals whose refresh token is older than the dormant age, oldest first."""
    rows = (
        Portal.objects.active()
        .refresh_token_older_than(now - dormant_age())
        .order_by("refresh_token_issued_at")
        .values_list("pk", flat=True)[:limit]
    )
    return list(rows)


def portals_sweep_plan(*, now: datetime, limit: int | None = None) -> SweepPlan:
    limit = limit or app_settings.token_sweep_batch
    warm = portals_to_warm(now=now, limit=limit)
    keepalive = [pk for pk in portals_to_keep_alive(now=now, limit=limit) if pk not in set(warm)]
    return SweepPlan(warm=warm, keepalive=keepalive)
