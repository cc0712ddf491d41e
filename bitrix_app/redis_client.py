"""The process's Redis client: one connection pool per URL, shared by every area that uses Redis.

A Redis that is down makes commands raise ``redis.exceptions.RedisError`` (quickly: see the
timeouts below). Callers own what that means: the REST client's shared bucket and ledger raise
``portals.bitrix.limiter.SharedStateUnavailable`` (wrap other shared-state reads with
``portals.bitrix.limiter.redis_failures``), event wake-ups fall back to the periodic sweep.
"""

from __future__ import annotations

import functools

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@functools.cache
def _client(url: str) -> redis.Redis:
    # Bounded waits: a Redis that stops answering fails a call within seconds instead of holding
    # its thread indefinitely (each caller has a fallback: the row lock under the refresh lock, the
    # periodic sweep behind event wake-ups, ...). A connection idle for 30 s is PINGed before reuse.
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)
    except ValueError as e:
        # Said once, plainly, instead of a traceback from the first call; the URL itself is not
        # repeated (it may hold a password), the driver's reason names the part that is wrong.
        raise ImproperlyConfigured(f"REDIS_URL is not a usable Redis URL: {e}") from None


def redis_client(url: str | None = None) -> redis.Redis | None:
    """The shared client for ``url`` (default REDIS_URL), or None in single-process mode (no Redis).

    Raises ImproperlyConfigured for a URL the driver can't read. Connecting happens on first use.
    """
    url = settings.REDIS_URL if url is None else url
    return _client(url) if url else None
