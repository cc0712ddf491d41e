"""16 concurrent callers on an expired token → exactly one refresh grant (counted by the sandbox)."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
from django.db import connection, connections

from portals.bitrix.exceptions import Bitrix24InvalidToken
from portals.models import Portal
from portals.services.client import client_for_portal
from portals.services.credentials import PortalCredentials
from tests.fixtures.portals import expire_access_token, sandbox_grants

pytestmark = pytest.mark.django_db(transaction=True)

CALLERS = 16


def test_sixteen_threads_one_refresh(install_portal, portals_sandbox):
    portal = install_portal(1)
    stale = expire_access_token(portal)
    before = sandbox_grants(portals_sandbox, portal.member_id)
    barrier = threading.Barrier(CALLERS)
    tokens: list[str] = []
    errors: list[BaseException] = []

    def caller(index: int) -> None:
        try:
            credentials = PortalCredentials(portal.pk)
            barrier.wait(timeout=30)
            if index % 2:  # half were refused with expired_token, half check expiry before a call
                credentials.refresh(stale)
                tokens.append(credentials.portal.access_token)
            else:
                tokens.append(credentials.access_token() or "")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    assert sandbox_grants(portals_sandbox, portal.member_id) - before == 1
    assert len(tokens) == CALLERS and len(set(tokens)) == 1
    assert tokens[0] != stale
    assert Portal.objects.get(pk=portal.pk).access_token == tokens[0]
    reuse = portals_sandbox.counters()["refresh_token_reuse"]["by_portal"].get(portal.member_id, 0)
    assert reuse == 0


def _process_caller(portal_id: int, stale: str, barrier, results) -> None:
    connections.close_all()  # never share the parent's database socket
    try:
        credentials = PortalCredentials(portal_id)
        barrier.wait(timeout=60)
        credentials.refresh(stale)
        results.put(("ok", credentials.portal.access_token))
    except BaseException as e:  # noqa: BLE001
        results.put(("error", repr(e)))
    finally:
        connections.close_all()


def test_sixteen_processes_one_refresh(install_portal, portals_sandbox):
    portal = install_portal(2)
    stale = expire_access_token(portal)
    before = sandbox_grants(portals_sandbox, portal.member_id)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(CALLERS)
    results = context.Queue()
    connections.close_all()
    args = (portal.pk, stale, barrier, results)
    processes = [context.Process(target=_process_caller, args=args) for _ in range(CALLERS)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    assert [o for o in outcomes if o[0] != "ok"] == []
    assert sandbox_grants(portals_sandbox, portal.member_id) - before == 1
    assert len({token for _, token in outcomes}) == 1
    assert Portal.objects.get(pk=portal.pk).access_token == outcomes[0][1]


def test_expired_token_answer_from_the_portal_refreshes_once(install_portal, portals_sandbox):
    """The real path: calls get 401 expired_token from the portal, the client asks the credentials."""
    portal = install_portal(3)
    before = sandbox_grants(portals_sandbox, portal.member_id)
    # The portal's clock runs ahead: our stored expiry looks fine, the portal says expired_token.
    portals_sandbox.control("clock", offset=3700)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []
    rotated_in_flight: list[int] = []

    def caller() -> None:
        try:
            client = client_for_portal(member_id=portal.member_id)
            barrier.wait(timeout=30)
            try:
                client.call("profile")
            except Bitrix24InvalidToken:
                # This request left with the old token after another caller's refresh killed it
                # (Bitrix24 invalidates the old pair). The credentials read the row afresh, so
                # trying again uses the new pair without another grant.
                rotated_in_flight.append(1)
                client.call("profile")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sandbox_grants(portals_sandbox, portal.member_id) - before == 1


def test_holder_of_a_rotated_token_reloads_instead_of_refreshing(install_portal, portals_sandbox):
    from django.utils import timezone

    from portals.services.tokens import RefreshWhen, portal_tokens_refresh

    portal = install_portal(1)
    credentials = PortalCredentials(portal.pk)
    old = credentials.access_token()
    # A keep-alive elsewhere rotates the pair while this holder still has the old token.
    portal_tokens_refresh(
        portal_id=portal.pk, when=RefreshWhen(issued_before=timezone.now()), reason="keepalive"
    )
    grants = sandbox_grants(portals_sandbox, portal.member_id)

    credentials.refresh(old)  # the old token was refused: the store already has a newer one
    assert sandbox_grants(portals_sandbox, portal.member_id) == grants
    new = credentials.access_token()
    assert new != old
    client = client_for_portal(member_id=portal.member_id)
    assert client.call("profile")["ID"]


class _HeldOldToken(PortalCredentials):
    """Credentials whose first read returns a token captured before another process rotated it."""

    _held: str | None = None

    def hold(self, token: str) -> None:
        self._held = token

    def access_token(self) -> str | None:
        held, self._held = self._held, None
        return held if held is not None else super().access_token()


def test_request_sent_with_a_rotated_token_is_retried_with_the_stored_one(install_portal, portals_sandbox):
    from django.utils import timezone

    from portals.services.shared_client import client_for_credentials
    from portals.services.tokens import RefreshWhen, portal_tokens_refresh

    # The rotation must kill the old access token for the request to be refused (the sandbox's
    # old-docs behaviour; by default the old token lives until its own expiry).
    portals_sandbox.control("config", refresh_revokes_access=True)
    portal = install_portal(1)
    old = PortalCredentials(portal.pk).access_token()
    portal_tokens_refresh(
        portal_id=portal.pk, when=RefreshWhen(issued_before=timezone.now()), reason="keepalive"
    )
    grants = sandbox_grants(portals_sandbox, portal.member_id)

    credentials = _HeldOldToken(portal.pk)
    client = client_for_credentials(credentials=credentials)
    credentials.hold(old)  # the next request leaves with the token read before the rotation
    assert client.call("profile")["ID"]  # refused as invalid_token, then retried with the new token
    assert sandbox_grants(portals_sandbox, portal.member_id) == grants  # reloaded, not refreshed
    assert portals_sandbox.counters()["answers"]["by_code"].get("invalid_token", 0) >= 1


def test_invalid_token_with_nothing_newer_stored_is_permanent(install_portal, portals_sandbox):
    portal = install_portal(1)
    grants = sandbox_grants(portals_sandbox, portal.member_id)
    portals_sandbox.control("tokens/revoke", member_id=portal.member_id)
    client = client_for_portal(member_id=portal.member_id)
    with pytest.raises(Bitrix24InvalidToken):
        client.call("profile")
    assert sandbox_grants(portals_sandbox, portal.member_id) == grants  # no refresh was tried
