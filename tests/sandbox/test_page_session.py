"""The portal page calls installFinish / refreshAuth on its frame's behalf with its own page session,
as a real portal page has the user's session: it still works after the app rotated the frame's token
away (an install exchanges the installer's refresh token at once), and only for its own portal."""

from __future__ import annotations

import json
import re

import requests

from tests.sandbox.helpers import refresh


def installer(sandbox, index: int) -> tuple[str, str, str]:
    """(http host, page session, frame refresh token) of portal ``index``'s installer page."""
    host = sandbox.portal(index)["http_endpoint"].split("/")[2]
    clicked = requests.post(f"http://{host}/portal/actions/install", timeout=10)
    assert clicked.url.endswith("/portal/app/")
    session = json.loads(re.search(r"var pageSession = (\"[^\"]+\");", clicked.text).group(1))
    refresh_token = re.search(r'name="REFRESH_ID" value="([^"]+)"', clicked.text).group(1)
    return host, session, refresh_token


def test_install_finish_by_the_page_session_after_the_app_rotated_the_token(sandbox):
    host, session, refresh_token = installer(sandbox, 1)
    assert session not in requests.get(f"http://{host}/portal/app/", timeout=10).text  # one per render
    assert refresh(sandbox, refresh_token).status_code == 200  # the app's install proof: the pair dies

    _, other_portals_session, _ = installer(sandbox, 2)
    for forged in ({"session": other_portals_session}, {"session": "guessed"}, {}):
        answer = requests.post(f"http://{host}/portal/bx24/install-finish", json=forged, timeout=10)
        assert answer.status_code == 401
    finished = requests.post(
        f"http://{host}/portal/bx24/install-finish", json={"session": session}, timeout=10
    )
    assert finished.json() == {"result": True, "finished_now": True}
    fresh = requests.post(f"http://{host}/portal/bx24/refresh-auth", json={"session": session}, timeout=10)
    assert fresh.status_code == 200 and len(fresh.json()["AUTH_ID"]) == 70
