"""Every retry rule, driven by the sandbox's faults over real HTTP."""

from __future__ import annotations

import pytest

from portals.bitrix.client import RetryPolicy
from portals.bitrix.exceptions import (
    Bitrix24RateLimited,
    Bitrix24TokenExpired,
    Bitrix24TransportError,
    Bitrix24WriteOutcomeUnknown,
)
from portals.bitrix.operating import DEFAULT_BLOCK_SECONDS
from tests.fixtures.client import RecordingSleep, TokenCredentials


def by_code(sandbox, member_id: str) -> dict[str, int]:
    return sandbox.counters()["answers"]["by_portal"].get(member_id, {})


def test_query_limit_waits_and_retries(make_client, sandbox, sandbox_portal) -> None:
    sleep = RecordingSleep(cap=0.6)
    client = make_client(sleep=sleep)
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="query_limit", count=2)
    assert client.call("crm.deal.get", {"id": 4})["ID"] == "4"
    answers = by_code(sandbox, sandbox_portal.member_id)
    assert answers["QUERY_LIMIT_EXCEEDED"] == 2 and answers["OK"] == 1
    # The refusal marked our bucket full: the retries waited for a drained slot.
    assert sum(sleep.calls) >= 2 * (1 / client.bucket.rate) - 0.05
    assert client.metrics.snapshot()[sandbox_portal.member_id]["retries:query_limit"] == 2


def test_query_limit_retries_are_bounded(make_client, sandbox, sandbox_portal) -> None:
    client = make_client(sleep=RecordingSleep(cap=0), retry=RetryPolicy(rate_limit_attempts=2))
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="query_limit", count=10)
    with pytest.raises(Bitrix24RateLimited):
        client.call("crm.deal.get", {"id": 4})
    assert by_code(sandbox, sandbox_portal.member_id)["QUERY_LIMIT_EXCEEDED"] == 3


def test_operation_time_limit_blocks_the_method_then_retries(make_client, sandbox, sandbox_portal) -> None:
    sleep = RecordingSleep(cap=0.2)
    client = make_client(sleep=sleep)
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="operation_limit", count=1)
    assert client.call("crm.deal.get", {"id": 5})["ID"] == "5"
    # No reset known for this method yet: the documented minimum wait.
    assert max(sleep.calls) == pytest.approx(DEFAULT_BLOCK_SECONDS, abs=0.5)
    assert by_code(sandbox, sandbox_portal.member_id)["OPERATION_TIME_LIMIT"] == 1


def test_expired_token_refreshes_once_and_retries(make_client, sandbox, sandbox_portal) -> None:
    creds = TokenCredentials(sandbox, sandbox_portal)
    client = make_client(creds)
    assert client.call("crm.deal.get", {"id": 6})["ID"] == "6"
    sandbox.control("clock", advance=3700)  # past the access token's hour
    assert client.call("crm.deal.get", {"id": 6})["ID"] == "6"
    assert creds.refreshes == 1
    assert by_code(sandbox, sandbox_portal.member_id)["expired_token"] == 1


class ExpiringAgain(TokenCredentials):
    """Real refresh grants, but the portal's clock jumps past each new token's hour right after."""

    def refresh(self, stale_token: str | None) -> None:
        super().refresh(stale_token)
        self.sandbox.control("clock", advance=3700)


def test_expired_token_is_refreshed_only_once(make_client, sandbox, sandbox_portal) -> None:
    creds = ExpiringAgain(sandbox, sandbox_portal)
    client = make_client(creds)
    sandbox.control("clock", advance=3700)
    with pytest.raises(Bitrix24TokenExpired):
        client.call("crm.deal.get", {"id": 6})
    assert creds.refreshes == 1
    assert by_code(sandbox, sandbox_portal.member_id)["expired_token"] == 2


def test_a_lost_read_is_retried_with_backoff(make_client, sandbox, sandbox_portal) -> None:
    sleep = RecordingSleep(cap=0.05)
    client = make_client(sleep=sleep)
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="drop_after", count=2)
    assert client.call("crm.deal.get", {"id": 7})["ID"] == "7"
    assert len([s for s in sleep.calls if s > 0]) >= 2
    assert sandbox.counters()["dropped"][sandbox_portal.member_id] == 2


def test_a_write_whose_outcome_is_unknown_is_not_resent(make_client, sandbox, sandbox_portal) -> None:
    client = make_client(sleep=RecordingSleep(cap=0))
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="drop_after", count=1)
    with pytest.raises(Bitrix24WriteOutcomeUnknown) as unknown:
        client.call("crm.deal.add", {"fields": {"TITLE": "exactly once"}})
    assert isinstance(unknown.value.cause, Bitrix24TransportError)
    # The add ran once (the answer was lost) and was never sent again.
    assert sandbox.counters()["writes"][sandbox_portal.member_id]["crm.deal.add"] == 1
    found = client.call("crm.deal.list", {"filter": {"TITLE": "exactly once"}, "select": ["ID"]})
    assert len(found) == 1


def test_a_write_refused_before_running_is_retried(make_client, sandbox, sandbox_portal) -> None:
    client = make_client(sleep=RecordingSleep(cap=0.6))
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="query_limit", count=1)
    new_id = client.call("crm.deal.add", {"fields": {"TITLE": "after a 503"}})
    assert int(new_id) > 0
    assert sandbox.counters()["writes"][sandbox_portal.member_id]["crm.deal.add"] == 1


def test_transient_retries_are_bounded(make_client, sandbox, sandbox_portal) -> None:
    client = make_client(sleep=RecordingSleep(cap=0), retry=RetryPolicy(transient_attempts=2))
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="drop_before", count=10)
    with pytest.raises(Bitrix24TransportError):
        client.call("crm.deal.get", {"id": 1})
    assert sandbox.counters()["dropped"][sandbox_portal.member_id] == 3


def test_a_timeout_on_a_read_is_retried(make_client, sandbox, sandbox_portal) -> None:
    client = make_client(sleep=RecordingSleep(cap=0), read_timeout=0.5)
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="latency", seconds=1.5, count=1)
    assert client.call("crm.deal.get", {"id": 8})["ID"] == "8"
    assert client.metrics.snapshot()[sandbox_portal.member_id]["errors:Bitrix24Timeout"] == 1
