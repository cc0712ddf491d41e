"""The sandbox's one clock: wall time plus an offset the control API can move.

Everything that decides by time (token lifetimes, authorization codes, the leaky bucket, the
operating-time buckets, replay windows of the neighbour's event delivery) reads ``clock.time()``,
so a test can jump an hour ahead instead of sleeping.
"""

from __future__ import annotations

import time


class Clock:
    """Wall-clock seconds shifted by ``offset`` (seconds, may be negative)."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward (or back, if negative); return the new offset."""
        self.offset += seconds
        return self.offset
