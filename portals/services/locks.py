"""The per-portal refresh lock: a lease across processes, the database row lock always.

The lease (portals.services.coordination: a Redis lock in the production shape, in-process
without Redis) keeps waiting callers off the database (they wait for the lease, not on a row lock
holding a connection). The row lock under it is what makes the refresh correct: even a lease that
expired mid-refresh cannot let two refresh grants through, because the second caller re-reads the
row and sees the rotated pair.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from portals.conf import app_settings

from ..bitrix.exceptions import Bitrix24TransportError
from .coordination import coordination


def refresh_lock_name(portal_id: int) -> str:
    return f"portal:{portal_id}:refresh-lock"


@contextlib.contextmanager
def portal_refresh_lock(portal_id: int) -> Iterator[None]:
    """Hold the portal's refresh lease (BITRIX24_REFRESH_LOCK_TIMEOUT seconds at most).

    Raises Bitrix24TransportError when the lease cannot be had within BITRIX24_REFRESH_LOCK_WAIT
    (another refresh is stuck far longer than any OAuth answer takes): the caller retries later.
    """
    lease = coordination().lease(
        refresh_lock_name(portal_id),
        ttl=app_settings.refresh_lock_timeout,
        wait=app_settings.refresh_lock_wait,
    )
    if lease is None:
        raise Bitrix24TransportError("timed out waiting for the portal's refresh lock", sent=False)
    try:
        yield
    finally:
        lease.release()  # it may have expired; the row lock kept the refresh correct anyway
