"""Several real processes on one portal through one Redis bucket: Bitrix24 never refuses them.

The sandbox runs a fast bucket (10/s, burst 8) so the test stays short; the client is told the
same parameters, as it would read the portal's plan.
"""

from __future__ import annotations

import multiprocessing
import time

import pytest
import redis
from django.conf import settings

from portals.bitrix.client import Bitrix24Client
from portals.bitrix.credentials import WebhookCredentials
from portals.bitrix.exceptions import Bitrix24RateLimited
from portals.bitrix.limiter import BucketParams, LocalLimiter, RedisLimiter
from portals.bitrix.operating import OperatingLedger
from portals.bitrix.transport import Transport, TransportConfig

RATE, BURST = 10.0, 8


def _worker(
    url: str, member_id: str, ca: str, redis_url: str, prefix: str, shared: bool, calls: int, out, start
) -> None:
    conn = redis.Redis.from_url(redis_url)
    limiter = RedisLimiter(conn, prefix=prefix) if shared else LocalLimiter()
    client = Bitrix24Client(
        WebhookCredentials(url, member_id=member_id),
        transport=Transport(TransportConfig(ca_bundle=ca)),
        limiter=limiter,
        ledger=OperatingLedger(redis=conn, prefix=prefix),
        bucket=BucketParams(RATE, BURST),
        concurrency=4,
    )
    # Every process starts calling at the same moment (their imports take uneven time), so the
    # load really overlaps.
    start.wait(timeout=60)
    # Half single calls, half batches: a batch is one request to the bucket. A call refused more
    # often than the client retries counts as not done (the control experiment may see that); the
    # process always reports, so the test never waits for a process that gave up.
    done = 0
    try:
        for i in range(calls // 2):
            client.call("crm.deal.get", {"id": 1 + i % 20})
            done += 1
        result = client.batch([("crm.deal.get", {"id": 1 + i}) for i in range(calls - calls // 2)])
        done += sum(1 for r in result.values() if r.ok)
    except Bitrix24RateLimited:
        pass
    finally:
        out.put(done)


def run(sandbox, portal, *, shared: bool, processes: int, calls: int) -> tuple[int, dict[str, int]]:
    """(calls done, the sandbox's answers for the portal) after ``processes`` processes ran."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start = ctx.Barrier(processes)
    args = (
        portal.webhook_url,
        portal.member_id,
        portal.ca_bundle,
        settings.REDIS_URL,
        settings.REDIS_KEY_PREFIX,
    )
    workers = [ctx.Process(target=_worker, args=(*args, shared, calls, out, start)) for _ in range(processes)]
    for w in workers:
        w.start()
    done = [out.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=10)
    return sum(done), sandbox.counters()["answers"]["by_portal"][portal.member_id]


@pytest.fixture
def fast_bucket(sandbox):
    sandbox.control("config", drain=RATE, burst=BURST)
    yield
    sandbox.control("config", drain=None, burst=None)


@pytest.mark.slow
def test_processes_sharing_the_redis_bucket_are_never_refused(
    sandbox, sandbox_portal, fast_bucket, redis_client
):
    started = time.monotonic()
    done, answers = run(sandbox, sandbox_portal, shared=True, processes=3, calls=30)
    assert done == 3 * 30
    assert answers.get("QUERY_LIMIT_EXCEEDED", 0) == 0
    assert answers["OK"] >= 3 * 16  # 15 single calls + 1 batch per process, all answered
    assert time.monotonic() - started < 120


@pytest.mark.slow
def test_without_the_shared_bucket_the_same_load_is_refused(
    sandbox, sandbox_portal, fast_bucket, redis_client
):
    # The control experiment: per-process buckets each believe they own the burst.
    _done, answers = run(sandbox, sandbox_portal, shared=False, processes=3, calls=30)
    assert answers.get("QUERY_LIMIT_EXCEEDED", 0) > 0
