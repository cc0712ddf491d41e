"""Per-call metrics per portal: calls, errors by code, limiter wait, operating seconds, latency.

Always kept in process (``snapshot()``); with Redis also summed into one hash per portal so the
admin and a /metrics endpoint can read totals across every process (``redis_snapshot()``).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, *, redis: Any = None, prefix: str = ""):
        self.redis = redis
        self.prefix = prefix
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def _key(self, bucket_key: str) -> str:
        return f"{self.prefix}b24:metrics:{bucket_key}"

    def _add(self, bucket_key: str, fields: dict[str, float]) -> None:
        with self._lock:
            data = self._data[bucket_key]
            for name, value in fields.items():
                data[name] += value
        if self.redis is not None:
            pipe = self.redis.pipeline(transaction=False)
            for name, value in fields.items():
                pipe.hincrbyfloat(self._key(bucket_key), name, value)
            pipe.execute()

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
        raw = self.redis.hgetall(self._key(bucket_key))
        return {k.decode() if isinstance(k, bytes) else k: float(v) for k, v in raw.items()}
