"""Secrets never appear in reprs, admin pages or error messages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from portals.bitrix.oauth import OAuthConfig, OAuthServer, TokenGrant
from portals.services.credentials import PortalCredentials
from portals.services.install import InstallClaim
from portals.services.tokens import portal_raise_if_unusable

from .helpers import make_portal


def test_value_objects_hide_tokens():
    grant = TokenGrant.from_payload(
        {"access_token": "AT-secret", "refresh_token": "RT-secret", "expires_in": 1800, "member_id": "m"},
        now=datetime.now(UTC),
    )
    claim = InstallClaim(
        source="frame",
        member_id="m",
        domain="d",
        client_endpoint="https://d/rest/",
        server_endpoint="https://oauth.bitrix.info/rest/",
        access_token="AT-secret",
        refresh_token="RT-secret",
        application_token="APP-secret",
    )
    config = OAuthConfig(client_id="app.x", client_secret="CS-secret")
    server = OAuthServer("https://oauth.bitrix.info/", config)
    for value in (grant, claim, server):
        text = repr(value)
        for secret in ("AT-secret", "RT-secret", "APP-secret", "CS-secret"):
            assert secret not in text
    assert grant.expires_in == 1800  # the lifetime comes from the response


@pytest.mark.django_db
def test_portal_repr_and_gate_errors_hide_tokens():
    portal = make_portal(state="reauth_required", state_reason="refresh refused: invalid_grant")
    assert portal.access_token not in repr(portal)
    assert portal.access_token not in repr(PortalCredentials(portal.pk))
    with pytest.raises(Exception) as info:
        portal_raise_if_unusable(portal)
    assert portal.refresh_token not in str(info.value)
    assert "invalid_grant" in str(info.value)


@pytest.mark.django_db
def test_admin_change_page_shows_no_secret(admin_client):
    portal = make_portal()
    response = admin_client.get(f"/admin/portals/portal/{portal.pk}/change/")
    assert response.status_code == 200
    body = response.content.decode()
    assert portal.member_id in body
    for secret in (portal.access_token, portal.refresh_token, portal.application_token):
        assert secret not in body
