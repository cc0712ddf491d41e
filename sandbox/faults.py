"""Fault switches: per portal (by member_id) or for the OAuth server (scope ``"oauth"``).

A fault is live until its ``count`` is used up (None: no count limit) and until ``until`` (clock
time; None: no time limit); with neither it stays until cleared. Kinds:

REST (per portal): ``query_limit`` (503 QUERY_LIMIT_EXCEEDED), ``operation_limit`` (429
OPERATION_TIME_LIMIT), ``overload`` (503 OVERLOAD_LIMIT), ``latency`` (``delay`` seconds added before
the method runs), ``drop_before`` (close the socket before the method runs), ``drop_after`` (run the
method, then close the socket without an answer), ``revoked`` (401 with ``code`` invalid_token or
NO_AUTH_FOUND for OAuth calls), ``deleted`` (PORTAL_DELETED).
OAuth server (scope ``oauth``): ``oauth_down`` (``mode`` "refuse": the listener is closed;
"503": an HTML 503), ``oauth_latency`` (``delay`` seconds, default 0.2, before every answer of
the token endpoint and the server's REST). Per portal: ``oauth_lost`` (a refresh is performed —
the old pair is dead — and the connection is dropped before the answer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REST_KINDS = {
    "query_limit",
    "operation_limit",
    "overload",
    "latency",
    "drop_before",
    "drop_after",
    "revoked",
    "deleted",
}
OAUTH_KINDS = {"oauth_down", "oauth_lost", "oauth_latency"}
KINDS = REST_KINDS | OAUTH_KINDS


@dataclass
class Fault:
    kind: str
    count: int | None = None
    until: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    fired: int = 0

    def live(self, now: float) -> bool:
        if self.count is not None and self.fired >= self.count:
            return False
        return self.until is None or now < self.until

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "until": self.until,
            "fired": self.fired,
            **self.params,
        }


class Faults:
    def __init__(self) -> None:
        self.by_scope: dict[str, list[Fault]] = {}

    def add(self, scope: str, fault: Fault) -> None:
        if fault.kind not in KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}")
        self.by_scope.setdefault(scope, []).append(fault)

    def take(self, scope: str, kinds: set[str] | frozenset[str], now: float) -> Fault | None:
        """The first live fault of one of ``kinds`` for ``scope``, counted as fired; else None."""
        for fault in self.by_scope.get(scope, ()):
            if fault.kind in kinds and fault.live(now):
                fault.fired += 1
                return fault
        return None

    def active(self, scope: str, kind: str, now: float) -> Fault | None:
        """Like take() but without using up a count (for state-like faults such as oauth_down)."""
        for fault in self.by_scope.get(scope, ()):
            if fault.kind == kind and fault.live(now):
                return fault
        return None

    def clear(self, scope: str | None = None) -> None:
        if scope is None:
            self.by_scope.clear()
        else:
            self.by_scope.pop(scope, None)

    def as_json(self, now: float) -> dict[str, list[dict[str, Any]]]:
        return {s: [f.as_json() for f in fs if f.live(now)] for s, fs in self.by_scope.items()}
