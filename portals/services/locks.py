"""The per-portal refresh lock: Redis across processes, the database row lock always.

With REDIS_URL the lock keeps waiting callers off the database (they block in Redis, not on a
row lock holding a connection). The row lock under it is what makes the refresh correct: even a
Redis lock that expired mid-refresh cannot let two refresh grants through, because the second
caller re-reads the row and sees the rotated pair.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis
from django.conf import settings

from bitrix_app.redis_client import redis_client

from ..bitrix.exceptions import Bitrix24TransportError


def refresh_lock_key(portal_id: int) -> str:
    return f"{settings.REDIS_KEY_PREFIX}portal:{portal_id}:refresh-lock"


@contextlib.contextmanager
def portal_refresh_lock(portal_id: int) -> Iterator[None]:
    """Hold the portal's refresh lock (a no-op without Redis: the row lock alone serialises).

    Raises Bitrix24TransportError when the lock cannot be had within BITRIX24_REFRESH_LOCK_WAIT
    (another refresh is stuck far longer than any OAuth answer takes): the caller retries later.
    """
    client = redis_client()
    if client is None:
        yield
        return
    lock = client.lock(
        refresh_lock_key(portal_id),
        timeout=settings.BITRIX24_REFRESH_LOCK_TIMEOUT,
        blocking_timeout=settings.BITRIX24_REFRESH_LOCK_WAIT,
        sleep=0.05,
    )
    if not lock.acquire():
        raise Bitrix24TransportError("timed out waiting for the portal's refresh lock", sent=False)
    try:
        yield
    finally:
        with contextlib.suppress(redis.exceptions.LockError):
            lock.release()  # it may have expired; the row lock kept the refresh correct anyway
