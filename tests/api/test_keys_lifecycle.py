"""Keys over a portal's life and through their doors: uninstall revokes, CLEAN purges the mirror,
the CLI prints a key once, the portal administrator's page in the app's frame, the admin."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.core import signing
from django.core.management import CommandError, call_command
from django.utils import timezone

from api.models import ApiKey
from mirror.models import Deal, SyncState
from portals.services.frames import FRAME_SIGNING_SALT
from portals.services.lifecycle import portals_data_purge
from portals.services.store import portal_locked, portal_uninstall_record

pytestmark = pytest.mark.django_db(transaction=True)


def _uninstall(portal, *, clean: bool) -> None:
    now = timezone.now()
    with portal_locked(portal.pk) as locked:
        portal_uninstall_record(locked, event_ts=now, delete_data_after=now if clean else None, now=now)


def test_uninstall_revokes_the_portals_keys_and_clean_purges_its_mirror(mirrored, make_key, api):
    portal, other = mirrored(1), mirrored(2)
    key, both, elsewhere = make_key(portal), make_key(portal, other), make_key(other)
    path = f"/api/v1/portals/{portal.member_id}/deals/1"
    assert api.get(path, HTTP_X_API_KEY=key).status_code == 200
    _uninstall(portal, clean=True)
    assert api.get(path, HTTP_X_API_KEY=key).status_code == 401
    revoked = {k.prefix for k in ApiKey.objects.filter(revoked_at__isnull=False)}
    assert revoked == {key.split("_")[1], both.split("_")[1]}  # a key that also covers it goes too
    assert api.get(f"/api/v1/portals/{other.member_id}/deals/1", HTTP_X_API_KEY=elsewhere).status_code == 200
    assert Deal.objects.filter(portal=portal).exists()  # the grace period first
    portals_data_purge(now=timezone.now() + timedelta(seconds=1))
    assert (
        not Deal.objects.filter(portal=portal).exists()
        and not SyncState.objects.filter(portal=portal).exists()
    )
    assert Deal.objects.filter(portal=other).count() == 120


def test_cli_prints_a_key_once_lists_rotates_and_revokes(mirrored, api):
    portal = mirrored()
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "bitrix",
        "apikey",
        "create",
        "--portal",
        portal.member_id,
        "--name",
        "exports",
        "--scopes",
        "deals:read,leads:read",
        "--expires-days",
        "90",
        "--allow-ip",
        "127.0.0.0/8",
        stdout=out,
        stderr=err,
    )
    raw = out.getvalue().strip()
    assert re.fullmatch(r"b24k_[a-z2-7]{10}_[A-Za-z0-9_-]{43}", raw)
    row = ApiKey.objects.get()
    assert (
        row.scopes == ["deals:read", "leads:read"]
        and row.allow_ips == ["127.0.0.0/8"]
        and raw not in row.digest
    )
    assert api.get(f"/api/v1/portals/{portal.member_id}/deals/1", HTTP_X_API_KEY=raw).status_code == 200
    listing = io.StringIO()
    call_command("bitrix", "apikey", "list", "--portal", portal.member_id, stdout=listing)
    assert row.prefix in listing.getvalue() and raw not in listing.getvalue()
    rotated = io.StringIO()
    call_command(
        "bitrix", "apikey", "rotate", row.prefix, "--overlap-hours", "2", stdout=rotated, stderr=io.StringIO()
    )
    new = rotated.getvalue().strip()
    assert (
        new != raw
        and api.get(f"/api/v1/portals/{portal.member_id}/leads/1", HTTP_X_API_KEY=new).status_code == 200
    )
    call_command("bitrix", "apikey", "revoke", new, stdout=io.StringIO())
    assert api.get(f"/api/v1/portals/{portal.member_id}/leads/1", HTTP_X_API_KEY=new).status_code == 401
    errors = io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "bitrix",
            "apikey",
            "create",
            "--portal",
            portal.member_id,
            "--name",
            "x",
            "--scopes",
            "tasks:write",
            stdout=io.StringIO(),
            stderr=errors,
        )
    assert "unknown scopes: tasks:write" in errors.getvalue()


def _frame(portal, *, admin: bool) -> str:
    return signing.dumps({"p": portal.pk, "u": 1, "a": admin}, salt=FRAME_SIGNING_SALT)


def test_the_portal_administrator_sees_makes_and_revokes_every_key_of_the_portal(mirrored, make_key, api):
    portal = mirrored()
    operators = make_key(portal)
    token = _frame(portal, admin=True)
    page = api.get(f"/bitrix/app/keys/?frame={token}")
    assert page.status_code == 200 and operators.split("_")[1] in page.content.decode()
    assert f"https://{portal.domain}" in page["Content-Security-Policy"] and "X-Frame-Options" not in page
    made = api.post(
        "/bitrix/app/keys/",
        {"frame": token, "action": "create", "name": "erp", "scopes": ["deals:read"], "expires_days": "30"},
    )
    raw = re.search(r"b24k_[a-z2-7]{10}_[A-Za-z0-9_-]+", made.content.decode()).group(0)
    key = ApiKey.objects.get(name="erp")
    assert key.created_by == "portal administrator (user 1)" and key.scopes == ["deals:read"]
    assert api.get(f"/api/v1/portals/{portal.member_id}/deals/1", HTTP_X_API_KEY=raw).status_code == 200
    assert raw not in api.get(f"/bitrix/app/keys/?frame={token}").content.decode()  # shown once
    api.post("/bitrix/app/keys/", {"frame": token, "action": "revoke", "prefix": operators.split("_")[1]})
    assert api.get(f"/api/v1/portals/{portal.member_id}/deals/1", HTTP_X_API_KEY=operators).status_code == 401
    assert api.get(f"/bitrix/app/keys/?frame={_frame(portal, admin=False)}").status_code == 403
    assert api.get("/bitrix/app/keys/?frame=forged").status_code == 403


def test_keys_in_the_admin_show_the_key_once(mirrored, api, admin_user):
    portal = mirrored()
    api.force_login(admin_user)
    answer = api.post(
        "/admin/api/apikey/add/",
        {
            "name": "from the admin",
            "portals": [portal.pk],
            "scope_choices": ["deals:read"],
            "expires_days": "",
            "allow_ips_text": "",
        },
    )
    assert answer.status_code == 200
    raw = re.search(r"b24k_[a-z2-7]{10}_[A-Za-z0-9_-]+", answer.content.decode()).group(0)
    key = ApiKey.objects.get(name="from the admin")
    assert key.created_by.startswith("admin:") and list(key.portals.all()) == [portal]
    assert api.get(f"/api/v1/portals/{portal.member_id}/deals/1", HTTP_X_API_KEY=raw).status_code == 200
    assert raw not in api.get(f"/admin/api/apikey/{key.pk}/change/").content.decode()
