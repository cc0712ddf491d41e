"""The client across a token refresh, under both refresh behaviours (tests/client/conftest.py), and
its reading of 401 and 403 refusals: by the error code first, so a scope or credentials refusal is
never taken for an expired token, whichever status a portal sends it with."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from portals.bitrix.credentials import WebhookCredentials
from portals.bitrix.exceptions import (
    Bitrix24AccessDenied,
    Bitrix24AuthError,
    Bitrix24InvalidToken,
    Bitrix24TokenExpired,
    error_from_payload,
)
from portals.services.client import client_for_portal
from tests.fixtures.client import TokenCredentials
from tests.fixtures.portals import sandbox_grants

CALLERS = 8


def reuse(sandbox, member_id: str) -> int:
    return int(sandbox.counters()["refresh_token_reuse"]["by_portal"].get(member_id, 0))


def by_code(sandbox, member_id: str) -> dict[str, int]:
    return dict(sandbox.counters()["answers"]["by_portal"].get(member_id, {}))


def test_an_expired_token_is_refreshed_once_and_the_call_goes_through(
    make_client, sandbox, sandbox_portal, refresh_revokes_access
) -> None:
    credentials = TokenCredentials(sandbox, sandbox_portal)
    client = make_client(credentials)
    old = credentials.token
    sandbox.control("clock", advance=3601)
    assert client.call("profile")["ID"]
    assert credentials.refreshes == 1 and credentials.token != old
    assert client.call("crm.deal.get", {"id": 1})["ID"] == "1"
    assert credentials.refreshes == 1
    assert reuse(sandbox, sandbox_portal.member_id) == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_callers_lose_no_call_and_burn_no_refresh_token(
    install_portal, portals_sandbox, refresh_revokes_access
) -> None:
    """Eight callers find the token expired at once (the portal's clock runs ahead): one refresh
    grant, every call answered without the caller retrying, no refresh token used twice. Where the
    rotation kills the old token, requests in flight with it are refused and retried by the client
    with the stored pair; where it lives on, nothing is refused."""
    portal = install_portal(1)
    before = sandbox_grants(portals_sandbox, portal.member_id)
    portals_sandbox.control("clock", offset=3700)
    barrier = threading.Barrier(CALLERS)
    answers: list[str] = []
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            client = client_for_portal(member_id=portal.member_id)
            barrier.wait(timeout=30)
            answers.append(client.call("profile")["ID"])
            answers.append(client.call("crm.deal.get", {"id": 1})["ID"])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    assert len(answers) == 2 * CALLERS
    assert sandbox_grants(portals_sandbox, portal.member_id) - before == 1
    assert reuse(portals_sandbox, portal.member_id) == 0
    if not refresh_revokes_access:
        assert by_code(portals_sandbox, portal.member_id).get("invalid_token", 0) == 0


@pytest.mark.parametrize("status", [401, 403])
def test_refusals_are_classified_by_code_whatever_the_status(status: int) -> None:
    for code in ("insufficient_scope", "INVALID_CREDENTIALS", "ACCESS_DENIED", "WRONG_AUTH_TYPE"):
        error = error_from_payload({"error": code, "error_description": "x"}, status=status)
        assert isinstance(error, Bitrix24AccessDenied) and not isinstance(error, Bitrix24AuthError), code
    assert isinstance(error_from_payload({"error": "expired_token"}, status=status), Bitrix24TokenExpired)
    assert isinstance(error_from_payload({"error": "invalid_token"}, status=status), Bitrix24InvalidToken)
    unknown = error_from_payload({"error": "SOMETHING_NEW"}, status=status)
    assert isinstance(unknown, Bitrix24AuthError if status == 401 else Bitrix24AccessDenied)


def test_a_scope_refusal_is_not_retried_and_refreshes_nothing(make_client, sandbox, sandbox_portal) -> None:
    sandbox.control("app/install", member_id=sandbox_portal.member_id, scope=["user", "placement"])
    credentials = TokenCredentials(sandbox, sandbox_portal)
    client = make_client(credentials)
    requests_before = sandbox.counters()["requests"]["by_portal"].get(sandbox_portal.member_id, 0)
    with pytest.raises(Bitrix24AccessDenied) as refused:
        client.call("crm.deal.get", {"id": 1})
    assert refused.value.status == 403 and refused.value.code == "insufficient_scope"
    assert credentials.refreshes == 0
    assert sandbox.counters()["requests"]["by_portal"][sandbox_portal.member_id] == requests_before + 1


def test_wrong_webhook_secret_and_missing_scope_are_403_access_denied(
    make_client, sandbox, sandbox_portal
) -> None:
    wrong = sandbox_portal.webhook_url.rstrip("/").rsplit("/", 1)[0] + "/0000000000000000/"
    with pytest.raises(Bitrix24AccessDenied) as credentials:
        make_client(WebhookCredentials(wrong, member_id=sandbox_portal.member_id)).call("profile")
    assert credentials.value.status == 403 and credentials.value.code == "INVALID_CREDENTIALS"
    limited = sandbox.control("webhook", member_id=sandbox_portal.member_id, scope=["user"])["url"]
    with pytest.raises(Bitrix24AccessDenied) as scope:
        make_client(WebhookCredentials(limited, member_id=sandbox_portal.member_id)).call("crm.deal.list")
    assert scope.value.status == 403 and scope.value.code == "insufficient_scope"
