"""The one backoff policy (portals.bitrix.retry): its bounds (property-tested) and who uses it how."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.services.replay import retry_delay
from portals.bitrix.client import RetryPolicy
from portals.bitrix.oauth import CONNECT_BACKOFF
from portals.bitrix.retry import Backoff

bases = st.floats(min_value=0, max_value=100, allow_nan=False)
caps = st.floats(min_value=0, max_value=10_000, allow_nan=False)
jitters = st.sampled_from(["full", "equal"])
attempts = st.integers(min_value=0, max_value=3000)
seeds = st.integers(min_value=0, max_value=2**32)


@given(bases, caps, jitters, attempts, seeds)
def test_a_delay_is_within_zero_and_its_ceiling(base, cap, jitter, attempt, seed) -> None:
    policy = Backoff(base=base, cap=cap, jitter=jitter)
    delay = policy.delay(attempt, rng=random.Random(seed))
    ceiling = policy.ceiling(attempt)
    assert 0 <= delay <= ceiling <= cap
    if jitter == "equal":
        assert delay >= ceiling / 2


@given(bases, caps, st.integers(min_value=0, max_value=3000))
def test_the_ceiling_grows_exponentially_up_to_the_cap(base, cap, attempt) -> None:
    policy = Backoff(base=base, cap=cap)
    assert policy.ceiling(attempt) <= policy.ceiling(attempt + 1) <= cap
    if attempt < 60:
        assert policy.ceiling(attempt) == pytest.approx(min(cap, base * 2**attempt))


@given(
    bases,
    caps,
    jitters,
    attempts,
    st.floats(min_value=0, max_value=100_000, allow_nan=False),
    seeds,
)
def test_retry_after_is_a_floor_capped_at_the_cap(base, cap, jitter, attempt, retry_after, seed) -> None:
    policy = Backoff(base=base, cap=cap, jitter=jitter)
    delay = policy.delay(attempt, retry_after=retry_after, rng=random.Random(seed))
    assert min(retry_after, cap) <= delay <= cap


@pytest.mark.parametrize("retry_after", [None, -5.0, math.nan, math.inf])
def test_an_unusable_retry_after_is_ignored(retry_after) -> None:
    policy = Backoff(base=1, cap=100)
    expected = policy.delay(3, rng=random.Random(7))
    assert policy.delay(3, retry_after=retry_after, rng=random.Random(7)) == expected


@given(bases, caps, jitters, st.integers(min_value=0, max_value=40), seeds)
def test_delays_are_one_per_retry_each_within_its_ceiling(base, cap, jitter, n, seed) -> None:
    policy = Backoff(base=base, cap=cap, jitter=jitter)
    waits = policy.delays(n, rng=random.Random(seed))
    assert len(waits) == n
    assert all(0 <= w <= policy.ceiling(i) for i, w in enumerate(waits))
    assert waits == policy.delays(n, rng=random.Random(seed))  # the rng alone decides the jitter


def spread(policy: Backoff, attempt: int) -> tuple[float, float]:
    """Lowest and highest of many delays, as fractions of the ceiling."""
    rng = random.Random(12345)
    samples = [policy.delay(attempt, rng=rng) / policy.ceiling(attempt) for _ in range(500)]
    return min(samples), max(samples)


def test_full_jitter_spans_the_whole_range_and_equal_jitter_the_upper_half() -> None:
    low, high = spread(Backoff(base=1, cap=100, jitter="full"), 4)
    assert low < 0.05 and high > 0.95
    low, high = spread(Backoff(base=1, cap=100, jitter="equal"), 4)
    assert 0.5 <= low < 0.55 and high > 0.95


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": -1, "cap": 1},
        {"base": 1, "cap": math.inf},
        {"base": math.nan, "cap": 1},
        {"base": 1, "cap": 1, "jitter": "half"},
    ],
)
def test_an_impossible_policy_is_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_a_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(base=1, cap=10).delay(-1)


def test_the_client_backs_off_with_full_jitter_up_to_30_seconds() -> None:
    backoff = RetryPolicy().backoff
    assert (backoff.base, backoff.cap, backoff.jitter) == (0.5, 30.0, "full")
    low, high = spread(backoff, 3)
    assert low < 0.05 and high > 0.95


def test_a_refused_oauth_connection_backs_off_with_full_jitter() -> None:
    assert (CONNECT_BACKOFF.base, CONNECT_BACKOFF.cap, CONNECT_BACKOFF.jitter) == (0.5, 8.0, "full")


def test_event_retries_wait_half_to_all_of_the_capped_exponential(settings) -> None:
    settings.BITRIX24_EVENT_RETRY_BASE_SECONDS = 10.0
    settings.BITRIX24_EVENT_RETRY_MAX_SECONDS = 900.0
    rng = random.Random(3)
    for attempt, ceiling in [(1, 10.0), (2, 20.0), (4, 80.0), (7, 640.0), (8, 900.0), (30, 900.0)]:
        waits = [retry_delay(attempt, rng=rng) for _ in range(200)]
        assert ceiling / 2 <= min(waits) < ceiling * 0.55
        assert ceiling * 0.95 < max(waits) <= ceiling
