"""The client's OAuth tests run under both refresh behaviours of the sandbox.

Whether a refresh kills the previous access token at once (the old docs) or leaves it valid until
its own expiry (what the official SDKs' OAuth tests need) is not settled (docs/sandbox.md): the
client must lose no call and burn no refresh token either way. Every test of a module that calls
with OAuth credentials (the test ``TokenCredentials``, the app's ``PortalCredentials`` through an
installed portal) and uses the sandbox runs against both; webhook-only modules don't refresh, so
they run once.
"""

from __future__ import annotations

from typing import Any

import pytest

REFRESH_BEHAVIOURS = {"old-token-lives": False, "old-token-dies": True}


OAUTH_NAMES = ("TokenCredentials", "PortalCredentials", "client_for_portal")


def _calls_with_oauth(metafunc: pytest.Metafunc) -> bool:
    module = vars(metafunc.module)
    return "portals_sandbox" in metafunc.fixturenames or any(name in module for name in OAUTH_NAMES)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sandbox" in metafunc.fixturenames and _calls_with_oauth(metafunc):
        metafunc.parametrize(
            "refresh_revokes_access",
            list(REFRESH_BEHAVIOURS.values()),
            ids=list(REFRESH_BEHAVIOURS),
            indirect=True,
        )


@pytest.fixture(autouse=True)
def refresh_revokes_access(request: pytest.FixtureRequest) -> Any:
    """The sandbox's refresh behaviour for this test (None for tests without the sandbox)."""
    if not hasattr(request, "param"):
        return None
    request.getfixturevalue("sandbox").control("config", refresh_revokes_access=request.param)
    return request.param
