"""The operators' admin: portals come only from installs, help texts render as written, events can
be narrowed to one portal, and errors in the events list are cut at a word boundary."""

from __future__ import annotations

import pytest
from django.utils import timezone

from events.admin import preview
from events.models import Event
from portals.models import Portal

pytestmark = pytest.mark.django_db


def portal(n: int) -> Portal:
    return Portal.objects.create(
        member_id=f"{n:032x}",
        domain=f"p{n}.bitrix24.com",
        client_endpoint=f"https://p{n}.bitrix24.com/rest/",
        server_endpoint="https://oauth.bitrix.info/rest/",
    )


def event(owner: Portal, n: int, **fields) -> Event:
    return Event.objects.create(
        portal=owner,
        event="ONCRMDEALUPDATE",
        object_key=f"ONCRMDEAL:{n}",
        ts=timezone.now(),
        idempotency_key=f"key-{owner.pk}-{n}",
        shard=0,
        payload={},
        **fields,
    )


def test_the_client_endpoint_help_text_reads_as_written(admin_client):
    page = admin_client.get(f"/admin/portals/portal/{portal(1).pk}/change/").content.decode()
    assert "https://DOMAIN/rest/ on the portal's own domain." in page
    assert "<domain>" not in page  # a browser would show it as https:///rest/


def test_portals_cannot_be_added_in_the_admin(admin_client):
    assert admin_client.get("/admin/portals/portal/add/").status_code == 403
    assert "/admin/portals/portal/add/" not in admin_client.get("/admin/portals/portal/").content.decode()


def test_events_are_filtered_by_portal(admin_client):
    first, second = portal(1), portal(2)
    mine = [event(first, n) for n in (1, 2)]
    theirs = event(second, 3)
    everything = admin_client.get("/admin/events/event/").content.decode()
    assert f'href="?portal={first.member_id}"' in everything  # each row's portal narrows the list to it
    page = admin_client.get(f"/admin/events/event/?portal={first.member_id}").content.decode()
    for row in mine:
        assert f"/admin/events/event/{row.pk}/change/" in page
    assert f"/admin/events/event/{theirs.pk}/change/" not in page
    assert "By portal" in page and first.domain in page  # the filter shows which portal it is


def test_last_errors_are_cut_at_a_word_boundary(admin_client):
    error = "Bitrix24ServerError: the portal answered 503 Service Unavailable three times in a row, giving up"
    row = event(portal(1), 1, last_error=error, status=Event.Status.FAILED)
    page = admin_client.get("/admin/events/event/").content.decode()
    shown = preview(error)
    assert shown.endswith("…") and len(shown) <= 80
    assert error.startswith(shown[:-1]) and error[len(shown) - 1] == " "  # whole words only
    assert shown in page and f"/admin/events/event/{row.pk}/change/" in page


def test_preview_of_short_long_and_unbroken_texts():
    assert preview("short  error\ntext") == "short error text"
    assert preview("x" * 200, limit=20) == "x" * 19 + "…"
    assert preview("word " * 30, limit=20) == "word word word word…"
