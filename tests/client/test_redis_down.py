"""Redis down: REST calls fail with our own exception naming Redis, and nothing reaches Bitrix24.

Real refused connections: the clients point at a loopback port where nothing listens.
"""

from __future__ import annotations

import socket

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from bitrix_app.redis_client import redis_client
from portals.bitrix.client import Bitrix24Client
from portals.bitrix.credentials import WebhookCredentials
from portals.bitrix.exceptions import Bitrix24TransportError
from portals.bitrix.limiter import PLANS, RedisLimiter, SharedStateUnavailable
from portals.bitrix.metrics import Metrics
from portals.bitrix.operating import OperatingLedger
from portals.bitrix.transport import Transport, TransportConfig

pytestmark = pytest.mark.django_db


@pytest.fixture
def dead_redis_url() -> str:
    """A Redis URL on a loopback port that refuses connections (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def requests_seen(sandbox) -> int:
    return int(sandbox.counters()["requests"]["total"])


def test_a_call_fails_with_an_error_naming_redis_and_sends_nothing(sandbox, sandbox_portal, dead_redis_url):
    conn = redis.Redis.from_url(dead_redis_url, socket_connect_timeout=1)
    client = Bitrix24Client(
        WebhookCredentials(sandbox_portal.webhook_url, member_id=sandbox_portal.member_id),
        transport=Transport(TransportConfig(ca_bundle=sandbox_portal.ca_bundle)),
        limiter=RedisLimiter(conn),
        ledger=OperatingLedger(redis=conn),
        metrics=Metrics(redis=conn),
    )
    before = requests_seen(sandbox)
    with pytest.raises(SharedStateUnavailable) as failed:
        client.call("crm.deal.get", {"id": 1})
    error = failed.value
    assert isinstance(error, Bitrix24TransportError) and error.sent is False  # never sent: retry later
    assert "Redis" in str(error)
    assert isinstance(error.__cause__, redis.exceptions.ConnectionError)
    assert requests_seen(sandbox) == before


def test_the_limiter_alone_raises_it_too(dead_redis_url):
    limiter = RedisLimiter(redis.Redis.from_url(dead_redis_url))
    for use in (
        lambda: limiter.reserve("portal", PLANS["standard"]),
        lambda: limiter.refused("portal", PLANS["standard"]),
        lambda: limiter.level("portal", PLANS["standard"]),
    ):
        with pytest.raises(SharedStateUnavailable, match="Redis unavailable for the rate limiter"):
            use()


def test_the_app_built_client_raises_it(settings, sandbox, sandbox_portal, dead_redis_url):
    # As every web process, worker and command builds it (portals.services.client), REDIS_URL down.
    from portals.services.client import client_for_webhook

    settings.REDIS_URL = dead_redis_url
    settings.BITRIX24_CA_BUNDLE = sandbox_portal.ca_bundle
    client = client_for_webhook(url=sandbox_portal.webhook_url)
    with pytest.raises(SharedStateUnavailable, match="Redis"):
        client.call("crm.deal.get", {"id": 1})


def test_an_unreadable_redis_url_is_a_configuration_error() -> None:
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        redis_client("redis//:password@localhost")
