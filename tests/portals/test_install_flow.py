"""Installs from the sandbox: ONAPPINSTALL and the installer frame POST, forged variants, reinstall."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.utils import timezone
from qs_codec import EncodeOptions, encode

from portals.models import LocalApplication, Portal
from portals.services.credentials import PortalCredentials
from portals.services.lifecycle import portal_uninstall
from tests.fixtures.portals import event_claim_payload, expire_access_token, issue_tokens, sandbox_grants

pytestmark = pytest.mark.django_db(transaction=True)


def post_event(client, payload):
    body = encode(payload, options=EncodeOptions(encode=True))
    return client.post("/bitrix/install/", data=body, content_type="application/x-www-form-urlencoded")


def post_frame(client, tokens, path="/bitrix/install/", **form_overrides):
    domain = tokens["client_endpoint"].split("/")[2]
    query = urlencode({"DOMAIN": domain, "PROTOCOL": "1", "LANG": "en", "APP_SID": "sid"})
    form = {
        "AUTH_ID": tokens["access_token"],
        "AUTH_EXPIRES": str(tokens["expires_in"]),
        "REFRESH_ID": tokens["refresh_token"],
        "SERVER_ENDPOINT": tokens["server_endpoint"],
        "APPLICATION_TOKEN": tokens.get("application_token", ""),
        "APPLICATION_SCOPE": tokens.get("scope", ""),
        "member_id": tokens["member_id"],
        "status": tokens.get("status", "F"),
        "PLACEMENT": "DEFAULT",
        "PLACEMENT_OPTIONS": "{}",
    }
    form.update(form_overrides)
    return client.post(
        f"{path}?{query}", data=urlencode(form), content_type="application/x-www-form-urlencoded"
    )


def test_onappinstall_creates_a_verified_portal(client, portals_sandbox):
    tokens = issue_tokens(portals_sandbox, 1)
    grants = sandbox_grants(portals_sandbox, tokens["member_id"])
    response = post_event(client, event_claim_payload(tokens))
    assert response.status_code == 200
    portal = Portal.objects.get(member_id=tokens["member_id"])
    assert portal.state == Portal.State.ACTIVE
    # The claimed refresh token proved itself by being exchanged: the new pair is what is stored.
    assert sandbox_grants(portals_sandbox, tokens["member_id"]) == grants + 1
    assert portal.refresh_token and portal.refresh_token != tokens["refresh_token"]
    assert portal.access_token and portal.access_token != tokens["access_token"]
    assert portal.user_id == portals_sandbox.portal(1)["admin_user_id"]
    assert portal.application_token == tokens["application_token"]
    assert portal.domain == portals_sandbox.portal(1)["domain"]
    assert portal.plan == portals_sandbox.portal(1)["plan"]
    expected = timezone.now() + timedelta(seconds=tokens["expires_in"])
    assert abs((portal.expires_at - expected).total_seconds()) < 30


def test_installer_frame_renders_install_finish_framed_by_the_portal_only(client, portals_sandbox):
    tokens = issue_tokens(portals_sandbox, 1)
    response = post_frame(client, tokens)
    assert response.status_code == 200
    assert b"installFinish" in response.content
    domain = portals_sandbox.portal(1)["domain"]
    assert response["Content-Security-Policy"] == f"frame-ancestors 'self' https://{domain}"
    assert "X-Frame-Options" not in response
    stored = Portal.objects.get(member_id=tokens["member_id"])
    assert stored.refresh_token and stored.refresh_token != tokens["refresh_token"]  # exchanged


def test_forged_installs_change_nothing(client, portals_sandbox):
    good = issue_tokens(portals_sandbox, 1)
    assert post_event(client, event_claim_payload(good)).status_code == 200
    before = Portal.objects.get(member_id=good["member_id"])
    other = issue_tokens(portals_sandbox, 2)
    victim = portals_sandbox.portal(1)
    forged = [
        # A real token of another portal, claimed for the victim.
        event_claim_payload(other, member_id=victim["member_id"]),
        # The victim's identity with made-up tokens.
        event_claim_payload(good, access_token="f" * 64, refresh_token="e" * 64),
        # The victim's member_id pointing REST calls elsewhere.
        event_claim_payload(
            good, domain=portals_sandbox.portal(2)["domain"], client_endpoint=other["client_endpoint"]
        ),
        # An OAuth server that is not allow-listed (would receive client_secret + refresh token).
        event_claim_payload(good, server_endpoint="https://127.0.0.1:9/rest/"),
    ]
    for payload in forged:
        assert post_event(client, payload).status_code == 403
    after = Portal.objects.get(member_id=good["member_id"])
    for name in ("domain", "client_endpoint", "server_endpoint", "access_token", "refresh_token", "state"):
        assert getattr(after, name) == getattr(before, name), name
    assert not Portal.objects.filter(member_id=other["member_id"]).exists()


def test_reinstall_restores_and_a_late_uninstall_is_ignored(install_portal, portals_sandbox):
    portal = install_portal(1)
    first_install = Portal.objects.get(pk=portal.pk).installed_at
    portals_sandbox.control("app/uninstall", member_id=portal.member_id)
    assert portal_uninstall(portal=portal, clean=False, event_ts=timezone.now())
    assert Portal.objects.get(pk=portal.pk).state == Portal.State.UNINSTALLED

    portals_sandbox.control("app/install", member_id=portal.member_id)
    reinstalled = install_portal(1)
    assert reinstalled.pk == portal.pk and reinstalled.state == Portal.State.ACTIVE
    # The uninstall of the first installation arrives late: it must not undo the reinstall.
    assert portal_uninstall(portal=reinstalled, clean=False, event_ts=first_install) is False
    assert Portal.objects.get(pk=portal.pk).state == Portal.State.ACTIVE
    assert PortalCredentials(portal.pk).access_token()


def test_local_app_installs_and_refreshes_with_its_own_secret(portals_sandbox):
    from portals.services.install import install_claim_from_event, portal_install

    local = portals_sandbox.control("app/local", member_id=portals_sandbox.portal(1)["member_id"])
    tokens = issue_tokens(portals_sandbox, 1, client_id=local["client_id"])
    claim = install_claim_from_event(event_claim_payload(tokens))
    from portals.bitrix.exceptions import InvalidInstallRequest

    with pytest.raises(InvalidInstallRequest):  # not registered here yet
        portal_install(claim=claim)
    LocalApplication.objects.create(client_id=local["client_id"], client_secret=local["client_secret"])
    portal = portal_install(claim=claim)
    assert portal.client_id == local["client_id"] and portal.is_local_app
    stale = expire_access_token(portal)
    before = sandbox_grants(portals_sandbox, portal.member_id)
    PortalCredentials(portal.pk).refresh(stale)
    assert sandbox_grants(portals_sandbox, portal.member_id) == before + 1


@pytest.mark.parametrize("lifetime", [1800, 3600])
def test_token_lifetime_comes_from_the_response(install_portal, portals_sandbox, lifetime):
    portals_sandbox.control("config", access_lifetime=lifetime)
    try:
        portal = install_portal(1)
        stale = expire_access_token(portal)
        PortalCredentials(portal.pk).refresh(stale)
        refreshed = Portal.objects.get(pk=portal.pk)
        remaining = (refreshed.expires_at - timezone.now()).total_seconds()
        assert lifetime - 60 < remaining <= lifetime
    finally:
        portals_sandbox.control("config", access_lifetime=3600)
