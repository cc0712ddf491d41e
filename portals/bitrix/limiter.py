"""The portal's request-rate leaky bucket, mirrored on our side so Bitrix24 never refuses a call.

Bitrix24 adds 1 per request to a per-portal counter that drains at ``rate``/s and refuses a
request that would push it past ``capacity`` (standard 2/s + 50, Enterprise 5/s + 250; a batch
counts as one). We keep the same bucket and *reserve* a slot before each request: the reservation
always succeeds and returns how long to wait before sending, so the request reaches Bitrix24 no
earlier than the moment its slot exists. A request that arrives later than its slot finds the
server's bucket at most as full as ours, so every process that reserves from one shared bucket
together stays inside the limit, whatever their number.

Two implementations with one contract: :class:`RedisLimiter` (one atomic Lua script, Redis's own
clock, so processes on many machines share one bucket) and :class:`LocalLimiter` (one process).
When Redis fails, :class:`RedisLimiter` raises :class:`SharedStateUnavailable` (our exception,
naming Redis) rather than the driver's; :func:`redis_failures` does the same for other users of
the shared state (the client around its operating-time ledger).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import redis.exceptions

from .exceptions import Bitrix24TransportError


class SharedStateUnavailable(Bitrix24TransportError):
    """Redis, which holds the shared rate-limit bucket and operating ledger, failed (down, timing
    out, refusing commands). Raised before anything is sent to Bitrix24, so ``sent`` is False: the
    call did not run and may be retried once Redis is back."""

    def __init__(self, message: str):
        super().__init__(message, sent=False)


@contextmanager
def redis_failures(what: str) -> Iterator[None]:
    """Turn any Redis error inside the block into :class:`SharedStateUnavailable`, chained.

    ``what`` names the shared state for the message ("rate limiter", "operating-time ledger").
    """
    try:
        yield
    except redis.exceptions.RedisError as e:
        raise SharedStateUnavailable(f"Redis unavailable for the {what}: {type(e).__name__}: {e}") from e


@dataclass(frozen=True)
class BucketParams:
    """One plan's bucket: ``rate`` requests drained per second, ``capacity`` requests of burst."""

    rate: float
    capacity: float


PLANS: dict[str, BucketParams] = {
    "standard": BucketParams(rate=2.0, capacity=50.0),
    "enterprise": BucketParams(rate=5.0, capacity=250.0),
}


def plan_params(plan: str, overrides: dict[str, BucketParams] | None = None) -> BucketParams:
    """The bucket for a plan name; unknown plans get the standard (strictest) bucket."""
    table = {**PLANS, **(overrides or {})}
    return table.get((plan or "standard").lower(), table["standard"])


def reserve(level: float, last: float, now: float, *, rate: float, capacity: float, cost: float = 1.0):
    """The bucket's math, shared by both limiters (the Lua script is its line-by-line twin).

    ``level`` at time ``last`` leaks ``rate``/s down to 0; the request adds ``cost``. Returns
    ``(new_level, wait)``: wait is 0 while the level stays within ``capacity``, else the time for
    the excess to drain. Reservations queue: the level may exceed capacity by what is reserved.
    """
    elapsed = max(0.0, now - last)
    level = max(0.0, level - elapsed * rate) + cost
    wait = max(0.0, (level - capacity) / rate)
    return level, wait


class Limiter(Protocol):
    """Both methods raise :class:`SharedStateUnavailable` when the bucket's storage fails."""

    def reserve(self, bucket_key: str, params: BucketParams, cost: float = 1.0) -> float:
        """Take a slot for one request; returns the seconds to wait before sending it."""
        ...

    def refused(self, bucket_key: str, params: BucketParams) -> None:
        """Bitrix24 said QUERY_LIMIT_EXCEEDED: its bucket is full, mark ours full too."""
        ...


