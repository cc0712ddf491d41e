"""The outcome of an install's one-off setup, which the installer page waits for.

The page calls installFinish only once the app's events are bound (protocol §1.3: the one-off
setup first). Whoever does the setup (the events app's bind task) records its outcome here; the
page asks through :func:`portal_setup_state`. Kept in the cache: Redis is shared by web processes
and workers; single-process mode binds inline in its one web process.
"""

from __future__ import annotations

from django.core.cache import cache

from ..models import Portal
from ..signals import portal_setup_recorded

SETUP_DONE, SETUP_FAILED, SETUP_PENDING = "done", "failed", "pending"
SETUP_STATE_TTL = 3600


def _key(portal_id: int) -> str:
    return f"portals:setup:{portal_id}"


def portal_setup_record(*, portal_id: int, installed_at: float | None, state: str) -> None:
    """Record ``state`` (SETUP_DONE or SETUP_FAILED) for the install made at ``installed_at``."""
    current = cache.get(_key(portal_id))
    if current and (current.get("installed_at") or 0) > (installed_at or 0):
        return  # a setup for a later install finished first: its outcome stands
    cache.set(_key(portal_id), {"installed_at": installed_at, "state": state}, SETUP_STATE_TTL)
    portal_setup_recorded.send(sender=Portal, portal_id=portal_id, state=state)


def portal_setup_state(*, portal_id: int, installed_at: float) -> str:
    """SETUP_DONE once a setup made for this install (or a later one) completed, SETUP_FAILED if it
    gave up, else SETUP_PENDING. ``installed_at`` is the install's Portal.installed_at timestamp."""
    record = cache.get(_key(portal_id))
    if not record or record.get("installed_at") is None or record["installed_at"] < installed_at:
        return SETUP_PENDING
    return str(record["state"])
