"""Bindings of our URLs are owned: whatever anyone else bound to them goes, and one change delivered
through several bindings is stored and handled once. Over real HTTPS with the sandbox, the live
server and a real Celery worker (the installed portal of tests/events/test_sandbox.py)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from django.utils import timezone

from events.models import Event
from events.services.binding import (
    AdministratorTokenRequired,
    app_events_bind,
    app_events_desired,
    app_events_reconcile,
    app_events_reconcile_all,
    events_handler_url,
    handler_is_ours,
    install_handler_url,
)
from portals.models import Portal
from portals.services.client import client_for_portal
from portals.services.rest import TokenCredentials, rest_call

# The installed-portal fixture lives with the sandbox flow tests; test arguments shadow the import.
# ruff: noqa: F811
from tests.events.test_sandbox import _deliveries, app  # noqa: F401
from tests.fixtures.portals import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FOREIGN_URL = "https://hooks.example.invalid/bitrix24/"  # another integration's handler
NON_ADMIN = 2  # a user of the sandbox portal who doesn't administer it (the admin is user 1)

Row = tuple[str, str, str, int]  # event.get's row: event, handler, auth_type, offline


def _user(sandbox: Any, user_id: int) -> TokenCredentials:
    """A token of the app for one user of portal 1, as everyone who opens the app gets one."""
    grant = sandbox.control("oauth/issue", member_id=sandbox.portal(1)["member_id"], user_id=user_id)
    return TokenCredentials(
        token=grant["access_token"], client_endpoint=grant["client_endpoint"], member_id=grant["member_id"]
    )


def _call(credentials: TokenCredentials, method: str, **params: Any) -> Any:
    return rest_call(credentials=credentials, method=method, params=params)


def _rows(sandbox: Any) -> set[Row]:
    """Every binding of the app on portal 1, as an administrator's event.get shows it."""
    rows = _call(_user(sandbox, 1), "event.get") or []
    return {(r["event"], r["handler"], str(r["auth_type"]), int(r["offline"])) for r in rows}


def _ours(portal: Portal) -> set[Row]:
    """The bindings the app makes (auth_type 0) plus the app card's ONAPPINSTALL handler."""
    desired = {(b.event, b.handler, "0", int(b.offline)) for b in app_events_desired(portal=portal)}
    return desired | {("ONAPPINSTALL", install_handler_url(), "0", 0)}


@pytest.mark.parametrize("repair", [app_events_reconcile, app_events_bind], ids=["reconcile", "bind"])
def test_foreign_bindings_of_our_urls_are_removed_whatever_their_auth_type(app, repair):
    sandbox, portal = app
    receiver, installer = events_handler_url(), install_handler_url()
    user = _user(sandbox, NON_ADMIN)
    assert _call(user, "user.admin") is False
    # A non-administrator binds as themselves (auth_type = their id): to the receiver and the install URL.
    _call(user, "event.bind", event="ONCRMDEALUPDATE", handler=receiver)
    _call(user, "event.bind", event="ONCRMDEALADD", handler=installer)
    # An administrator's token can name any user: auth_type 3 to the receiver, and an event we don't want.
    admin = client_for_portal(member_id=portal.member_id)
    admin.call("event.bind", {"event": "ONCRMDEALUPDATE", "handler": receiver, "auth_type": 3}, read=False)
    admin.call("event.bind", {"event": "ONCRMACTIVITYADD", "handler": receiver}, read=False)
    # Not ours: another host, and a path of our host that routes to none of our views.
    admin.call("event.bind", {"event": "ONCRMDEALUPDATE", "handler": FOREIGN_URL, "auth_type": 3}, read=False)
    admin.call("event.bind", {"event": "ONCRMDEALUPDATE", "handler": receiver + "other/"}, read=False)
    foreign_to_us = {
        ("ONCRMDEALUPDATE", receiver, str(NON_ADMIN), 0),
        ("ONCRMDEALADD", installer, str(NON_ADMIN), 0),
        ("ONCRMDEALUPDATE", receiver, "3", 0),
        ("ONCRMACTIVITYADD", receiver, "0", 0),
    }
    others = {("ONCRMDEALUPDATE", FOREIGN_URL, "3", 0), ("ONCRMDEALUPDATE", receiver + "other/", "0", 0)}
    assert _rows(sandbox) == _ours(portal) | foreign_to_us | others

    report = repair(portal_id=portal.pk)

    assert _rows(sandbox) == _ours(portal) | others
    assert {(b.event, b.handler, str(b.auth_type), int(b.offline)) for b in report.unbound} == foreign_to_us
    assert report.bound == []  # ours were never touched, so nothing had to be bound again


