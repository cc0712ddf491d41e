"""The one backoff policy: how long to wait before the next attempt of anything that failed.

Every retry of the app waits ``Backoff.delay(attempt)``: the REST client (network errors and 5xx),
the refresh grant (connection refused), the event dispatcher (a handler raised) and the Celery
tasks that retry a refresh or an event binding. Each caller picks its own ``base`` and ``cap``,
and the jitter:

* ``"full"``: uniform in [0, ceiling]. Spreads callers that failed together the most; the choice
  for short waits inside a call, where many threads or processes may hit one failure at once.
* ``"equal"``: uniform in [ceiling / 2, ceiling]. Keeps half the exponential wait as a floor, so a
  small number of attempts still spans an outage; the choice for retries queued for later.

``ceiling = min(cap, base * 2**attempt)``, ``attempt`` counting from 0 (the wait before the first
retry). How many attempts to make is the caller's decision. Free of Django.
"""

from __future__ import annotations

import email.utils
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

Jitter = Literal["full", "equal"]

# 2.0**exponent overflows a float past 1023; the cap is reached long before in any real policy.
_MAX_EXPONENT = 1023


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff, capped, with jitter (see the module's docstring for the two kinds).

    Raises ValueError for a negative or non-finite ``base``/``cap`` or an unknown ``jitter``.
    """

    base: float
    cap: float
    jitter: Jitter = "full"

    def __post_init__(self) -> None:
        for name in ("base", "cap"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Backoff.{name} must be a finite number >= 0, not {value!r}")
        if self.jitter not in ("full", "equal"):
            raise ValueError(f"Backoff.jitter must be 'full' or 'equal', not {self.jitter!r}")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt + 1``: ``min(cap, base * 2**attempt)``."""
        if attempt < 0:
            raise ValueError(f"attempt counts from 0, not {attempt}")
        return min(self.cap, self.base * 2.0 ** min(attempt, _MAX_EXPONENT))

    def delay(
        self, attempt: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``attempt + 1``, always within [0, cap].

        ``retry_after``: what the server asked for (a Retry-After header), honoured as a floor
        but never beyond ``cap``: a server asking for longer than the caller is willing to wait
        gets ``cap``, and the caller's bound on attempts decides what happens next. None, a
        negative or a non-finite value is ignored. ``rng`` makes the jitter reproducible.
        """
        ceiling = self.ceiling(attempt)
        uniform = rng.uniform if rng is not None else random.uniform
        low = ceiling / 2 if self.jitter == "equal" else 0.0
        # min(): uniform() may round a hair past its upper bound.
        wait = min(uniform(low, ceiling), ceiling)
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            wait = max(wait, min(retry_after, self.cap))
        return wait

    def delays(self, attempts: int, *, rng: random.Random | None = None) -> list[float]:
        """The waits before each of ``attempts`` retries, in order (``delay(0)``, ``delay(1)``, …)."""
        return [self.delay(n, rng=rng) for n in range(attempts)]


# A server asking for longer than this is treated as asking for this: Backoff.cap bounds it anyway.
_MAX_RETRY_AFTER = 3600.0


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delay-seconds or an HTTP date), else None.

    Anything unreadable is None: the backoff then decides alone.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value[:12]), _MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), _MAX_RETRY_AFTER)
