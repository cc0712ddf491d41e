"""A portal installed from the sandbox's lifecycle API, with the app served for real (live server)
and a real Celery worker: install (frame POST + ONAPPINSTALL), usable calls, uninstall, reinstall."""

from __future__ import annotations

import pytest

from portals.models import Portal
from portals.services.client import client_for_portal
from tests.fixtures.portals import app_card_urls, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def app_registered(live_server, portals_sandbox, settings):
    base = live_server.url
    settings.BITRIX24_APP_URL = base
    settings.ALLOWED_HOSTS = ["*"]
    portals_sandbox.control(
        "lifecycle",
        urls=app_card_urls(base),
        finish_mode="auto",
    )
    return portals_sandbox


def test_install_use_uninstall_reinstall(app_registered, celery_worker):
    sandbox = app_registered
    member_id = sandbox.portal(1)["member_id"]

    installed = sandbox.control("lifecycle/install", portal=1)
    assert installed["state"] == "installed"
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    portal = wait_for(lambda: Portal.objects.filter(member_id=member_id, state="active").first())
    assert portal.application_token  # from the frame POST, confirmed again by ONAPPINSTALL
    assert client_for_portal(member_id=member_id).call("profile")["ID"]

    sandbox.control("lifecycle/uninstall", portal=1)
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    wait_for(lambda: Portal.objects.filter(member_id=member_id, state="uninstalled").exists())
    assert Portal.objects.get(member_id=member_id).access_token == ""

    sandbox.control("lifecycle/install", portal=1)
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    reinstalled = wait_for(lambda: Portal.objects.filter(member_id=member_id, state="active").first())
    assert reinstalled.pk == portal.pk
    assert client_for_portal(member_id=member_id).call("profile")["ID"]
