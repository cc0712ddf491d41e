"""Counters for tests and benchmarks, served at ``GET /_sandbox/counters`` (shape in docs/sandbox.md)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any


class Counters:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests_total = 0
        self.requests: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()
        self.answers_by_portal: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.token_grants: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.refresh_reuse: Counter[str] = Counter()
        self.operating: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.batches = 0
        self.batch_sub_calls = 0
        self.writes: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.calls: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.dropped: Counter[str] = Counter()
        self.oauth_answers: Counter[str] = Counter()

    def request(self, member_id: str) -> None:
        self.requests_total += 1
        self.requests[member_id] += 1

    def answer(self, member_id: str, code: str) -> None:
        """Count one answer; ``code`` is "OK" for success, else the error code (or "DROPPED")."""
        self.answers[code] += 1
        self.answers_by_portal[member_id][code] += 1

    def enter(self, member_id: str) -> None:
        self.in_flight[member_id] += 1
        if self.in_flight[member_id] > self.max_in_flight[member_id]:
            self.max_in_flight[member_id] = self.in_flight[member_id]

    def leave(self, member_id: str) -> None:
        self.in_flight[member_id] -= 1

    def as_json(self, buckets: dict[str, float]) -> dict[str, Any]:
        return {
            "requests": {"total": self.requests_total, "by_portal": dict(self.requests)},
            "answers": {
                "by_code": dict(self.answers),
                "by_portal": {m: dict(c) for m, c in self.answers_by_portal.items()},
            },
            "token_grants": {m: dict(c) for m, c in self.token_grants.items()},
            "refresh_token_reuse": {
                "total": sum(self.refresh_reuse.values()),
                "by_portal": dict(self.refresh_reuse),
            },
            "operating_seconds": {m: dict(v) for m, v in self.operating.items()},
            "calls": {m: dict(c) for m, c in self.calls.items()},
            "writes": {m: dict(c) for m, c in self.writes.items()},
            "buckets": buckets,
            "in_flight": {m: n for m, n in self.in_flight.items() if n},
            "max_in_flight": dict(self.max_in_flight),
            "batch": {"requests": self.batches, "sub_calls": self.batch_sub_calls},
            "dropped": dict(self.dropped),
            "oauth": {"by_code": dict(self.oauth_answers)},
        }
