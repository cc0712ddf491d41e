"""call() over real HTTP against the sandbox: the envelope, the exception tree, secrets, moves."""

from __future__ import annotations

import pytest

from portals.bitrix.credentials import WebhookCredentials
from portals.bitrix.exceptions import (
    Bitrix24AuthError,
    Bitrix24BadRequest,
    Bitrix24NotFound,
    Bitrix24Overloaded,
    Bitrix24PortalMoved,
    Bitrix24PortalUnavailable,
    Bitrix24TransportError,
)
from tests.fixtures.client import TokenCredentials


def answers(sandbox, member_id: str) -> dict[str, int]:
    return sandbox.counters()["answers"]["by_portal"].get(member_id, {})


def test_a_call_returns_the_result_and_feeds_metrics(make_client, sandbox_portal) -> None:
    client = make_client()
    deal = client.call("crm.deal.get", {"id": 1})
    assert deal["ID"] == "1"
    page = client.call_raw("crm.deal.list", {"select": ["ID", "TITLE"], "order": {"ID": "ASC"}})
    assert [row["ID"] for row in page.result][:2] == ["1", "2"]
    assert "operating" in page.time
    totals = client.metrics.snapshot()[sandbox_portal.member_id]
    assert totals["calls"] == 2
    assert totals["latency_seconds"] > 0


def test_nested_params_reach_the_portal_intact(make_client) -> None:
    client = make_client()
    rows = client.call(
        "crm.deal.list", {"filter": {">ID": 3, "<=ID": 5}, "select": ["ID"], "order": {"ID": "DESC"}}
    )
    assert [r["ID"] for r in rows] == ["5", "4"]


def test_errors_map_by_code_first(make_client, sandbox, sandbox_portal) -> None:
    client = make_client()
    with pytest.raises(Bitrix24NotFound):
        client.call("crm.deal.get", {"id": 987654321})
    with pytest.raises(Bitrix24BadRequest) as unknown:
        client.call("crm.no.such.method")
    assert unknown.value.code == "ERROR_METHOD_NOT_FOUND"
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="overload", count=1)
    before = sandbox.counters()["requests"]["by_portal"].get(sandbox_portal.member_id, 0)
    with pytest.raises(Bitrix24Overloaded):  # 503 like QUERY_LIMIT_EXCEEDED, but never retried
        client.call("crm.deal.get", {"id": 1})
    assert sandbox.counters()["requests"]["by_portal"][sandbox_portal.member_id] == before + 1
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="deleted", count=1)
    with pytest.raises(Bitrix24PortalUnavailable):
        client.call("crm.deal.get", {"id": 1})


def test_a_revoked_token_fails_fast_without_refreshing(make_client, sandbox, sandbox_portal) -> None:
    creds = TokenCredentials(sandbox, sandbox_portal)
    client = make_client(creds)
    assert client.call("crm.deal.get", {"id": 2})["ID"] == "2"
    sandbox.control("tokens/revoke", member_id=sandbox_portal.member_id)
    with pytest.raises(Bitrix24AuthError) as refused:
        client.call("crm.deal.get", {"id": 2})
    assert refused.value.code.lower() in ("invalid_token", "no_auth_found")
    assert creds.refreshes == 0


def test_the_webhook_secret_never_appears_in_errors(make_client, sandbox, sandbox_portal) -> None:
    secret = sandbox_portal.webhook_url.rstrip("/").rsplit("/", 1)[-1]
    client = make_client(read_timeout=5)
    assert secret not in repr(client) and secret not in repr(client.credentials)
    sandbox.control("faults", member_id=sandbox_portal.member_id, kind="drop_after", count=10)
    with pytest.raises(Bitrix24TransportError) as lost:
        client.call("crm.deal.update", {"id": 1, "fields": {"TITLE": "x"}}, read=True)
    chain = [lost.value]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    assert all(secret not in str(e) for e in chain)


def test_a_renamed_portal_is_followed_when_the_credentials_accept(
    make_client, sandbox, sandbox_portal
) -> None:
    creds = TokenCredentials(sandbox, sandbox_portal)
    client = make_client(creds)
    moved = sandbox.control("portal/rename", member_id=sandbox_portal.member_id)
    deal = client.call("crm.deal.get", {"id": 3})
    assert deal["ID"] == "3"
    assert creds.moves == [moved["domain"]]
    webhook = make_client(WebhookCredentials(sandbox_portal.webhook_url, member_id=sandbox_portal.member_id))
    with pytest.raises(Bitrix24PortalMoved) as refused:
        webhook.call("crm.deal.get", {"id": 3})
    assert refused.value.new_domain == moved["domain"]
