"""Requests per minute per API key (and per client address for requests without a valid key),
counted together with the reads the request's answer needs: one Redis round trip per request.

Every API request counts against its limit, and a request for data also reads the mirror's data
version and its cached answer (api.services.cache). Done apart that is two round trips, and each
was a large share of a cached answer's cost (measured: docs/api.md, "Figures"), so in Redis one
script does both. The counter is the `limits` library's sliding-window counter (this window's
count plus the last one's, weighted by how much of it still overlaps the last minute), written
here as part of that script because the library runs its own script per hit and can't add reads
to it. In single-process mode, and while Redis fails, the same algorithm runs in process memory
through `limits` itself: the limits still hold per process instead of letting everything through
or refusing everything, and answers are built uncached (logged once a minute).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass, field

from limits import RateLimitItemPerMinute, storage, strategies

from bitrix_app.shared_values import RedisValues, shared_values
from mirror.services.versions import mirror_version_key, mirror_version_new
from portals.conf import app_settings
from portals.refusals import ThrottledWarning

from . import cache

logger = logging.getLogger("api.limits")
_log_fallback = ThrottledWarning(logger, "api.limits_local_fallback", interval=60.0)

WINDOW_MS = 60_000

# KEYS[1], KEYS[2]: the identity's counts in the previous and in the current minute window;
# KEYS[3] (when data is read): the data version; KEYS[4..]: the values read with it.
# ARGV: the limit, the window (ms), how far into the current window we are (ms), a new version.
# Returns {0 (admitted) or the ms until one more request fits, version, values…}.
_ADMIT = """
local limit, window, elapsed = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local previous = tonumber(redis.call('GET', KEYS[1]) or '0')
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local wait = 0
if math.floor(previous * (window - elapsed) / window) + current + 1 > limit then
  -- floor(count * remaining / window) <= n holds once count * remaining / window < n + 1
  if current >= limit then
    -- not before the next window, and then until this window's weight has fallen enough
    wait = (window - elapsed) + math.max(0, window - math.floor(limit * window / current)) + 1
  else
    wait = (window - elapsed) - math.floor((limit - current) * window / previous) + 1
  end
else
  redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], 2 * window)
end
local answer = {wait}
if #KEYS >= 3 then
  local version = redis.call('GET', KEYS[3])
  if not version then
    redis.call('SET', KEYS[3], ARGV[4])
    version = ARGV[4]
  end
  answer[2] = version
  for i = 4, #KEYS do
    answer[i - 1] = redis.call('GET', KEYS[i])
  end
end
return answer
"""


@dataclass(frozen=True)
class Reads:
    """The cached values a request wants read with its limit."""

    portal_id: int
    entity: str
    request_keys: tuple[str, ...]


@dataclass(frozen=True)
class Admission:
    """``retry_after``: None when the request may proceed, else the seconds until one more would
    be (for Retry-After). ``lookup``: what the cache holds for the Reads asked for."""

    retry_after: int | None
    lookup: cache.Lookup = field(default_factory=cache.Lookup)


@functools.cache
def _local() -> strategies.SlidingWindowCounterRateLimiter:
    return strategies.SlidingWindowCounterRateLimiter(storage.MemoryStorage())


def _local_hit(identity: str, per_minute: int) -> int | None:
    item = RateLimitItemPerMinute(per_minute)
    if _local().hit(item, identity):
        return None
    stats = _local().get_window_stats(item, identity)
    return max(1, math.ceil(stats.reset_time - time.time()))


def admit(identity: str, reads: Reads | None = None) -> Admission:
    """Count one request of ``identity`` ("key:12", "ip:192.0.2.1") at BITRIX24_API_RATE_LIMIT a
    minute, and read ``reads`` with it."""
    per_minute = app_settings.api_rate_limit
    store = shared_values()
    if isinstance(store, RedisValues):
        now = time.time_ns() // 1_000_000
        window = now // WINDOW_MS
        keys = [f"api:limit:{identity}:{window - 1}", f"api:limit:{identity}:{window}"]
        answer_keys: tuple[str, ...] = ()
        if reads is not None:
            answer_keys = cache.answer_keys(
                portal_id=reads.portal_id, entity=reads.entity, request_keys=reads.request_keys
            )
            keys += [mirror_version_key(reads.portal_id, reads.entity), *answer_keys]
        try:
            wait, *read = store.run_script(
                _ADMIT, keys, [per_minute, WINDOW_MS, now % WINDOW_MS, mirror_version_new()]
            )
        except Exception as e:  # the store's own errors (redis, connection)
            _log_fallback.warn(type(e).__name__, error=type(e).__name__)
            if reads is not None:
                cache.unavailable(e)
            return Admission(retry_after=_local_hit(identity, per_minute))
        retry_after = max(1, math.ceil(wait / 1000)) if wait else None
        if reads is None:
            return Admission(retry_after=retry_after)
        return Admission(retry_after, cache.lookup_of(answer_keys, read[0], read[1:]))
    retry_after = _local_hit(identity, per_minute)
    if reads is None or retry_after is not None:
        return Admission(retry_after=retry_after)
    return Admission(
        retry_after,
        cache.lookup(portal_id=reads.portal_id, entity=reads.entity, request_keys=reads.request_keys),
    )
