"""The Django side: clients for stored portals (PortalCredentials) and webhooks, Redis or not."""

from __future__ import annotations

import pytest

from portals.bitrix.limiter import LocalLimiter, RedisLimiter
from portals.services.client import client_for_portal, client_for_webhook
from tests.fixtures.portals import sandbox_grants

pytestmark = pytest.mark.django_db


def test_a_stored_portal_calls_with_its_tokens_and_refreshes_once(
    install_portal, sandbox, redis_client
) -> None:
    portal = install_portal(1)
    # The install's own requests: its refresh token's proof, and user.admin.
    grants = sandbox_grants(sandbox, portal.member_id)
    answered = sandbox.counters()["answers"]["by_portal"][portal.member_id]["OK"]
    client = client_for_portal(member_id=portal.member_id)
    assert client.bucket_key == portal.member_id
    assert isinstance(client.limiter, RedisLimiter)
    assert client.call("crm.deal.get", {"id": 1})["ID"] == "1"
    sandbox.control("clock", advance=3700)  # the portal now sees the stored token as expired
    assert client.call("crm.deal.get", {"id": 2})["ID"] == "2"
    assert sandbox_grants(sandbox, portal.member_id) == grants + 1
    answers = sandbox.counters()["answers"]["by_portal"][portal.member_id]
    assert answers["expired_token"] == 1 and answers["OK"] == answered + 2
    totals = client.metrics.redis_snapshot(portal.member_id)
    assert totals["calls"] >= 2 and totals["errors:expired_token"] >= 1


def test_a_webhook_shares_its_portals_bucket(install_portal, sandbox, redis_client) -> None:
    portal = install_portal(1)
    portal.plan = "enterprise"
    portal.save(update_fields=["plan"])
    url = sandbox.control("webhook", member_id=portal.member_id)["url"]
    client = client_for_webhook(url=url)
    assert client.bucket_key == portal.member_id  # not the domain: one bucket per portal
    assert (client.bucket.rate, client.bucket.capacity) == (5.0, 250.0)
    assert client.call("crm.deal.get", {"id": 3})["ID"] == "3"


def test_an_unknown_webhook_domain_gets_its_own_bucket(portals_sandbox, redis_client) -> None:
    # Nothing installed: the webhook's portal is unknown here, so its domain names the bucket.
    url = portals_sandbox.control("webhook", member_id=portals_sandbox.portal(1)["member_id"])["url"]
    client = client_for_webhook(url=url)
    assert client.bucket_key == url.split("/")[2]
    assert (client.bucket.rate, client.bucket.capacity) == (2.0, 50.0)


def test_without_redis_the_limiter_is_in_process(portals_sandbox, settings, monkeypatch) -> None:
    settings.REDIS_URL = ""
    url = portals_sandbox.control("webhook", member_id=portals_sandbox.portal(1)["member_id"])["url"]
    monkeypatch.setenv("BITRIX24_WEBHOOK_URL", url)
    client = client_for_webhook()
    assert isinstance(client.limiter, LocalLimiter)
    assert client.ledger.redis is None and client.metrics.redis is None
    assert client.call("crm.deal.get", {"id": 1})["ID"] == "1"
