"""The process's Redis client: one connection pool per URL, shared by every area that uses Redis."""

from __future__ import annotations

import functools

import redis
from django.conf import settings


@functools.cache
def _client(url: str) -> redis.Redis:
    # Bounded waits: a Redis that stops answering fails a call within seconds instead of holding
    # its thread indefinitely (each caller has a fallback: the row lock under the refresh lock, the
    # periodic sweep behind event wake-ups, ...). A connection idle for 30 s is PINGed before reuse.
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)


def redis_client(url: str | None = None) -> redis.Redis | None:
    """The shared client for ``url`` (default REDIS_URL), or None in single-process mode (no Redis)."""
    url = settings.REDIS_URL if url is None else url
    return _client(url) if url else None
