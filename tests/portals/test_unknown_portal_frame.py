"""The app opened on a portal it doesn't know (installed there by the portal, never installed with
us, or the install never completed) says what to do instead of "open it from inside the portal"."""

from __future__ import annotations

import pytest

from portals.models import Portal
from tests.fixtures.portals import issue_tokens
from tests.portals.test_reauth_and_frames import frame_post

pytestmark = pytest.mark.django_db(transaction=True)


def test_opening_the_app_on_a_portal_we_dont_know_explains_what_to_do(client, portals_sandbox):
    tokens = issue_tokens(portals_sandbox, 2)
    response = frame_post(client, tokens, "/bitrix/app/")
    assert response.status_code == 403
    page = " ".join(response.content.decode().split())
    assert "must be opened from inside" not in page
    assert "install (or reinstall) the app from the portal's applications, then open it again" in page
    assert not Portal.objects.exists()