def test_unbind_names_the_auth_type(app):
    """A binding of our receiver for one of our events, as user 2, goes; ours (auth_type 0) of the
    same event and URL stays. Without auth_type, event.unbind would match either both (the docs'
    reading, the sandbox's) or only ours."""
    sandbox, portal = app
    receiver = events_handler_url()
    client_for_portal(member_id=portal.member_id).call(
        "event.bind", {"event": "ONCRMDEALUPDATE", "handler": receiver, "auth_type": 2}, read=False
    )
    assert ("ONCRMDEALUPDATE", receiver, "2", 0) in _rows(sandbox)
    app_events_reconcile(portal_id=portal.pk)
    rows = _rows(sandbox)
    assert ("ONCRMDEALUPDATE", receiver, "2", 0) not in rows
    assert ("ONCRMDEALUPDATE", receiver, "0", 0) in rows


def test_a_non_administrator_token_reconciles_nothing_and_says_why(app, caplog):
    sandbox, portal = app
    receiver = events_handler_url()
    client_for_portal(member_id=portal.member_id).call(
        "event.bind", {"event": "ONCRMDEALUPDATE", "handler": receiver, "auth_type": 3}, read=False
    )
    # The non-administrator has a binding of their own: all their event.get would show.
    user = _user(sandbox, NON_ADMIN)
    _call(user, "event.bind", event="ONCRMDEALADD", handler=receiver)
    before = _rows(sandbox)
    grant = sandbox.control("oauth/issue", member_id=portal.member_id, user_id=NON_ADMIN)
    portal.refresh_from_db()
    portal.access_token, portal.refresh_token = grant["access_token"], grant["refresh_token"]
    portal.expires_at = timezone.now() + timezone.timedelta(seconds=int(grant["expires_in"]))
    portal.save()

    with caplog.at_level(logging.WARNING, logger="events"):
        results = app_events_reconcile_all()
        with pytest.raises(AdministratorTokenRequired):
            app_events_bind(portal_id=portal.pk)

    assert results[portal.member_id] == "not reconciled: the stored token is not an administrator's"
    refusals = [r for r in caplog.records if r.getMessage() == "events.reconcile.not_admin"]
    assert len(refusals) == 2 and refusals[0].member_id == portal.member_id
    assert _rows(sandbox) == before  # nothing bound as that user, nothing unbound on a partial view


def _at_start_of_a_second() -> None:
    time.sleep(1.02 - time.time() % 1)


def test_one_change_delivered_through_two_bindings_is_stored_and_handled_once(app, caplog):
    """One deal edit reaches our receiver twice, as two users (auth_type 0: the editor; 3: user 3)."""
    sandbox, portal = app
    client_for_portal(member_id=portal.member_id).call(
        "event.bind",
        {"event": "ONCRMDEALUPDATE", "handler": events_handler_url(), "auth_type": 3},
        read=False,
    )
    with caplog.at_level(logging.INFO, logger="examples.deals"):
        # Both copies carry the second they are sent in (ts). A pair sent across a second boundary
        # is two deliveries with different ts, so a deal is edited until one pair shares its second.
        for deal_id in (1, 2, 3):
            sent = len(_deliveries(sandbox, "ONCRMDEALUPDATE"))
            _at_start_of_a_second()
            sandbox.control("lifecycle/crm", portal=1, action="deal-update", id=deal_id)
            sandbox.control("lifecycle/deliveries/wait", timeout=20)
            pair = _deliveries(sandbox, "ONCRMDEALUPDATE")[sent:]
            assert len(pair) == 2 and all(d["status"] == 200 for d in pair)
            if int(pair[0]["started_at"]) == int(pair[1]["started_at"]):
                break
        else:
            pytest.fail("no deal edit had both of its deliveries sent within one second")
        key = f"ONCRMDEAL:{deal_id}"
        wait_for(lambda: Event.objects.filter(object_key=key, status="done").exists())
        time.sleep(1)  # a second row, were there one, would be dispatched meanwhile
    rows = Event.objects.filter(object_key=key)
    assert rows.count() == 1 and rows.get().attempts == 1
    handled = [r for r in caplog.records if r.getMessage() == "deal.changed" and r.deal_id == str(deal_id)]
    assert len(handled) == 1


@pytest.mark.parametrize(
    ("url", "ours"),
    [
        ("https://app.example.com/bitrix/events/", True),
        ("https://APP.example.com:443/bitrix/install/", True),
        ("https://app.example.com/bitrix/%65vents/?x=1", True),  # decoded and routed by the server
        ("https://app.example.com/bitrix/events/other/", False),  # no view of ours
        ("http://app.example.com/bitrix/events/", False),
        ("https://app.example.com:8443/bitrix/events/", False),
        ("https://app.example.com:x/bitrix/events/", False),
        ("https://hooks.example.com/bitrix/events/", False),
        ("", False),
    ],
)
def test_which_handlers_are_ours(settings, url, ours):
    settings.BITRIX24_APP_URL = "https://app.example.com"
    assert handler_is_ours(url) is ours


def test_ours_under_a_path_prefix(settings):
    settings.BITRIX24_APP_URL = "https://example.com/b24/"
    assert handler_is_ours("https://example.com/b24/bitrix/events/")
    assert not handler_is_ours("https://example.com/bitrix/events/")
