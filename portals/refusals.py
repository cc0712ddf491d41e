"""Logging refused requests without letting a flood of them flood the log.

Every endpoint that unauthenticated senders reach (the event receiver, install, the app page,
the OAuth callback) refuses bad requests with a 4xx. Each refusal is worth a log line, but a
forged flood must cost less than real traffic, log volume included: :class:`RefusalLog` writes at
most one line per (reason, remote address) every ``interval`` seconds, and the next line for that
pair carries how many were suppressed in between.

Free of Django (and of the events app), so any layer can use it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping

__all__ = ["RefusalLog", "ThrottledWarning"]


class ThrottledWarning:
    """At most one ``logger.warning(message)`` per key every ``interval`` seconds.

    Call ``warn(key, **extra)``; the line written carries ``extra`` and ``suppressed`` (calls for
    that key not logged since its previous line). Keys must come from a small set (a cause, a
    reason and an address), never from request values. Thread-safe; memory is bounded by
    ``max_keys`` keys.
    """

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *,
        interval: float = 10.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.logger = logger
        self.message = message
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        # key → (when its last line was written, calls suppressed since).
        self._seen: dict[Hashable, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def warn(self, key: Hashable, **extra: object) -> None:
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.interval:
                self._seen[key] = (seen[0], seen[1] + 1)
                return
            suppressed = seen[1] if seen is not None else 0
            if len(self._seen) >= self.max_keys:
                self._forget(now)
            self._seen[key] = (now, 0)
        self.logger.warning(self.message, extra={**extra, "suppressed": suppressed})

    def clear(self) -> None:
        """Forget every key (tests start from a clean state)."""
        with self._lock:
            self._seen.clear()

    def _forget(self, now: float) -> None:
        # Keys whose window has ended first; when a flood from many addresses keeps them all
        # recent, everything (their suppressed counts are lost, the next line of each says 0).
        self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval}
        if len(self._seen) >= self.max_keys:
            self._seen.clear()


class RefusalLog(ThrottledWarning):
    """At most one ``logger.warning(message)`` per (reason, remote) every ``interval`` seconds.

    Call it as ``log(reason, status, remote)``; the record's ``extra`` holds ``status``, ``reason``,
    ``remote`` and ``suppressed`` (refusals of that pair not logged since its previous line), plus
    ``context`` (e.g. the refusal's detail) of the line that is written. ``reason`` keys the
    suppression: make it a small set (the exception's class name), never request values.
    """

    def __call__(
        self, reason: str, status: int, remote: str, *, context: Mapping[str, object] | None = None
    ) -> None:
        self.warn((reason, remote), **(context or {}), status=status, reason=reason, remote=remote)
