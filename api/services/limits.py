"""Requests per minute per API key, and per client address for requests without a valid key.

The `limits` library's sliding-window counter: in Redis, shared by every web process, when
REDIS_URL is set; in process memory otherwise (single-process mode), and also when Redis fails,
so the limits still hold per process while Redis is down instead of letting everything through or
refusing everything.
"""

from __future__ import annotations

import functools
import logging
import time

from django.conf import settings
from limits import RateLimitItemPerMinute, storage, strategies
from limits.errors import StorageError
from redis.exceptions import RedisError

from bitrix_app.redis_client import redis_client
from portals.conf import app_settings
from portals.refusals import ThrottledWarning

logger = logging.getLogger("api.limits")
_log_fallback = ThrottledWarning(logger, "api.limits_local_fallback", interval=60.0)


class Limits:
    def __init__(self, redis_url: str, prefix: str):
        self.local = strategies.SlidingWindowCounterRateLimiter(storage.MemoryStorage())
        self.shared: strategies.RateLimiter | None = None
        conn = redis_client(redis_url) if redis_url else None
        if conn is not None:
            store = storage.RedisStorage(
                redis_url,
                connection_pool=conn.connection_pool,
                key_prefix=f"{prefix}api:limits",
                wrap_exceptions=True,
            )
            self.shared = strategies.SlidingWindowCounterRateLimiter(store)

    def hit(self, identity: str, *, per_minute: int) -> int | None:
        """Count one request of ``identity`` ("key:12", "ip:192.0.2.1"); None when it is allowed,
        else the seconds until it would be (for Retry-After)."""
        item = RateLimitItemPerMinute(per_minute)
        limiter = self.shared or self.local
        try:
            if limiter.hit(item, identity):
                return None
            stats = limiter.get_window_stats(item, identity)
        except (StorageError, RedisError) as e:
            _log_fallback.warn(type(e).__name__, error=type(e).__name__)
            limiter = self.local
            if limiter.hit(item, identity):
                return None
            stats = limiter.get_window_stats(item, identity)
        return max(1, int(stats.reset_time - time.time() + 0.999))


@functools.lru_cache(maxsize=4)
def _limits(redis_url: str, prefix: str) -> Limits:
    return Limits(redis_url, prefix)


def rate_limit_hit(identity: str) -> int | None:
    """See :meth:`Limits.hit`, at BITRIX24_API_RATE_LIMIT per minute."""
    return _limits(settings.REDIS_URL, settings.REDIS_KEY_PREFIX).hit(
        identity, per_minute=app_settings.api_rate_limit
    )
