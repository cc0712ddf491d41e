"""Shared fixtures: real Redis (own db index and key prefix) and a real Celery worker."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings

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
