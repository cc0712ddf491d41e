"""The app page links a portal's administrator, and nobody else, to the portal's API keys."""

from __future__ import annotations

import pytest

from tests.fixtures.portals import issue_tokens
from tests.portals.test_reauth_and_frames import frame_post
from tests.portals.test_trust_boundary import non_admin

pytestmark = pytest.mark.django_db(transaction=True)


def test_only_an_administrator_sees_the_keys_link(client, install_portal, portals_sandbox):
    portal = install_portal(1)
    admin = issue_tokens(portals_sandbox, 1)
    user = issue_tokens(portals_sandbox, 1, user_id=non_admin(portals_sandbox))
    for tokens in (admin, user):
        tokens["application_token"] = portal.application_token
    as_admin = frame_post(client, admin, "/bitrix/app/")
    assert as_admin.status_code == 200
    assert 'id="api-keys-link"' in as_admin.content.decode()
    as_user = frame_post(client, user, "/bitrix/app/")
    assert as_user.status_code == 200
    assert "api-keys" not in as_user.content.decode()
