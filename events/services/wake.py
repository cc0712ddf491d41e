"""Waking drainers: after an event commits, make sure one drainer for its shard is queued.

:func:`events_wake` sets a per-shard flag with SET NX (portals.services.coordination) and queues one
drain task only if the flag was not already set, so a burst of events costs one task. The drainer
clears the flag when it runs out of work and then looks once more, so an event committed while it
was finishing is never left behind; the periodic sweep (``events.services.replay.events_sweep``)
covers lost wake-ups and a worker that died holding the flag. A failed wake-up (Redis or the broker
down) is logged, rate-limited, and made good by the sweep. In single-process mode there are no
shared flags: every wake-up runs its drain inline, and the shard lock turns a second drainer away.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import kombu.exceptions
import redis
from django.db import close_old_connections

from events.services.queue import drain_queue
from portals.refusals import ThrottledWarning
from portals.services.coordination import coordination

logger = logging.getLogger("events")

WAKE_FLAG_SECONDS = 120
# A wake-up fails when Redis or the broker is down: it is logged and the sweep makes it good.
_WAKE_OUTAGE = (redis.RedisError, kombu.exceptions.OperationalError)


def wake_flag(shard: int) -> str:
    """The name of ``shard``'s wake flag (set while a drainer is queued or running)."""
    return f"events:wake:{shard}"


# A process that saw a shard's wake flag set (or set it) less than WAKE_MEMO_SECONDS ago skips the
# Redis round trip: a drainer is queued or running. That is safe because a drainer, after clearing
# the flag, waits 2 × WAKE_MEMO_SECONDS before its last look: an event committed within the memo
# window after the flag was seen is committed before that last look, which therefore finds it.
WAKE_MEMO_SECONDS = 0.05
_wake_seen: dict[int, float] = {}


def events_wake(*, shard: int, force: bool = False) -> None:
    """Make sure a drainer for ``shard`` is queued (one for many events).

    ``force`` skips the in-process memo (a drainer handing over to the next one).
    """
    events_wake_many(shards={shard}, force=force)


def events_wake_many(*, shards: set[int], force: bool = False) -> None:
    """:func:`events_wake` for several shards with one Redis round trip (a group commit's batch).

    Never raises for Redis or the broker being down: that is logged (rate-limited) and the periodic
    sweep wakes the shards once they are back.
    """

    coord = coordination()
    seen = time.monotonic()
    # Without shared flags every wake-up is a drain of its own (run inline): nothing to remember.
    memo = coord.flags_shared and not force
    due = sorted(
        shard for shard in shards if not memo or seen - _wake_seen.get(shard, -1.0) >= WAKE_MEMO_SECONDS
    )
    if not due:
        return
    with logged_if_down(due):
        for shard in due:
            _wake_seen[shard] = seen  # taken before the SET: the flag existed at least from this moment
        flags = coord.flags_set([wake_flag(shard) for shard in due], ttl=WAKE_FLAG_SECONDS)
        for shard, was_set in zip(due, flags, strict=True):
            if was_set:
                drain_queue(shard)


def wake_flag_clear(shard: int) -> None:
    """Delete ``shard``'s wake flag; Redis being down is logged, not raised."""
    with logged_if_down([shard]):
        coordination().flag_clear(wake_flag(shard))


# With Redis down every wake-up fails at once: one line per cause every 10 s says as much as one per
# failure would, without flooding a busy web process's log.
_log_wake_failed = ThrottledWarning(logger, "events.wake_failed")


def _wake_failed(error: BaseException, shards: Iterable[int]) -> None:
    """One ``events.wake_failed`` line for ``error`` (no traceback: the cause and the shards say it)."""
    cause = f"{type(error).__module__}.{type(error).__qualname__}"
    _log_wake_failed.warn(cause, cause=cause, error=type(error).__name__, shards=sorted(shards))


@contextmanager
def logged_if_down(shards: list[int]) -> Iterator[None]:
    """Turn Redis or the broker being down into a logged wake failure: the sweep makes it good."""
    try:
        yield
    except _WAKE_OUTAGE as e:
        _wake_failed(e, shards)


class ShardWaker:
    """Wakes shards from one background thread per process, so no request waits on Redis or the broker.

    A group commit's leader used to wake its batch's shards itself before answering (a Redis round
    trip, sometimes a broker publish), and a slow Redis connection held the request with it
    (docs/events.md, Benchmark). Now it hands the shards over and answers, and the thread wakes all
    it was handed while busy with one round trip. A wake-up that fails, or that the process exits
    before sending, is made good by the periodic sweep (``events_sweep``): the events are committed.
    """

    def __init__(self, wake: Callable[[set[int]], None]):
        self._wake = wake
        self._reset()
        # A forked child has no thread, and must not inherit a lock some thread held at fork time.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._pending: set[int] = set()
        self._thread: threading.Thread | None = None

    def submit(self, shards: set[int]) -> None:
        with self._cond:
            self._pending |= shards
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="events-shard-waker", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                shards, self._pending = self._pending, set()
            try:
                self._wake(shards)
            except Exception as e:
                _wake_failed(e, shards)
            finally:
                close_old_connections()  # in single-process mode the drain itself runs here


_waker = ShardWaker(lambda shards: events_wake_many(shards=shards))


def events_wake_soon(*, shards: set[int]) -> None:
    """:func:`events_wake_many` from the process's waker thread: returns at once.

    In single-process mode (tasks run inline) the drain itself then runs in that thread.
    """
    _waker.submit(shards)
