"""The coordination backends' leases: held until released, or until a TTL passes without a renewal.

Both backends are built directly, so both are tested whatever the test settings choose; the
production one on the test Redis.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings

from bitrix_app.redis_client import redis_client as shared_redis
from portals.services.coordination import (
    AdvisoryLocks,
    Coordination,
    FileLocks,
    ProductionCoordination,
    SingleProcessCoordination,
    coordination,
)

ROOT = Path(__file__).resolve().parents[2]
TTL = 0.4

# A holder in a process of its own: takes the lease, says so, then waits to be killed.
HOLDER = """
import sys
from bitrix_app.redis_client import _client
from portals.services.coordination import AdvisoryLocks, ProductionCoordination
url, prefix, name, ttl = sys.argv[1:]
coord = ProductionCoordination(_client(url), prefix=prefix, locks=AdvisoryLocks(), batch_transactions=True)
print("holding" if coord.lease(name, ttl=float(ttl)) else "refused", flush=True)
sys.stdin.read()
"""


def production() -> Coordination:
    client = shared_redis()
    assert client is not None
    return ProductionCoordination(
        client, prefix=settings.REDIS_KEY_PREFIX, locks=AdvisoryLocks(), batch_transactions=True
    )


def single_process(tmp_path: Path) -> Coordination:
    return SingleProcessCoordination(locks=FileLocks(tmp_path / "db.sqlite3"), batch_transactions=False)


@pytest.fixture(params=["production", "single_process"])
def backend(request, redis_client, tmp_path) -> Coordination:
    return production() if request.param == "production" else single_process(tmp_path)


def test_a_lease_nobody_renews_is_lost_after_its_ttl(backend):
    holder = backend.lease("portal:1:slot", ttl=TTL)
    assert holder is not None
    assert backend.lease("portal:1:slot", ttl=TTL) is None  # held: refused at once
    time.sleep(TTL + 0.1)
    taker = backend.lease("portal:1:slot", ttl=TTL)
    assert taker is not None
    # The old holder finds it lost, and its late release leaves the new holder's lease alone.
    assert holder.renew() is False
    holder.release()
    assert backend.lease("portal:1:slot", ttl=TTL) is None
    taker.release()
    assert backend.lease("portal:1:slot", ttl=TTL) is not None


def test_a_renewed_lease_outlives_its_ttl_and_a_release_frees_it_at_once(backend):
    holder = backend.lease("portal:2:slot", ttl=TTL)
    assert holder is not None
    for _ in range(3):
        time.sleep(TTL / 2)
        assert holder.renew() is True
    assert backend.lease("portal:2:slot", ttl=TTL) is None  # 1.5 TTLs later, still held
    holder.release()
    assert backend.lease("portal:2:slot", ttl=TTL) is not None


def test_a_waiting_taker_gets_the_lease_when_the_holder_releases_it(backend):
    holder = backend.lease("portal:3:slot", ttl=10)
    assert holder is not None
    threading.Timer(0.2, holder.release).start()
    started = time.monotonic()
    assert backend.lease("portal:3:slot", ttl=10, wait=5) is not None
    assert time.monotonic() - started < 2  # not the holder's 10 s TTL


def test_a_dead_holders_lease_expires_after_its_ttl(redis_client):
    coord = production()
    args = [settings.REDIS_URL, settings.REDIS_KEY_PREFIX, "portal:4:slot", str(TTL)]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        assert coord.lease("portal:4:slot", ttl=TTL) is None
    finally:
        holder.kill()  # SIGKILL: no release, no more renewals
        holder.wait(timeout=10)
    assert coord.lease("portal:4:slot", ttl=TTL, wait=TTL + 1) is not None


def test_the_backend_follows_the_settings(settings, redis_client):
    assert isinstance(coordination(), ProductionCoordination)  # the tests' shape: Redis, PostgreSQL
    settings.REDIS_URL = ""
    chosen = coordination()
    assert isinstance(chosen, SingleProcessCoordination)
    assert chosen.batch_transactions  # PostgreSQL without Redis keeps its advisory locks and batches
    assert coordination() is chosen  # built once per configuration
