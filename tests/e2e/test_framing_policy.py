"""Who may frame the app's pages (CSP frame-ancestors): the portal's origin only; plain http on the
portal's host only with BITRIX24_ALLOW_HTTP (the sandbox's browser-facing portal pages)."""

from __future__ import annotations

import pytest
from django.http import HttpResponse

from portals.models import Portal
from portals.views.framing import framed_by


def portal(domain: str, scheme: str = "https") -> Portal:
    return Portal(member_id="a" * 32, domain=domain, client_endpoint=f"{scheme}://{domain}/rest/")


def test_only_the_portal_origin_frames_the_app_in_production(settings):
    settings.BITRIX24_ALLOW_HTTP = False
    response = framed_by(HttpResponse("app"), portal("127.0.0.2:8443"))
    assert response["Content-Security-Policy"] == "frame-ancestors 'self' https://127.0.0.2:8443"

    response = framed_by(HttpResponse("app"), portal("example.bitrix24.eu"))
    assert response["Content-Security-Policy"] == "frame-ancestors 'self' https://example.bitrix24.eu"


@pytest.mark.parametrize(
    ("domain", "http_source"),
    [
        ("127.0.0.2:8443", "http://127.0.0.2:*"),
        ("portal.localhost", "http://portal.localhost:*"),
        ("[::1]:8443", "http://[::1]:*"),
    ],
)
def test_with_allow_http_the_portal_host_over_http_may_frame_it_too(settings, domain, http_source):
    settings.BITRIX24_ALLOW_HTTP = True
    response = framed_by(HttpResponse("app"), portal(domain))
    assert response["Content-Security-Policy"] == f"frame-ancestors 'self' https://{domain} {http_source}"
