"""The admin's replay action and the CLI's read-only commands."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from events.models import Event
from tests.fixtures.events import form_body, load_payload

pytestmark = pytest.mark.django_db


def _stored_failed(client, make_portal) -> Event:
    payload = load_payload("oncrmdealupdate__basic")
    make_portal(payload)
    response = client.generic(
        "POST", "/bitrix/events/", form_body(payload), content_type="application/x-www-form-urlencoded"
    )
    row = Event.objects.get(pk=response.json()["id"])
    Event.objects.filter(pk=row.pk).update(status="failed", attempts=6, last_error="RuntimeError: down")
    return row


def test_admin_lists_failed_events_and_replays_them(client, make_portal):
    row = _stored_failed(client, make_portal)
    admin = User.objects.create_superuser("admin", "admin@example.test", "pw")
    client.force_login(admin)
    listing = client.get("/admin/events/event/?status__exact=failed")
    assert listing.status_code == 200
    assert b"RuntimeError: down" in listing.content
    detail = client.get(f"/admin/events/event/{row.pk}/change/")
    assert detail.status_code == 200
    assert b"ONCRMDEALUPDATE" in detail.content
    assert load_payload("oncrmdealupdate__basic")["auth"]["application_token"].encode() not in detail.content
    response = client.post(
        "/admin/events/event/", {"action": "replay", "_selected_action": [row.pk]}, follow=True
    )
    assert response.status_code == 200
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("pending", 0)


def test_cli_show_stats_and_errors(client, make_portal):
    row = _stored_failed(client, make_portal)
    out = io.StringIO()
    call_command("bitrix", "events", "show", str(row.pk), stdout=out)
    assert '"status": "failed"' in out.getvalue()
    out = io.StringIO()
    call_command("bitrix", "events", "stats", stdout=out)
    assert "failed   1" in out.getvalue()
    out = io.StringIO()
    call_command("bitrix", "events", "replay", "--failed", "--event", "ONCRMDEALADD", stdout=out)
    assert "re-queued 0 event(s)" in out.getvalue()
    call_command("bitrix", "events", "replay", "--failed", "--portal", row.portal.member_id, stdout=out)
    assert "re-queued 1 event(s)" in out.getvalue()
    with pytest.raises(CommandError):
        call_command("bitrix", "events", "show", "999999", stdout=io.StringIO(), stderr=io.StringIO())