class LocalLimiter:
    """In-process bucket per key (the single-process default, no Redis)."""

    def __init__(self, *, headroom: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.headroom = headroom
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def reserve(self, bucket_key: str, params: BucketParams, cost: float = 1.0) -> float:
        with self._lock:
            now = self.clock()
            level, last = self._buckets.get(bucket_key, (0.0, now))
            level, wait = reserve(
                level, last, now, rate=params.rate, capacity=params.capacity - self.headroom, cost=cost
            )
            self._buckets[bucket_key] = (level, now)
            return wait

    def refused(self, bucket_key: str, params: BucketParams) -> None:
        with self._lock:
            now = self.clock()
            level, last = self._buckets.get(bucket_key, (0.0, now))
            level = max(level - max(0.0, now - last) * params.rate, params.capacity)
            self._buckets[bucket_key] = (level, now)

    def level(self, bucket_key: str, params: BucketParams) -> float:
        """The current fill (reservations included), for metrics and tests."""
        with self._lock:
            now = self.clock()
            level, last = self._buckets.get(bucket_key, (0.0, now))
            return max(0.0, level - max(0.0, now - last) * params.rate)

    def levels(self, buckets: list[tuple[str, BucketParams]]) -> list[float]:
        """:meth:`level` of each (bucket_key, params), in order (the console reads a page of them)."""
        return [self.level(bucket_key, params) for bucket_key, params in buckets]


# KEYS[1] bucket; ARGV rate, capacity, cost, mode ("reserve" | "refused").
# Redis's clock (TIME) rather than the caller's: machines with skewed clocks share one bucket.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'level', 'last')
local level = tonumber(state[1]) or 0
local last = tonumber(state[2]) or now
local elapsed = now - last
if elapsed < 0 then elapsed = 0 end
level = level - elapsed * rate
if level < 0 then level = 0 end
local wait = 0
if ARGV[4] == 'refused' then
  if level < capacity then level = capacity end
else
  level = level + cost
  wait = (level - capacity) / rate
  if wait < 0 then wait = 0 end
end
redis.call('HSET', KEYS[1], 'level', tostring(level), 'last', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((level / rate + 60) * 1000))
return tostring(wait)
"""


class RedisLimiter:
    """One bucket per portal in Redis, shared by every process and machine using that Redis.

    Every method raises :class:`SharedStateUnavailable` when Redis fails.
    """

    def __init__(self, redis: Any, *, prefix: str = "", headroom: float = 2.0):
        self.redis = redis
        self.prefix = prefix
        self.headroom = headroom
        self._script = redis.register_script(_SCRIPT)

    def key(self, bucket_key: str) -> str:
        return f"{self.prefix}b24:bucket:{bucket_key}"

    def reserve(self, bucket_key: str, params: BucketParams, cost: float = 1.0) -> float:
        capacity = params.capacity - self.headroom
        args = [params.rate, capacity, cost, "reserve"]
        with redis_failures("rate limiter"):
            return float(self._script(keys=[self.key(bucket_key)], args=args))

    def refused(self, bucket_key: str, params: BucketParams) -> None:
        with redis_failures("rate limiter"):
            self._script(keys=[self.key(bucket_key)], args=[params.rate, params.capacity, 0, "refused"])

    def level(self, bucket_key: str, params: BucketParams) -> float:
        with redis_failures("rate limiter"):
            level, last = self.redis.hmget(self.key(bucket_key), "level", "last")
            if level is None:
                return 0.0
            seconds, micros = self.redis.time()
        now = seconds + micros / 1_000_000
        return max(0.0, float(level) - max(0.0, now - float(last)) * params.rate)

    def levels(self, buckets: list[tuple[str, BucketParams]]) -> list[float]:
        """:meth:`level` of each (bucket_key, params), in order, in one round trip to Redis."""
        with redis_failures("rate limiter"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.time()
            for bucket_key, _params in buckets:
                pipe.hmget(self.key(bucket_key), "level", "last")
            (seconds, micros), *states = pipe.execute()
        now = seconds + micros / 1_000_000
        return [
            0.0 if level is None else max(0.0, float(level) - max(0.0, now - float(last)) * params.rate)
            for (level, last), (_key, params) in zip(states, buckets, strict=True)
        ]
