"""No console page shows a secret: a crawl of every page reachable from the dashboard, for a portal
whose tokens, application token and client secret are known, finds none of them."""

from __future__ import annotations

import re
from collections import deque
from urllib.parse import urldefrag, urlsplit

import pytest
from django.contrib.auth.models import User

from events.models import Event
from portals.bitrix.metrics import Metrics
from portals.conf import app_settings
from portals.models import LocalApplication, Portal
from tests.fixtures.events import form_body, load_payload

pytestmark = pytest.mark.django_db(transaction=True)

MAX_PAGES = 600
VARIANTS_PER_PATH = 4  # sort orders and filters of one list: a few are enough to see every column


def crawl(client, *start: str) -> dict[str, bytes]:
    """Every /admin/ page reachable from ``start`` by links (GET, no logout), up to MAX_PAGES, the
    ``start`` pages first."""
    seen: dict[str, bytes] = {}
    variants: dict[str, int] = {}
    queue = deque(start)
    while queue and len(seen) < MAX_PAGES:
        url = queue.popleft()
        if url in seen:
            continue
        response = client.get(url)
        seen[url] = response.content
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue
        for href in re.findall(r'href="([^"#]+)', response.content.decode()):
            href = urldefrag(href.replace("&amp;", "&"))[0]
            if href.startswith("?"):
                href = urlsplit(url).path + href
            path = urlsplit(href).path
            if not path.startswith("/admin/") or "logout" in path or href in seen:
                continue
            variants[path] = variants.get(path, 0) + 1
            if variants[path] <= VARIANTS_PER_PATH:
                queue.append(href)
    return seen


def test_no_console_page_shows_a_token_or_a_secret(client, install_portal, portals_sandbox, fresh_rollups):
    portal = install_portal(1)
    LocalApplication.objects.create(client_id="local.leak.1", client_secret="local-app-secret-never-shown")
    payload = load_payload(
        "oncrmdealupdate__basic",
        auth={
            "member_id": portal.member_id,
            "application_token": portal.application_token,
            "domain": portal.domain,
        },
    )
    accepted = client.generic(
        "POST", "/bitrix/events/", form_body(payload), content_type="application/x-www-form-urlencoded"
    )
    assert accepted.json()["result"] == "accepted"
    Event.objects.filter(pk=accepted.json()["id"]).update(status="failed", last_error="RuntimeError: boom")
    Metrics().error(portal.member_id, "ACCESS_DENIED", method="crm.deal.get", status=403)
    fresh_rollups()
    portal = Portal.objects.get(pk=portal.pk)
    secrets = {
        "access token": portal.access_token,
        "refresh token": portal.refresh_token,
        "application token": portal.application_token,
        "event's access token": payload["auth"]["access_token"],
        "client secret": app_settings.client_secret,
        "local app's secret": "local-app-secret-never-shown",
    }
    assert all(len(value) >= 8 for value in secrets.values())

    client.force_login(User.objects.create_superuser("root", "root@example.test", "pw-leaks-1"))
    # Pages that only an action shows: its messages, and the live bindings fragment.
    client.post(f"/admin/portals/portal/{portal.pk}/reauth-link/")
    client.post(f"/admin/portals/portal/{portal.pk}/act/refresh/")
    portal = Portal.objects.get(pk=portal.pk)
    secrets |= {"new access token": portal.access_token, "new refresh token": portal.refresh_token}
    pages = crawl(
        client,
        "/admin/",
        "/admin/portals/portal/",
        f"/admin/portals/portal/{portal.pk}/change/",
        f"/admin/portals/portal/{portal.pk}/history/",
        f"/admin/events/event/?portal={portal.member_id}",
        f"/admin/events/event/{accepted.json()['id']}/change/",
    )
    pages[f"/admin/portals/portal/{portal.pk}/bindings/"] = client.get(
        f"/admin/portals/portal/{portal.pk}/bindings/"
    ).content

    assert f"/admin/portals/portal/{portal.pk}/change/" in pages
    assert any(url.startswith("/admin/events/event/") and "/change/" in url for url in pages)
    assert len(pages) > 20
    leaks = [
        (url, name)
        for url, body in pages.items()
        for name, value in secrets.items()
        if value.encode() in body
    ]
    assert leaks == []
