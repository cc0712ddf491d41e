"""With BITRIX24_ALLOW_HTTP (development, the demo) the re-authorisation sends the browser to the
portal over http: the sandbox's HTTPS port passes it on to the portal's http page, which a browser
can open (it refuses the sandbox's CA); a real portal redirects http to https. Without it (production)
the browser goes to https as before."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests

from tests.portals.test_reauth_and_frames import mark_reauth

pytestmark = pytest.mark.django_db(transaction=True)


def test_reauthorisation_goes_over_http_in_development(
    admin_client, install_portal, portals_sandbox, settings
):
    portal = install_portal(1)
    mark_reauth(portal)
    settings.BITRIX24_ALLOW_HTTP = True
    location = admin_client.get(f"/bitrix/oauth/start/?portal={portal.member_id}")["Location"]
    assert location.startswith(f"http://{portal.domain}/oauth/authorize/?")
    consent = requests.get(location, timeout=10)  # no CA needed: plain http all the way
    http_host = portals_sandbox.portal(1)["http_endpoint"].split("/")[2]
    assert consent.status_code == 200 and urlsplit(consent.url).netloc == http_host
    assert "Allow" in consent.text and urlsplit(location).query in consent.url

    settings.BITRIX24_ALLOW_HTTP = False
    production = admin_client.get(f"/bitrix/oauth/start/?portal={portal.member_id}")["Location"]
    assert production.startswith(f"https://{portal.domain}/oauth/authorize/")
