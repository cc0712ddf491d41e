"""Per-call metrics per portal: calls, errors by code, limiter wait, operating seconds, latency.

Always kept in process (``snapshot()``); with Redis also summed into one hash per portal so the
admin and a /metrics endpoint can read totals across every process (``redis_snapshot()``).
Increments reach Redis in one pipeline at most every ``flush_interval`` seconds (and on
``flush()``, ``redis_snapshot()`` and process exit) rather than one round trip per call: per-call
writes cost about as much client CPU as the call's own HTTP work, and totals a second old are
what a dashboard needs.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import defaultdict
from typing import Any

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(
        self,
        *,
        redis: Any = None,
        prefix: str = "",
        flush_interval: float = 1.0,
        clock: Any = time.monotonic,
    ):
        self.redis = redis
        self.prefix = prefix
        self.flush_interval = flush_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._data: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._pending: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._flushed_at = clock()
        if redis is not None:
            _live.add(self)

    def _key(self, bucket_key: str) -> str:
        return f"{self.prefix}b24:metrics:{bucket_key}"

    def _add(self, bucket_key: str, fields: dict[str, float]) -> None:
        due = False
        with self._lock:
            data = self._data[bucket_key]
            for name, value in fields.items():
                data[name] += value
            if self.redis is not None:
                pending = self._pending[bucket_key]
                for name, value in fields.items():
                    pending[name] += value
                due = self.clock() - self._flushed_at >= self.flush_interval
        if due:
            self.flush()

    def flush(self) -> None:
        """Send the increments gathered since the last flush to Redis (one pipeline)."""
        if self.redis is None:
            return
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, defaultdict(lambda: defaultdict(float))
                self._flushed_at = self.clock()
            if not pending:
                return
            pipe = self.redis.pipeline(transaction=False)
            for bucket_key, fields in pending.items():
                for name, value in fields.items():
                    pipe.hincrbyfloat(self._key(bucket_key), name, value)
            try:
                pipe.execute()
            except Exception:
                # Redis unavailable: keep the increments for the next flush rather than lose them.
                with self._lock:
                    for bucket_key, fields in pending.items():
                        for name, value in fields.items():
                            self._pending[bucket_key][name] += value
                raise

    def call(
        self, bucket_key: str, method: str, *, latency: float, wait: float, operating: float = 0.0
    ) -> None:
        """One HTTP request answered (a batch counts once here; its sub-calls feed ``operating``)."""
        bucket = next((f"{b}" for b in LATENCY_BUCKETS if latency <= b), "inf")
        fields = {
            "calls": 1.0,
            "latency_seconds": latency,
            f"latency_le:{bucket}": 1.0,
            "limiter_wait_seconds": wait,
        }
        if operating:
            fields[f"operating_seconds:{method.lower()}"] = operating
        self._add(bucket_key, fields)

    def operating(self, bucket_key: str, method: str, seconds: float) -> None:
        if seconds:
            self._add(bucket_key, {f"operating_seconds:{method.lower()}": seconds})

    def error(self, bucket_key: str, code: str) -> None:
        self._add(bucket_key, {f"errors:{code or 'UNKNOWN'}": 1.0})

    def retry(self, bucket_key: str, cause: str) -> None:
        self._add(bucket_key, {f"retries:{cause}": 1.0})

    def snapshot(self) -> dict[str, dict[str, float]]:
        """This process's totals: {bucket_key: {metric: value}}."""
        with self._lock:
            return {key: dict(values) for key, values in self._data.items()}

    def redis_snapshot(self, bucket_key: str) -> dict[str, float]:
        """Totals across all processes sharing the Redis (empty without Redis)."""
        if self.redis is None:
            return {}
        self.flush()
        raw = self.redis.hgetall(self._key(bucket_key))
        return {k.decode() if isinstance(k, bytes) else k: float(v) for k, v in raw.items()}


# Metrics objects with Redis, flushed once more when the process exits (weakly held: a dropped
# client's metrics are flushed by nobody, which is why flush() is also called on close()).
_live: weakref.WeakSet[Metrics] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for metrics in list(_live):
        try:
            metrics.flush()
        except Exception:  # noqa: BLE001 - exiting: a lost second of counters is not worth a traceback
            logger.warning("bitrix.metrics.flush_failed_at_exit")
