"""A sandbox started --without-app (as bin/demo starts it): a portal says the app is not installed,
offers "Install the app" and nothing else, explains what to do when the app is opened, and becomes
an ordinary installed portal once the app is installed (a reset leaves it bare again)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from sandbox.testing import SandboxServer


@pytest.fixture(scope="module")
def bare() -> Iterator[SandboxServer]:
    with SandboxServer(portals=2, deals=5, without_app=True) as server:
        yield server


def page(server: SandboxServer, path: str = "/portal/", index: int = 1) -> requests.Response:
    host = server.portal(index)["http_endpoint"].split("/")[2]
    return requests.get(f"http://{host}{path}", timeout=10)


def test_a_portal_without_the_app_says_so_and_offers_install(bare):
    bare.reset()
    text = page(bare).text
    assert "State: <strong>not installed</strong>" in text
    assert "The app is not installed on this portal" in text
    assert ">Install the app</button>" in text
    assert ">Reinstall</button>" not in text and ">Open the app</button>" not in text
    assert bare.control_get("lifecycle/registrations?portal=1")["state"] == "not installed"
    # Nothing of the app works there: no token can be minted for it.
    with pytest.raises(Exception, match="409"):
        bare.control("oauth/issue", member_id=bare.portal(1)["member_id"])


def test_opening_the_app_before_install_explains_what_to_do(bare):
    bare.reset()
    opened = page(bare, "/portal/app/")
    assert opened.status_code == 200 and opened.url.split("?")[0].endswith("/portal/")
    assert (
        "The app is not installed on this portal yet: press “Install the app”, then open it." in opened.text
    )


def test_installing_makes_it_an_installed_portal_and_a_reset_undoes_it(bare):
    bare.reset()
    bare.control(
        "lifecycle", urls={"installer": ""}
    )  # an app without UI: installed at once (this module's card)
    bare.control("lifecycle/install", portal=2)
    text = page(bare, index=2).text
    assert "State: <strong>installed</strong>" in text and ">Open the app</button>" in text
    assert "State: <strong>not installed</strong>" in page(bare, index=1).text
    bare.reset()
    assert "State: <strong>not installed</strong>" in page(bare, index=2).text
