"""The operating-time ledger: paces only the method near its limit, shared through Redis."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings

from portals.bitrix.operating import DEFAULT_BLOCK_SECONDS, RESET_SLACK, OperatingLedger


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["local", "redis"])
def ledger_pair(request, redis_client: redis.Redis):
    clock = Clock()
    if request.param == "local":
        one = OperatingLedger(limit=480, headroom=30, clock=clock)
        return one, one, clock
    make = lambda: OperatingLedger(  # noqa: E731
        limit=480,
        headroom=30,
        redis=redis.Redis.from_url(settings.REDIS_URL),
        prefix=settings.REDIS_KEY_PREFIX,
        clock=clock,
    )
    return make(), make(), clock


def test_only_the_method_near_its_limit_waits(ledger_pair) -> None:
    writer, reader, clock = ledger_pair
    writer.record("m1", "app", "crm.deal.list", {"operating": 455.0, "operating_reset_at": clock.now + 42})
    writer.record("m1", "app", "crm.deal.get", {"operating": 100.0, "operating_reset_at": clock.now + 42})
    assert reader.delay("m1", "app", "CRM.DEAL.LIST") == pytest.approx(42 + RESET_SLACK)
    assert reader.delay("m1", "app", "crm.deal.get") == 0
    assert reader.delay("m1", "wh-other", "crm.deal.list") == 0  # another credential
    assert reader.delay("m2", "app", "crm.deal.list") == 0  # another portal
    clock.now += 43 + RESET_SLACK
    assert reader.delay("m1", "app", "crm.deal.list") == 0  # the oldest bucket expired


def test_below_the_headroom_nothing_waits(ledger_pair) -> None:
    writer, reader, clock = ledger_pair
    writer.record("m1", "app", "crm.deal.list", {"operating": 449.9, "operating_reset_at": clock.now + 42})
    assert reader.delay("m1", "app", "crm.deal.list") == 0


def test_a_refusal_blocks_until_the_known_reset_or_a_default(ledger_pair) -> None:
    writer, reader, clock = ledger_pair
    assert writer.blocked("m1", "app", "crm.deal.update") == pytest.approx(DEFAULT_BLOCK_SECONDS)
    assert reader.delay("m1", "app", "crm.deal.update") == pytest.approx(DEFAULT_BLOCK_SECONDS)
    writer.record("m1", "app", "crm.deal.add", {"operating": 1.0, "operating_reset_at": clock.now + 300})
    assert writer.blocked("m1", "app", "crm.deal.add") == pytest.approx(300 + RESET_SLACK)


def test_a_skewed_portal_clock_is_rebased_on_ours(ledger_pair) -> None:
    writer, reader, clock = ledger_pair
    portal_now = clock.now + 3600  # the portal runs an hour ahead
    writer.record(
        "m1",
        "app",
        "crm.deal.list",
        {"operating": 470.0, "operating_reset_at": portal_now + 25, "finish": portal_now},
    )
    assert reader.delay("m1", "app", "crm.deal.list") == pytest.approx(25 + RESET_SLACK)


def test_answers_without_operating_are_ignored(ledger_pair) -> None:
    writer, reader, clock = ledger_pair
    writer.record("m1", "app", "user.get", {"start": 1.0, "finish": 2.0})
    writer.record("m1", "app", "user.get", {"operating": "garbage"})
    assert reader.get("m1", "app", "user.get").operating == 0


def test_a_later_report_does_not_lift_a_block(ledger_pair) -> None:
    writer, reader, clock = ledger_pair
    waited = writer.blocked("m1", "app", "crm.deal.list")
    # Another process's answer for the same method arrives while the block stands.
    reader.record("m1", "app", "crm.deal.list", {"operating": 10.0, "operating_reset_at": clock.now + 5})
    assert writer.delay("m1", "app", "crm.deal.list") == pytest.approx(waited)
