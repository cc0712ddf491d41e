"""Shared fixtures: real Redis (own db index and key prefix) and a real Celery worker."""

from __future__ import annotations

import os

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

    def wipe() -> None:
        for key in client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}*", count=1000):
            client.delete(key)

    wipe()
    yield client
    wipe()
    client.close()


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
