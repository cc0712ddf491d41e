"""The app's page inside the portal: its language, what it shows, the administrators' settings form
(posted with the signed frame token, never a session), and the deal tab through the client."""

from __future__ import annotations

import json
import re

import pytest

from console.models import PortalPreferences
from portals.models import Portal
from portals.services.client import client_for_portal
from tests.fixtures.portals import issue_tokens
from tests.portals.test_reauth_and_frames import frame_post

pytestmark = pytest.mark.django_db(transaction=True)


def plain_user(sandbox) -> int:
    return next(u for u in range(2, 6) if u != sandbox.portal(1)["admin_user_id"])


def frame_token(page: str) -> str:
    return re.search(r'name="frame" value="([^"]+)"', page).group(1)


@pytest.mark.parametrize(
    ("lang", "expected", "heading"),
    [
        ("ru", "ru", "Что требует вашего действия"),
        ("en", "en", "What needs your action"),
        ("de", "en", "What needs"),
    ],
)
def test_the_page_speaks_the_portals_language(
    client, install_portal, portals_sandbox, lang, expected, heading
):
    install_portal(1)
    response = frame_post(client, issue_tokens(portals_sandbox, 1), "/bitrix/app/", lang=lang)
    assert response.status_code == 200
    assert response["Content-Language"] == expected
    page = response.content.decode()
    assert f'<html lang="{expected}">' in page and heading in page


def test_only_an_administrator_gets_and_may_post_the_settings_form(client, install_portal, portals_sandbox):
    portal = install_portal(1)
    user = frame_post(
        client, issue_tokens(portals_sandbox, 1, user_id=plain_user(portals_sandbox)), "/bitrix/app/"
    )
    assert 'id="settings-form"' not in user.content.decode()
    escaped = re.search(r'APP_FRAME_TOKEN = ("[^"]+")', user.content.decode()).group(1)
    user_token = json.loads(escaped)  # escapejs escapes as JSON does
    refused = client.post(
        "/bitrix/app/settings/", {"frame": user_token, "language": "ru", "deal_fields": ["TITLE"]}
    )
    assert refused.status_code == 403 and b"administrator" in refused.content
    assert (
        client.post("/bitrix/app/settings/", {"frame": "forged", "deal_fields": ["TITLE"]}).status_code == 403
    )

    admin = frame_post(client, issue_tokens(portals_sandbox, 1), "/bitrix/app/").content.decode()
    token = frame_token(admin)
    bad = client.post("/bitrix/app/settings/", {"frame": token, "language": "xx", "deal_fields": ["TITLE"]})
    assert bad.status_code == 400 and b"language" in bad.content
    saved = client.post(
        "/bitrix/app/settings/", {"frame": token, "language": "ru", "deal_fields": ["TITLE", "OPPORTUNITY"]}
    )
    assert saved.status_code == 200
    assert saved["Content-Security-Policy"] == f"frame-ancestors 'self' https://{portal.domain}"
    preferences = PortalPreferences.objects.get(portal=portal)
    assert (preferences.language, preferences.deal_fields) == ("ru", ["TITLE", "OPPORTUNITY"])
    assert preferences.updated_by == portals_sandbox.portal(1)["admin_user_id"]
    # The administrators' choice beats the portal's LANG.
    again = frame_post(client, issue_tokens(portals_sandbox, 1), "/bitrix/app/", lang="en")
    assert again["Content-Language"] == "ru"
    # Nothing of the form needed a session: no cookie was set anywhere.
    assert not client.cookies


def test_the_page_says_what_needs_the_users_action(client, install_portal, portals_sandbox):
    portal = install_portal(1)
    Portal.objects.filter(pk=portal.pk).update(state=Portal.State.PAYMENT_REQUIRED)
    portals_sandbox.control("lifecycle/payment", portal=1, expired=True)
    page = frame_post(
        client, issue_tokens(portals_sandbox, 1, user_id=plain_user(portals_sandbox)), "/bitrix/app/"
    )
    needs = page.content.decode().split('id="needs-action"')[1].split("</section>")[0]
    assert "renew it in Bitrix24 Market" in needs


def test_the_deal_tab_shows_the_deal_through_the_client(client, install_portal, portals_sandbox):
    portal = install_portal(1)
    deal_id = client_for_portal(member_id=portal.member_id).call(
        "crm.deal.add", {"fields": {"TITLE": "Tab deal", "OPPORTUNITY": 1234, "CURRENCY_ID": "USD"}}
    )
    PortalPreferences.objects.create(portal=portal, deal_fields=["TITLE", "OPPORTUNITY"])
    tab = frame_post(
        client, issue_tokens(portals_sandbox, 1), "/bitrix/placement/deal-tab/",
        PLACEMENT="CRM_DEAL_DETAIL_TAB", PLACEMENT_OPTIONS=f'{{"ID":"{deal_id}"}}',
    )  # fmt: skip
    fields = tab.content.decode().split('id="deal-fields"')[1].split("</dl>")[0]
    assert re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", fields) == [
        ("Title", "Tab deal"),
        ("Amount", "1234.00"),
    ]  # as Bitrix24 answers it
    missing = frame_post(
        client, issue_tokens(portals_sandbox, 1), "/bitrix/placement/deal-tab/",
        PLACEMENT="CRM_DEAL_DETAIL_TAB", PLACEMENT_OPTIONS='{"ID":"999999"}',
    )  # fmt: skip
    assert 'id="deal-error"' in missing.content.decode()
