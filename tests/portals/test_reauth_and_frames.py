"""Re-authorisation by the OAuth code flow, the app page / placements, admin restore, renames."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from portals.models import Portal
from portals.services.client import client_for_portal
from portals.services.credentials import PortalCredentials
from portals.views.inbound import FORM
from tests.fixtures.portals import issue_tokens, sandbox_grants

pytestmark = pytest.mark.django_db(transaction=True)


def mark_reauth(portal: Portal) -> None:
    Portal.objects.filter(pk=portal.pk).update(
        state=Portal.State.REAUTH_REQUIRED, state_reason="refresh refused: invalid_grant"
    )


def consent(authorize_url: str, ca_bundle: str, **extra: str) -> dict[str, str]:
    """Play the portal user: open the consent page, allow, and read the redirect's query."""
    parts = urlsplit(authorize_url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    page = requests.get(authorize_url, verify=ca_bundle, timeout=10)
    assert page.status_code == 200
    answer = requests.post(
        f"{parts.scheme}://{parts.netloc}/oauth/authorize/",
        data={"client_id": query["client_id"], "state": query["state"], "consent": "Y", **extra},
        verify=ca_bundle,
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}


def test_code_flow_reauthorises_and_state_is_single_use(admin_client, install_portal, portals_sandbox):
    portal = install_portal(1)
    mark_reauth(portal)
    start = admin_client.get(f"/bitrix/oauth/start/?portal={portal.member_id}")
    assert start.status_code == 302
    location = start["Location"]
    assert location.startswith(f"https://{portal.domain}/oauth/authorize/")
    callback = consent(location, portals_sandbox.ca_bundle)

    before = sandbox_grants(portals_sandbox, portal.member_id, "authorization_code")
    done = admin_client.get("/bitrix/oauth/callback/?" + urlencode(callback))
    assert done.status_code == 200
    stored = Portal.objects.get(pk=portal.pk)
    assert stored.state == Portal.State.ACTIVE and stored.state_reason == ""
    assert sandbox_grants(portals_sandbox, portal.member_id, "authorization_code") == before + 1
    assert client_for_portal(member_id=portal.member_id).call("profile")["ID"]

    replay = admin_client.get("/bitrix/oauth/callback/?" + urlencode(callback))
    assert replay.status_code == 403


def test_oauth_start_needs_staff_or_a_signed_frame(client, install_portal):
    portal = install_portal(1)
    response = client.get(f"/bitrix/oauth/start/?portal={portal.member_id}")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert client.get("/bitrix/oauth/start/?frame=forged").status_code == 403


def test_forged_callback_state_is_refused(client, install_portal):
    portal = install_portal(1)
    token = portal.access_token
    response = client.get("/bitrix/oauth/callback/?" + urlencode({"code": "x", "state": "guessed"}))
    assert response.status_code == 403
    assert Portal.objects.get(pk=portal.pk).access_token == token


def frame_post(client, tokens, path, *, lang="en", **overrides):
    domain = tokens["client_endpoint"].split("/")[2]
    query = urlencode({"DOMAIN": domain, "PROTOCOL": "1", "LANG": lang, "APP_SID": "sid"})
    form = {
        "AUTH_ID": tokens["access_token"],
        "AUTH_EXPIRES": str(tokens["expires_in"]),
        "REFRESH_ID": tokens["refresh_token"],
        "SERVER_ENDPOINT": tokens["server_endpoint"],
        "APPLICATION_TOKEN": tokens.get("application_token", ""),
        "member_id": tokens["member_id"],
        "PLACEMENT": "DEFAULT",
    }
    form.update(overrides)
    # As the portal's page submits it: a plain HTML form, url-encoded.
    return client.post(f"{path}?{query}", data=urlencode(form), content_type=FORM)


def test_app_page_is_framed_by_its_portal_and_never_stores_the_users_tokens(
    client, install_portal, portals_sandbox
):
    portal = install_portal(1)
    stored = (portal.access_token, portal.refresh_token)
    user_tokens = issue_tokens(portals_sandbox, 1, user_id=2)
    response = frame_post(client, user_tokens, "/bitrix/app/")
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == f"frame-ancestors 'self' https://{portal.domain}"
    assert "X-Frame-Options" not in response
    after = Portal.objects.get(pk=portal.pk)
    assert (after.access_token, after.refresh_token) == stored

    placement = frame_post(
        client, user_tokens, "/bitrix/placement/crm-deal-tab/", PLACEMENT="CRM_DEAL_DETAIL_TAB",
        PLACEMENT_OPTIONS='{"ID":"42"}',
    )  # fmt: skip
    assert placement.status_code == 200 and b"42" in placement.content


def test_app_page_refuses_forged_frames(client, install_portal, portals_sandbox):
    portal = install_portal(1)
    tokens = issue_tokens(portals_sandbox, 1)
    assert frame_post(client, tokens, "/bitrix/app/", APPLICATION_TOKEN="wrong").status_code == 403
    assert frame_post(client, tokens, "/bitrix/app/", AUTH_ID="f" * 64).status_code == 403
    other = issue_tokens(portals_sandbox, 2)  # a real token of a portal not installed here
    assert frame_post(client, other, "/bitrix/app/").status_code == 403
    # A real token of another portal, claimed for ours.
    forged = frame_post(client, other, "/bitrix/app/", member_id=portal.member_id, APPLICATION_TOKEN="")
    assert forged.status_code == 403
    # The site-wide protection stays on everywhere else.
    assert client.get("/admin/login/")["X-Frame-Options"] == "DENY"


def test_admin_opening_the_app_restores_a_portal(client, install_portal, portals_sandbox):
    portal = install_portal(1)
    mark_reauth(portal)
    user = next(u for u in range(2, 6) if u != portals_sandbox.portal(1)["admin_user_id"])
    plain_user = issue_tokens(portals_sandbox, 1, user_id=user)
    assert frame_post(client, plain_user, "/bitrix/app/").status_code == 200
    assert Portal.objects.get(pk=portal.pk).state == Portal.State.REAUTH_REQUIRED  # not an admin

    admin = issue_tokens(portals_sandbox, 1)
    response = frame_post(client, admin, "/bitrix/app/")
    assert response.status_code == 200
    restored = Portal.objects.get(pk=portal.pk)
    assert restored.state == Portal.State.ACTIVE
    # The admin's refresh token was exchanged (its proof): the exchanged pair is stored and works.
    assert restored.refresh_token not in ("", admin["refresh_token"])
    assert restored.user_id == portals_sandbox.portal(1)["admin_user_id"]
    assert PortalCredentials(portal.pk).access_token() == restored.access_token
    assert client_for_portal(member_id=portal.member_id).call("user.admin") is True


def test_renamed_portal_is_followed_after_verification(install_portal, portals_sandbox):
    portal = install_portal(1)
    moved = portals_sandbox.control("portal/rename", member_id=portal.member_id)
    assert moved["domain"] != portal.domain
    result = client_for_portal(member_id=portal.member_id).call("profile")
    assert result["ID"]
    stored = Portal.objects.get(pk=portal.pk)
    assert stored.domain == moved["domain"]
    assert stored.client_endpoint == moved["client_endpoint"]
