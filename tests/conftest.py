"""Shared fixtures: real Redis (own db index and key prefix) and a real Celery worker."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from hypothesis import settings as hypothesis_settings

# No per-example deadline: timing on a shared 2-core machine says nothing about correctness.
# On CI the examples are derandomized, so a run is reproducible; locally they explore.
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")

# One fixtures module per area, so each area's fixtures live beside its concerns.
pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.client",
    "tests.fixtures.portals",
    "tests.fixtures.events",
    "tests.fixtures.e2e",
]


@pytest.fixture
def redis_client() -> redis.Redis:
    """The test Redis, emptied of this suite's keys before and after the test."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    redis_wipe(client)
    yield client
    redis_wipe(client)
    client.close()


def redis_wipe(client: redis.Redis) -> None:
    """Delete this suite's keys (those under REDIS_KEY_PREFIX) and nothing else."""
    for key in client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}*", count=1000):
        client.delete(key)


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker (in a thread of this process) consuming the test queue through Redis.

    Tests that use it must let their writes commit (transactional_db), as a deployed worker would
    only ever see committed rows.
    """
    from celery.contrib.testing.worker import start_worker

    from bitrix_app.celery import app

    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        loglevel="WARNING",
        queues=[settings.CELERY_TASK_DEFAULT_QUEUE],
        shutdown_timeout=30,
    ) as worker:
        yield worker


class TaskLedger:
    """What the in-process worker received and finished, so a test can wait until it is idle.

    A test that asserts that something did *not* happen (no second dispatch, no second grant) must
    first know that the work which could make it happen is over; a fixed sleep only guesses. The
    worker runs in this process, so Celery's own signals see every task it receives (a task with a
    countdown is received at once and held until its time) and every one it finishes.
    """

    def __init__(self, client: redis.Redis):
        prefix = settings.REDIS_KEY_PREFIX
        self.redis = client
        self._queue = f"{prefix}{settings.CELERY_TASK_DEFAULT_QUEUE}"
        self._unacked = f"{prefix}unacked"
        self._lock = threading.Lock()
        self._running: dict[str, bool] = {}  # task id → whether it is held for a countdown
        self.finished: list[str] = []  # task names, in the order they finished

    def received(self, request: Any, **_: Any) -> None:
        with self._lock:
            self._running[request.id] = request.eta is not None

    def done(self, task_id: str, task: Any, **_: Any) -> None:
        with self._lock:
            self._running.pop(task_id, None)
            self.finished.append(task.name)

    def _idle(self, scheduled: bool) -> bool:
        with self._lock:
            held = sum(self._running.values())
            busy = len(self._running) - held
        if busy or (scheduled and held) or self.redis.llen(self._queue):
            return False
        # A message the worker has taken but not yet announced sits in the unacked hash, as do the
        # ones held for a countdown: anything beyond those is still on its way.
        return self.redis.hlen(self._unacked) <= held

    def wait_idle(self, *, timeout: float = 30.0, scheduled: bool = True) -> None:
        """Return once nothing is queued or running (``scheduled``: nor held for a countdown).

        Idle must be seen on two polls in a row: a message between the broker's list and the
        worker's books is in neither for an instant.
        """
        deadline = time.monotonic() + timeout
        seen = 0
        while seen < 2:
            seen = seen + 1 if self._idle(scheduled) else 0
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker was still busy after {timeout:.0f} s")
            time.sleep(0.05)


@pytest.fixture
def celery_tasks(redis_client: redis.Redis, celery_worker: Any) -> Iterator[TaskLedger]:
    """The real worker's ledger of tasks (see :class:`TaskLedger`)."""
    from celery import signals

    ledger = TaskLedger(redis_client)
    signals.task_received.connect(ledger.received, weak=False)
    signals.task_postrun.connect(ledger.done, weak=False)
    yield ledger
    signals.task_received.disconnect(ledger.received)
    signals.task_postrun.disconnect(ledger.done)
