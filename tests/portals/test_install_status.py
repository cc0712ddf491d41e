"""The installer page calls installFinish only once the app's events are bound: it asks our signed
status endpoint, which answers "pending" until the bind task (a real Celery worker) reports done.

Over real HTTP: the sandbox builds the installer's frame POST, we send it to the live server as the
portal's iframe would, and read the page; the worker starts only when the test says so.
"""

from __future__ import annotations

import html
import re
import time

import pytest
import requests
from django.core import signing

from events.services.binding import app_events_desired
from portals.models import Portal
from portals.views.install import STATUS_SALT
from tests.fixtures.portals import app_card_urls, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def installer_page(sandbox, index: int = 1) -> str:
    """The installer's frame POST sent to the app, as the portal's iframe sends it; the page."""
    frame = sandbox.control("lifecycle/install-start", portal=index)
    answer = requests.post(frame["url"], params=frame["query"], data=frame["body"], timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    return answer.text


def status(base: str, page: str) -> str:
    path = html.unescape(re.search(r'data-status-url="([^"]+)"', page).group(1))
    return str(requests.get(base + path, timeout=10).json()["state"])


def test_the_installer_waits_for_the_bind_task(live_server, portals_sandbox, settings, redis_client, request):
    settings.BITRIX24_APP_URL = live_server.url
    settings.ALLOWED_HOSTS = ["*"]
    portals_sandbox.control("lifecycle", urls=app_card_urls(live_server.url), finish_mode="explicit")
    try:
        page = installer_page(portals_sandbox)
        assert "BX24.installFinish()" in page and "/bitrix/install/status/?token=" in page
        # No worker yet: the bind task waits in the queue, so the page must not finish.
        assert status(live_server.url, page) == "pending"
        time.sleep(1)
        assert status(live_server.url, page) == "pending"
        request.getfixturevalue("celery_worker")  # the worker starts now
        wait_for(lambda: status(live_server.url, page) == "done", what="the bind task's outcome")
        # "done" means bound: every desired event is on the portal before installFinish.
        portal = Portal.objects.get(member_id=portals_sandbox.portal(1)["member_id"])
        registrations = portals_sandbox.control_get("lifecycle/registrations?portal=1")
        assert registrations["state"] == "installing"
        bound = {(h["event"], h["handler"]) for h in registrations["handlers"]}
        assert {(b.event, b.handler) for b in app_events_desired(portal=portal)} <= bound
    finally:
        portals_sandbox.control("lifecycle", finish_mode="auto")


def test_the_status_needs_a_token_we_signed(client):
    assert client.get("/bitrix/install/status/").status_code == 403
    assert client.get("/bitrix/install/status/?token=forged").status_code == 403
    other_salt = signing.dumps({"portal": 1, "installed_at": 0.0})
    assert client.get(f"/bitrix/install/status/?token={other_salt}").status_code == 403
    ours = signing.dumps({"portal": 1, "installed_at": 0.0}, salt=STATUS_SALT)
    answer = client.get(f"/bitrix/install/status/?token={ours}")
    assert answer.status_code == 200 and answer.json() == {"state": "pending"}
