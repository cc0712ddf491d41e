"""Background work due on a portal: what the sweep's warm-up looks at (Portal.work_due_at).

Schedulers (periodic syncs, job queues) record when they will next need a portal, so its token
is refreshed just before — and only then — instead of on a timer for every portal.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from ..models import Portal


def portal_work_schedule(*, portal_id: int, due_at: datetime) -> None:
    """Record work due at ``due_at``; an earlier pending due time is kept (earliest wins)."""
    Portal.objects.filter(pk=portal_id).filter(
        Q(work_due_at__isnull=True) | Q(work_due_at__gt=due_at)
    ).update(work_due_at=due_at)


def portal_work_done(*, portal_id: int, next_due_at: datetime | None = None) -> None:
    """The due work ran: record the next due time, or none."""
    Portal.objects.filter(pk=portal_id).update(work_due_at=next_due_at)
