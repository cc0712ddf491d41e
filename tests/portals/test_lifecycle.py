"""Uninstall, late uninstall, clean uninstall, application_token updates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from portals.bitrix.exceptions import Bitrix24PortalUnavailable
from portals.models import Portal
from portals.services.credentials import PortalCredentials
from portals.services.lifecycle import (
    application_token_matches,
    plan_for_license,
    portal_uninstall,
    portal_update_application_token,
)

from .helpers import make_portal

pytestmark = pytest.mark.django_db


def test_uninstall_erases_tokens_and_fails_fast():
    portal = make_portal()
    assert portal_uninstall(portal=portal, clean=False, event_ts=timezone.now()) is True
    portal.refresh_from_db()
    assert portal.state == Portal.State.UNINSTALLED
    assert (portal.access_token, portal.refresh_token, portal.application_token) == ("", "", "")
    with pytest.raises(Bitrix24PortalUnavailable):
        PortalCredentials(portal.pk).access_token()


def test_uninstall_older_than_the_install_changes_nothing():
    installed = timezone.now()
    portal = make_portal(installed_at=installed)
    token = portal.access_token
    assert portal_uninstall(portal=portal, clean=False, event_ts=installed - timedelta(seconds=30)) is False
    portal.refresh_from_db()
    assert portal.state == Portal.State.ACTIVE
    assert portal.access_token == token


def test_clean_uninstall_deletes_related_data_but_keeps_the_portal_row():
    from events.models import Event

    portal = make_portal()
    other = make_portal()

    def event_for(owner: Portal, key: str) -> Event:
        return Event.objects.create(
            portal=owner, event="ONCRMDEALADD", object_key=f"deal:{key}", ts=timezone.now(),
            idempotency_key=key, shard=0, payload={"event": "ONCRMDEALADD"},
        )  # fmt: skip

    event_for(portal, "a")
    event_for(other, "b")
    assert portal_uninstall(portal=portal, clean=True, event_ts=timezone.now())
    assert Portal.objects.filter(pk=portal.pk, state=Portal.State.UNINSTALLED).exists()
    assert not Event.objects.filter(portal=portal).exists()
    assert Event.objects.filter(portal=other).count() == 1  # another portal's data is untouched


def test_plain_uninstall_keeps_the_data():
    from events.models import Event

    portal = make_portal()
    Event.objects.create(
        portal=portal, event="ONCRMDEALADD", object_key="deal:1", ts=timezone.now(),
        idempotency_key="k", shard=0, payload={},
    )  # fmt: skip
    assert portal_uninstall(portal=portal, clean=False, event_ts=timezone.now())
    assert Event.objects.filter(portal=portal).count() == 1


def test_application_token_update_and_constant_time_match():
    portal = make_portal(application_token="old-token")
    portal_update_application_token(portal=portal, application_token="new-token")
    stored = Portal.objects.get(pk=portal.pk)
    assert application_token_matches(portal=stored, application_token="new-token")
    assert not application_token_matches(portal=stored, application_token="old-token")
    assert not application_token_matches(portal=stored, application_token="")


@pytest.mark.parametrize(
    ("license", "plan"),
    [("en_ent250", "enterprise"), ("ru_ent", "enterprise"), ("en_basic", "standard"), ("en_pro", "standard")],
)
def test_plan_follows_the_license(license, plan):
    assert plan_for_license(license) == plan
