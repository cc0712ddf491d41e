"""Bitrix24's two limits and the per-portal concurrency limit.

* ``LeakyBucket``: per portal, each request adds 1, the level drains by ``drain`` per second; a
  request that would take the level above ``burst`` is refused (503 QUERY_LIMIT_EXCEEDED) and
  not added. A batch is one request.
* ``OperatingLedger``: per portal, caller (app client_id or webhook) and method, the server time
  spent in ten one-minute buckets. A bucket lives ``window`` seconds from its first call, so
  ``operating_reset_at`` = first call of the oldest live bucket + window (the documented example:
  first call 10:05:20 → reset 10:15:20). Checked before a call: the call that crosses the limit
  completes, the next one is refused (429 OPERATION_TIME_LIMIT).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LeakyBucket:
    level: float = 0.0
    last: float = 0.0

    def current(self, now: float, drain: float) -> float:
        return max(0.0, self.level - max(0.0, now - self.last) * drain)

    def admit(self, now: float, drain: float, burst: int) -> bool:
        level = self.current(now, drain)
        self.last = now
        if level + 1 > burst:
            self.level = level
            return False
        self.level = level + 1
        return True


@dataclass
class OperatingMeter:
    # minute index -> [seconds, first call time]
    buckets: dict[int, list[float]] = field(default_factory=dict)

    def _prune(self, now: float, window: float) -> None:
        for minute in [m for m, (_s, first) in self.buckets.items() if now >= first + window]:
            del self.buckets[minute]

    def total(self, now: float, window: float) -> float:
        self._prune(now, window)
        return sum(seconds for seconds, _first in self.buckets.values())

    def reset_at(self, now: float, window: float) -> float | None:
        self._prune(now, window)
        if not self.buckets:
            return None
        return min(first for _s, first in self.buckets.values()) + window

    def add(self, started: float, seconds: float) -> None:
        minute = int(started // 60)
        bucket = self.buckets.get(minute)
        if bucket is None:
            self.buckets[minute] = [seconds, started]
        else:
            bucket[0] += seconds


class OperatingLedger:
    def __init__(self) -> None:
        self.meters: dict[tuple[str, str, str], OperatingMeter] = {}

    def meter(self, member_id: str, caller: str, method: str) -> OperatingMeter:
        key = (member_id, caller, method)
        meter = self.meters.get(key)
        if meter is None:
            meter = self.meters[key] = OperatingMeter()
        return meter
