"""Short-lived values every process sees: in Redis when REDIS_URL is set, else in the process's own
Django cache (single-process mode). Values are bytes.

Django's cache API is enough for most uses. This one serves reads on the API's hot path (a data
version and a cached answer, read together in one MGET): Django's Redis backend builds a client
object on every call and pickles every value, a large share of a cached answer's time (measured:
docs/api.md, "Figures"). Here the process's one shared client (bitrix_app.redis_client) is used
as it is. Errors are the backend's own (``redis.exceptions.RedisError`` and the like): callers
decide what a failure means.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import redis
from django.conf import settings
from django.core.cache import cache

from .redis_client import redis_client


class SharedValues(Protocol):
    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys``, in order (None where a key has none), in one round trip."""

    def set_many(self, values: Mapping[str, bytes], *, timeout: float | None) -> None:
        """Store every value, each expiring after ``timeout`` seconds (None: never)."""

    def add(self, key: str, value: bytes) -> bool:
        """Store ``value`` (without expiry) only if ``key`` has none; True when it was stored."""


class RedisValues:
    def __init__(self, client: redis.Redis, prefix: str):
        self.client = client
        self.prefix = prefix
        self._scripts: dict[str, Any] = {}

    def run_script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script over ``keys`` (prefixed here, as every key of this store is)."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.client.register_script(source)
        return script(keys=[self.prefix + key for key in keys], args=list(args))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self.client.mget([self.prefix + key for key in keys])  # type: ignore[return-value]

    def set_many(self, values: Mapping[str, bytes], *, timeout: float | None) -> None:
        if timeout is None:
            self.client.mset({self.prefix + key: value for key, value in values.items()})
            return
        pipe = self.client.pipeline(transaction=False)
        for key, value in values.items():
            pipe.set(self.prefix + key, value, px=max(1, int(timeout * 1000)))
        pipe.execute()

    def add(self, key: str, value: bytes) -> bool:
        return bool(self.client.set(self.prefix + key, value, nx=True))


class CacheValues:
    """The process's Django cache (LocMemCache in single-process mode)."""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        found = cache.get_many(list(keys))
        return [found.get(key) for key in keys]

    def set_many(self, values: Mapping[str, bytes], *, timeout: float | None) -> None:
        cache.set_many(dict(values), timeout=timeout)

    def add(self, key: str, value: bytes) -> bool:
        return cache.add(key, value, timeout=None)


@functools.lru_cache(maxsize=4)
def _redis_values(url: str, prefix: str) -> RedisValues:
    client = redis_client(url)
    assert client is not None
    return RedisValues(client, prefix)


def shared_values() -> SharedValues:
    """The store of the current configuration (REDIS_URL is read on each call, as tests change it)."""
    if settings.REDIS_URL:
        return _redis_values(settings.REDIS_URL, settings.REDIS_KEY_PREFIX)
    return CacheValues()
