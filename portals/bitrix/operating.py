"""Operating-time ledger: paces only the method that is about to hit its execution-time limit.

Bitrix24 sums, per method and per app or webhook, the server time spent over the last 10 minutes
in ten one-minute buckets; past ``limit`` (480 s) the next call of that method gets 429
OPERATION_TIME_LIMIT until old buckets expire. Every answer reports the running sum
(``time.operating``) and when the oldest bucket drops out (``time.operating_reset_at``); a batch
reports one per sub-call in ``result_time``. The ledger keeps the latest report per
(portal, credential, method) and, when the sum comes within ``headroom`` of the limit, makes
callers of that method (only) wait for the reset. Shared through Redis when given one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Error answers carry no timing: when blocked without a known reset, wait at least this long
# (the JS SDK's choice, and one minute-bucket is the finest granularity that can free time).
DEFAULT_BLOCK_SECONDS = 10.0
# operating_reset_at is whole seconds (truncated): the bucket may drop out up to a second later.
RESET_SLACK = 1.0
# With Redis, a method whose known sum is more than FAR_MARGIN server-seconds below the point
# where pacing starts is re-read and re-reported at most every REFRESH_SECONDS per process instead
# of on every call (two Redis round trips per call were a third of a call's client CPU). In the
# staleness REFRESH_SECONDS (+ another process's own REFRESH_SECONDS) a method would have to gain
# FAR_MARGIN server-seconds — 30 requests' worth of server time per second — to slip past the
# headroom unseen; near the limit, or while blocked, every call reads and writes as before.
FAR_MARGIN = 60.0
REFRESH_SECONDS = 1.0


@dataclass
class Entry:
    operating: float = 0.0
    reset_at: float = 0.0
    blocked_until: float = 0.0
    seen_at: float = 0.0


class OperatingLedger:
    """Latest operating report per (bucket_key, credential_id, method); ``delay()`` says how long to wait.

    ``limit``/``headroom`` in server seconds. ``clock`` is wall time (operating_reset_at is a unix
    timestamp). With ``redis`` the entries live in one hash per portal+credential, so every
    process sees the method's state as soon as any of them learns it.
    """

    def __init__(
        self,
        *,
        limit: float = 480.0,
        headroom: float = 30.0,
        redis: Any = None,
        prefix: str = "",
        clock: Callable[[], float] = time.time,
    ):
        self.limit = limit
        self.headroom = headroom
        self.redis = redis
        self.prefix = prefix
        self.clock = clock
        self._lock = threading.Lock()
        self._local: dict[tuple[str, str, str], Entry] = {}
        # Redis mode: the last entry read or reported per method, when it was, and our last write.
        self._seen: dict[tuple[str, str, str], tuple[Entry, float]] = {}
        self._written_at: dict[tuple[str, str, str], float] = {}

    def _far(self, entry: Entry, now: float) -> bool:
        return entry.blocked_until <= now and entry.operating < self.limit - self.headroom - FAR_MARGIN

    # -- storage --------------------------------------------------------------------------------

    def _hash(self, bucket_key: str, credential_id: str) -> str:
        return f"{self.prefix}b24:operating:{bucket_key}:{credential_id}"

    def get(self, bucket_key: str, credential_id: str, method: str) -> Entry:
        method = method.lower()
        if self.redis is not None:
            raw, blocked = self.redis.hmget(
                self._hash(bucket_key, credential_id), method, f"{method}|blocked"
            )
            entry = Entry(**json.loads(raw)) if raw else Entry()
            entry.blocked_until = float(blocked) if blocked else 0.0
            return entry
        with self._lock:
            stored = self._local.get((bucket_key, credential_id, method))
            return Entry(**stored.__dict__) if stored else Entry()

    def entries(self, bucket_keys: list[str], credential_id: str) -> list[dict[str, Entry]]:
        """Every method's entry for each portal (one credential), in order; one round trip to Redis.

        The console shows them.
        """
        if self.redis is not None:
            pipe = self.redis.pipeline(transaction=False)
            for bucket_key in bucket_keys:
                pipe.hgetall(self._hash(bucket_key, credential_id))
            return [_entries_parse(raw) for raw in pipe.execute()]
        with self._lock:
            return [
                {
                    method: Entry(**entry.__dict__)
                    for (bucket, credential, method), entry in self._local.items()
                    if bucket == bucket_key and credential == credential_id
                }
                for bucket_key in bucket_keys
            ]

    # A report and a block are separate fields, so recording a report (every answer) is one
    # write without a read, and never clears a block another process set.

    def _put_report(self, bucket_key: str, credential_id: str, method: str, entry: Entry) -> None:
        method = method.lower()
        report = {"operating": entry.operating, "reset_at": entry.reset_at, "seen_at": entry.seen_at}
        if self.redis is not None:
            key = self._hash(bucket_key, credential_id)
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(key, method, json.dumps(report))
            pipe.expire(key, 900)  # the window is 10 minutes; older reports say nothing
            pipe.execute()
        else:
            with self._lock:
                current = self._local.setdefault((bucket_key, credential_id, method), Entry())
                current.operating, current.reset_at, current.seen_at = (
                    entry.operating,
                    entry.reset_at,
                    entry.seen_at,
                )

    def _put_block(self, bucket_key: str, credential_id: str, method: str, until: float) -> None:
        method = method.lower()
        if self.redis is not None:
            key = self._hash(bucket_key, credential_id)
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(key, f"{method}|blocked", repr(until))
            pipe.expire(key, 900)
            pipe.execute()
        else:
            with self._lock:
                current = self._local.setdefault((bucket_key, credential_id, method), Entry())
                current.blocked_until = max(current.blocked_until, until)

    # -- the contract ---------------------------------------------------------------------------

    def record(self, bucket_key: str, credential_id: str, method: str, time_info: dict[str, Any]) -> None:
        """Feed one answer's ``time`` object (top-level or a batch ``result_time`` entry)."""
        if not isinstance(time_info, dict) or "operating" not in time_info:
            return
        try:
            operating = float(time_info.get("operating") or 0.0)
            reset_at = float(time_info.get("operating_reset_at") or 0.0)
        except (TypeError, ValueError):
            return
        now = self.clock()
        finish = time_info.get("finish")
        if reset_at and isinstance(finish, int | float) and finish > 0:
            # The portal's clock may differ from ours: keep the reset as a distance from the
            # portal's "now" (the answer's finish), re-based on our clock.
            reset_at = now + (reset_at - float(finish))
        entry = Entry(operating=operating, reset_at=reset_at + RESET_SLACK if reset_at else 0.0, seen_at=now)
        if self.redis is None:
            self._put_report(bucket_key, credential_id, method, entry)
            return
        key = (bucket_key, credential_id, method.lower())
        with self._lock:
            cached = self._seen.get(key)
            if cached is not None:
                entry.blocked_until = cached[0].blocked_until
            self._seen[key] = (entry, now)
            skip = self._far(entry, now) and now - self._written_at.get(key, float("-inf")) < REFRESH_SECONDS
            if not skip:
                self._written_at[key] = now
        if not skip:
            self._put_report(bucket_key, credential_id, method, entry)

    def blocked(self, bucket_key: str, credential_id: str, method: str) -> float:
        """Bitrix24 answered OPERATION_TIME_LIMIT: block the method until the known reset (or a while).

        Returns the seconds to wait.
        """
        now = self.clock()
        entry = self.get(bucket_key, credential_id, method)
        until = entry.reset_at if entry.reset_at > now else now + DEFAULT_BLOCK_SECONDS
        until = max(entry.blocked_until, until)
        self._put_block(bucket_key, credential_id, method, until)
        entry.blocked_until = until
        with self._lock:
            self._seen[(bucket_key, credential_id, method.lower())] = (entry, now)
        return until - now

    def _recent(self, bucket_key: str, credential_id: str, method: str, now: float) -> Entry:
        """The method's entry: from Redis, unless what this process saw lately is far from the limit."""
        if self.redis is not None:
            key = (bucket_key, credential_id, method.lower())
            with self._lock:
                cached = self._seen.get(key)
            if cached is not None and now - cached[1] < REFRESH_SECONDS and self._far(cached[0], now):
                return cached[0]
            entry = self.get(bucket_key, credential_id, method)
            with self._lock:
                self._seen[key] = (entry, now)
            return entry
        return self.get(bucket_key, credential_id, method)

    def delay(self, bucket_key: str, credential_id: str, method: str) -> float:
        """Seconds to wait before calling ``method``: 0 unless it is within headroom of its limit."""
        now = self.clock()
        entry = self._recent(bucket_key, credential_id, method, now)
        if entry.blocked_until > now:
            return entry.blocked_until - now
        if entry.operating >= self.limit - self.headroom and entry.reset_at > now:
            return entry.reset_at - now
        return 0.0


def _entries_parse(raw: dict[Any, Any]) -> dict[str, Entry]:
    """A ledger hash (method → report JSON, method|blocked → time) as entries by method."""
    found: dict[str, Entry] = {}
    for name, value in raw.items():
        method, _, kind = (name.decode() if isinstance(name, bytes) else name).partition("|")
        entry = found.setdefault(method, Entry())
        if kind == "blocked":
            entry.blocked_until = float(value)
        else:
            report = json.loads(value)
            entry.operating, entry.reset_at, entry.seen_at = (
                report["operating"],
                report["reset_at"],
                report["seen_at"],
            )
    return found
