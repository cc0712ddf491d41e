"""How many requests may be in flight to one portal at once, across every process of the deployment.

Bitrix24 processes a portal's requests a few at a time; more in flight only wait at the portal
(and count against its operating time). Each client keeps its own cap, but a deployment runs many
clients for one portal (web processes, workers, commands), so the cap that matters is shared:
:class:`RedisSlots` keeps one per portal in Redis, :class:`LocalSlots` one per portal in the
process (single-process mode).

A Redis slot is a lease: a member of the portal's sorted set scored with its expiry, so the slot of
a process that dies while holding it comes back after ``ttl`` seconds. A slot is held for one
request, which Bitrix24 cuts off at 60 s, so the default TTL outlives any request and no renewal
is needed.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import redis.exceptions

from .limiter import redis_failures


class Slots(Protocol):
    def hold(self, key: str, limit: int) -> Any:
        """A context manager holding one of ``limit`` slots of portal ``key`` (waits for one)."""
        ...


class LocalSlots:
    """One semaphore per portal, shared by every client of the process."""

    def __init__(self) -> None:
        self._semaphores: dict[tuple[str, int], threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, key: str, limit: int) -> Iterator[None]:
        with self._lock:
            semaphore = self._semaphores.setdefault((key, limit), threading.BoundedSemaphore(limit))
        with semaphore:
            yield


# Drops expired slots, then takes one if fewer than the limit are held. Redis's own clock: the
# processes of many machines agree on when a slot expires.
_ACQUIRE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
"""


class RedisSlots:
    """Per-portal slots in Redis, shared by every process; a dead holder's slot expires after ``ttl``."""

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = "b24:",
        ttl: float = 90.0,
        poll: float = 0.01,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl
        self.poll = poll
        self._sleep = sleep
        self._acquire = redis.register_script(_ACQUIRE)

    def key(self, portal: str) -> str:
        return f"{self.prefix}slots:{portal}"

    @contextmanager
    def hold(self, key: str, limit: int) -> Iterator[None]:
        name = self.key(key)
        holder = uuid.uuid4().hex
        pause = self.poll
        with redis_failures("concurrency slots"):
            while not self._acquire(keys=[name], args=[limit, int(self.ttl * 1000), holder]):
                self._sleep(pause)
                pause = min(pause * 2, 0.25)  # a long request frees its slot late: ask less often
        try:
            yield
        finally:
            # Never raised: the request's own outcome must reach the caller (a write reported as
            # failed would be sent again). A slot not given back expires after ``ttl``.
            with contextlib.suppress(redis.exceptions.RedisError):
                self.redis.zrem(name, holder)
