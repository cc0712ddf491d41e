"""Each refresh failure class leads to the right portal state (against the sandbox's faults)."""

from __future__ import annotations

import pytest

from portals.bitrix import http
from portals.bitrix.exceptions import (
    Bitrix24AuthError,
    Bitrix24InvalidGrant,
    Bitrix24PaymentRequired,
    Bitrix24ServerError,
    Bitrix24TransportError,
)
from portals.models import Portal
from portals.services.credentials import PortalCredentials
from portals.services.lifecycle import portal_payment_changed
from tests.fixtures.portals import expire_access_token, sandbox_grants

pytestmark = pytest.mark.django_db(transaction=True)


def test_oauth_server_refusing_connections_is_transient(install_portal, portals_sandbox):
    portal = install_portal(1)
    stale = expire_access_token(portal)
    portals_sandbox.control("faults", scope="oauth", kind="oauth_down", mode="refuse")
    # Pooled keep-alive connections would still reach the closed listener: start afresh, as a
    # process that finds the server down does.
    http.thread_session(ca_bundle=portals_sandbox.ca_bundle).close()
    with pytest.raises(Bitrix24TransportError) as info:
        PortalCredentials(portal.pk).refresh(stale)
    assert info.value.sent is False
    stored = Portal.objects.get(pk=portal.pk)
    assert stored.state == Portal.State.ACTIVE and stored.access_token == stale

    portals_sandbox.control("faults/clear", scope="oauth")
    PortalCredentials(portal.pk).refresh(stale)
    assert Portal.objects.get(pk=portal.pk).access_token != stale


def test_oauth_server_errors_are_retried_once_then_transient(install_portal, portals_sandbox):
    portal = install_portal(1)
    stale = expire_access_token(portal)
    portals_sandbox.control("faults", scope="oauth", kind="oauth_down", mode="503")
    with pytest.raises(Bitrix24ServerError):
        PortalCredentials(portal.pk).refresh(stale)
    assert Portal.objects.get(pk=portal.pk).state == Portal.State.ACTIVE


def test_lost_refresh_answer_means_reauthorisation(install_portal, portals_sandbox):
    portal = install_portal(1)
    stale = expire_access_token(portal)
    portals_sandbox.control("faults", member_id=portal.member_id, kind="oauth_lost", count=1)
    with pytest.raises(Bitrix24InvalidGrant):
        PortalCredentials(portal.pk).refresh(stale)
    stored = Portal.objects.get(pk=portal.pk)
    assert stored.state == Portal.State.REAUTH_REQUIRED
    assert "lost" in stored.state_reason

    # Fails fast afterwards: no request reaches the OAuth server.
    grants = sandbox_grants(portals_sandbox, portal.member_id)
    with pytest.raises(Bitrix24InvalidGrant, match="re-authorisation"):
        PortalCredentials(portal.pk).access_token()
    assert sandbox_grants(portals_sandbox, portal.member_id) == grants


def test_spent_refresh_token_means_reauthorisation(install_portal, portals_sandbox):
    portal = install_portal(1)
    stale = expire_access_token(portal)
    Portal.objects.filter(pk=portal.pk).update(refresh_token="0" * 64)
    with pytest.raises(Bitrix24InvalidGrant):
        PortalCredentials(portal.pk).refresh(stale)
    assert Portal.objects.get(pk=portal.pk).state == Portal.State.REAUTH_REQUIRED


def test_payment_loss_and_return(install_portal, portals_sandbox):
    portal = install_portal(1)
    stale = expire_access_token(portal)
    portals_sandbox.control("app/payment", member_id=portal.member_id, expired=True)
    with pytest.raises(Bitrix24PaymentRequired):
        PortalCredentials(portal.pk).refresh(stale)
    assert Portal.objects.get(pk=portal.pk).state == Portal.State.PAYMENT_REQUIRED
    with pytest.raises(Bitrix24PaymentRequired):
        PortalCredentials(portal.pk).access_token()

    portals_sandbox.control("app/payment", member_id=portal.member_id, expired=False)
    restored = portal_payment_changed(portal=portal)
    assert restored.state == Portal.State.ACTIVE
    assert PortalCredentials(portal.pk).access_token()


def test_payment_recheck_marks_an_active_portal(install_portal, portals_sandbox):
    portal = install_portal(1)
    portals_sandbox.control("app/payment", member_id=portal.member_id, expired=True)
    assert portal_payment_changed(portal=portal).state == Portal.State.PAYMENT_REQUIRED


def test_payment_return_after_the_access_token_expired(install_portal, portals_sandbox):
    portal = install_portal(1)
    portals_sandbox.control("app/payment", member_id=portal.member_id, expired=True)
    assert portal_payment_changed(portal=portal).state == Portal.State.PAYMENT_REQUIRED
    portals_sandbox.control("app/payment", member_id=portal.member_id, expired=False)
    portals_sandbox.control("clock", offset=7200)  # the stored access token is dead by now
    grants = sandbox_grants(portals_sandbox, portal.member_id)
    assert portal_payment_changed(portal=portal).state == Portal.State.ACTIVE
    assert sandbox_grants(portals_sandbox, portal.member_id) == grants + 1


def test_app_removed_without_an_uninstall_event_fails_fast(install_portal, portals_sandbox):
    portal = install_portal(1)
    stale = expire_access_token(portal)
    portals_sandbox.control("app/uninstall", member_id=portal.member_id)  # the event never reached us
    # invalid_grant (the pair was revoked) or invalid_client ("Application not installed").
    with pytest.raises(Bitrix24AuthError):
        PortalCredentials(portal.pk).refresh(stale)
    assert Portal.objects.get(pk=portal.pk).state == Portal.State.REAUTH_REQUIRED
    grants = portals_sandbox.counters()
    with pytest.raises(Bitrix24InvalidGrant):
        PortalCredentials(portal.pk).access_token()
    assert portals_sandbox.counters()["token_grants"] == grants["token_grants"]


def test_portal_deleted_answer_to_a_rest_call_is_recorded_and_later_calls_fail_fast(
    install_portal, portals_sandbox
):
    from portals.bitrix.exceptions import Bitrix24PortalUnavailable
    from portals.services.client import client_for_portal

    portal = install_portal(1)
    portals_sandbox.control("faults", member_id=portal.member_id, kind="deleted")
    with pytest.raises(Bitrix24PortalUnavailable):
        client_for_portal(member_id=portal.member_id).call("profile")
    stored = Portal.objects.get(pk=portal.pk)
    assert stored.state == Portal.State.UNINSTALLED
    assert "PORTAL_DELETED" in stored.state_reason and stored.access_token == ""
    requests_before = portals_sandbox.counters()["requests"]["total"]
    with pytest.raises(Bitrix24AuthError):
        client_for_portal(member_id=portal.member_id).call("profile")
    assert portals_sandbox.counters()["requests"]["total"] == requests_before  # no request sent


def test_payment_required_answer_to_a_rest_call_marks_payment_required(install_portal, portals_sandbox):
    from portals.services.client import client_for_portal

    portal = install_portal(1)
    portals_sandbox.control("app/payment", member_id=portal.member_id, expired=True)
    with pytest.raises(Bitrix24PaymentRequired):
        client_for_portal(member_id=portal.member_id).call("profile")
    assert Portal.objects.get(pk=portal.pk).state == Portal.State.PAYMENT_REQUIRED
