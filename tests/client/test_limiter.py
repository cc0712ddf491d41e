"""The leaky bucket: its math (property-tested) and the Redis bucket shared by real processes."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import redis
from django.conf import settings
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from portals.bitrix.limiter import BucketParams, LocalLimiter, RedisLimiter, plan_params, reserve


def server_refusals(send_times: list[float], *, rate: float, capacity: float) -> int:
    """Bitrix24's side of the bucket, as documented: +1 per request, refuse past capacity."""
    level, last, refused = 0.0, None, 0
    for t in sorted(send_times):
        if last is not None:
            level = max(0.0, level - (t - last) * rate)
        last = t
        if level + 1 > capacity + 1e-9:
            refused += 1
        else:
            level += 1
    return refused


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


arrivals = st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), min_size=1, max_size=300)
buckets = st.sampled_from(
    [BucketParams(2, 50), BucketParams(5, 250), BucketParams(3.5, 7), BucketParams(1, 1)]
)


@given(arrivals=arrivals, params=buckets)
@hsettings(max_examples=200, deadline=None)
def test_reservations_never_overflow_the_server_bucket(arrivals: list[float], params: BucketParams) -> None:
    clock = FakeClock()
    limiter = LocalLimiter(headroom=0, clock=clock)
    sends = []
    for t in sorted(arrivals):
        clock.now = 1000.0 + t
        sends.append(clock.now + limiter.reserve("p", params))
    assert server_refusals(sends, rate=params.rate, capacity=params.capacity) == 0


@given(n=st.integers(min_value=1, max_value=600), params=buckets)
@hsettings(max_examples=100, deadline=None)
def test_a_burst_from_empty_waits_exactly_for_the_drain(n: int, params: BucketParams) -> None:
    level, last, waits = 0.0, 0.0, []
    for _ in range(n):
        level, wait = reserve(level, last, 0.0, rate=params.rate, capacity=params.capacity)
        waits.append(wait)
    # Request k (1-based) may go as soon as the bucket has room for it, not later.
    for k, wait in enumerate(waits, start=1):
        assert wait == pytest.approx(max(0.0, (k - params.capacity) / params.rate))


@given(
    gap=st.floats(min_value=0, max_value=1000, allow_nan=False), start=st.floats(min_value=0, max_value=500)
)
def test_the_level_drains_and_never_goes_negative(gap: float, start: float) -> None:
    level, wait = reserve(start, 0.0, gap, rate=2.0, capacity=50.0)
    assert level == pytest.approx(max(0.0, start - gap * 2.0) + 1)
    assert wait == pytest.approx(max(0.0, (level - 50.0) / 2.0))


def test_plans_match_the_documented_buckets() -> None:
    assert plan_params("standard") == BucketParams(2.0, 50.0)
    assert plan_params("ENTERPRISE") == BucketParams(5.0, 250.0)
    assert plan_params("nfr-unknown") == BucketParams(2.0, 50.0)


def test_refused_marks_the_bucket_full() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(headroom=0, clock=clock)
    params = BucketParams(2.0, 50.0)
    assert limiter.reserve("p", params) == 0
    limiter.refused("p", params)
    assert limiter.reserve("p", params) == pytest.approx(0.5)  # one slot past a full bucket
    assert limiter.reserve("other", params) == 0  # buckets are per portal


def test_redis_bucket_is_shared_between_limiter_instances(redis_client: redis.Redis) -> None:
    params = BucketParams(rate=1.0, capacity=3.0)
    a = RedisLimiter(redis_client, prefix=settings.REDIS_KEY_PREFIX, headroom=0)
    b = RedisLimiter(redis.Redis.from_url(settings.REDIS_URL), prefix=settings.REDIS_KEY_PREFIX, headroom=0)
    waits = [a.reserve("portal-x", params), b.reserve("portal-x", params), a.reserve("portal-x", params)]
    assert waits == [0.0, 0.0, 0.0]
    # One slot drains per second; the time the three reservations above took is already drained.
    assert 0.8 <= b.reserve("portal-x", params) <= 1.0
    assert a.reserve("portal-y", params) == 0.0
    assert a.level("portal-x", params) == pytest.approx(4.0, abs=0.05)
    b.refused("portal-y", params)
    assert a.reserve("portal-y", params) == pytest.approx(1.0, abs=0.05)
    ttl = redis_client.pttl(a.key("portal-x"))
    assert 0 < ttl <= (4 / 1.0 + 60) * 1000  # keys expire once drained: idle portals cost nothing


def _hammer(url: str, prefix: str, rate: float, capacity: float, n: int, out: multiprocessing.Queue) -> None:
    limiter = RedisLimiter(redis.Redis.from_url(url), prefix=prefix, headroom=1)
    params = BucketParams(rate, capacity)
    sends, waited = [], 0.0
    for _ in range(n):
        wait = limiter.reserve("shared-portal", params)
        waited += wait
        time.sleep(wait)
        sends.append(time.time())
    out.put((sends, waited))


@pytest.mark.slow
def test_processes_sharing_redis_never_overflow_the_bucket(redis_client: redis.Redis) -> None:
    rate, capacity, per_process, processes = 40.0, 10.0, 25, 4
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    workers = [
        ctx.Process(
            target=_hammer,
            args=(settings.REDIS_URL, settings.REDIS_KEY_PREFIX, rate, capacity, per_process, out),
        )
        for _ in range(processes)
    ]
    for w in workers:
        w.start()
    results = [out.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=10)
    sends = [t for s, _ in results for t in s]
    assert len(sends) == processes * per_process
    assert server_refusals(sends, rate=rate, capacity=capacity) == 0
    # Without the shared bucket each process would fit its 25 requests in its own burst; the
    # shared one made them queue behind each other.
    assert sum(w for _, w in results) > 0
