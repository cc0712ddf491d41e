"""Forged installs whose endpoints fail validation are refused before any request, changing nothing."""

from __future__ import annotations

import pytest

from portals.bitrix.exceptions import InvalidInstallRequest
from portals.models import Portal
from portals.services.install import InstallClaim, portal_install

from .helpers import make_portal

pytestmark = pytest.mark.django_db


def claim_for(portal: Portal, **overrides) -> InstallClaim:
    values = {
        "source": "event",
        "member_id": portal.member_id,
        "domain": portal.domain,
        "client_endpoint": portal.client_endpoint,
        "server_endpoint": "https://oauth.bitrix.info/rest/",
        "access_token": "attacker-access",
        "refresh_token": "attacker-refresh",
        "application_token": "attacker-app-token",
    }
    values.update(overrides)
    return InstallClaim(**values)


def snapshot(portal: Portal) -> dict:
    portal = Portal.objects.get(pk=portal.pk)
    return {
        f.name: getattr(portal, f.name) for f in Portal._meta.concrete_fields if f.name not in ("updated_at",)
    }


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"client_endpoint": "http://{domain}/rest/"}, id="http-client-endpoint"),
        pytest.param({"client_endpoint": "https://evil.example.com/rest/"}, id="client-endpoint-other-host"),
        pytest.param({"client_endpoint": "https://{domain}/rest/../x/"}, id="client-endpoint-other-path"),
        pytest.param({"server_endpoint": "https://oauth.evil.example.com/rest/"}, id="server-not-allowed"),
        pytest.param({"server_endpoint": "http://oauth.bitrix.info/rest/"}, id="server-over-http"),
        pytest.param({"server_endpoint": "https://oauth.bitrix.info/other/"}, id="server-wrong-path"),
        pytest.param({"refresh_token": ""}, id="no-refresh-token"),
        pytest.param({"member_id": ""}, id="no-member-id"),
    ],
)
def test_forged_install_refused_and_portal_unchanged(overrides, settings):
    settings.BITRIX24_ALLOW_HTTP = False
    portal = make_portal()
    before = snapshot(portal)
    values = {k: v.format(domain=portal.domain) if isinstance(v, str) else v for k, v in overrides.items()}
    with pytest.raises(InvalidInstallRequest):
        portal_install(claim=claim_for(portal, **values))
    assert snapshot(portal) == before
    assert Portal.objects.count() == 1


def test_refused_claim_never_contacts_a_forged_oauth_server(settings):
    """The allow-list is checked before any request: an unreachable forged host proves no call was made."""
    settings.BITRIX24_OAUTH_SERVERS = ["https://oauth.bitrix.info/"]
    portal = make_portal()
    with pytest.raises(InvalidInstallRequest, match="endpoints refused"):
        portal_install(claim=claim_for(portal, server_endpoint="https://127.0.0.1:9/rest/"))
