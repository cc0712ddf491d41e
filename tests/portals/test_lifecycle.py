"""Uninstall, late uninstall, clean uninstall, application_token updates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from portals.bitrix.exceptions import Bitrix24PortalUnavailable
from portals.models import Portal
from portals.services.confirm import tokens_equal
from portals.services.credentials import PortalCredentials
from portals.services.lifecycle import (
    plan_for_license,
    portal_application_token_set,
    portal_uninstall,
    portals_data_purge,
)

from .helpers import make_portal

pytestmark = pytest.mark.django_db


def uninstalled_in_sandbox(sandbox, portal: Portal) -> Portal:
    """Uninstall the app on the sandbox portal itself (which revokes every token of the app)."""
    sandbox.control("app/uninstall", member_id=portal.member_id)
    return portal


def test_confirmed_uninstall_erases_tokens_and_fails_fast(install_portal, portals_sandbox):
    portal = uninstalled_in_sandbox(portals_sandbox, install_portal())
    assert portal_uninstall(portal=portal, clean=False, event_ts=timezone.now()) is True
    portal.refresh_from_db()
    assert portal.state == Portal.State.UNINSTALLED
    assert (portal.access_token, portal.refresh_token, portal.application_token) == ("", "", "")
    with pytest.raises(Bitrix24PortalUnavailable):
        PortalCredentials(portal.pk).access_token()


def test_uninstall_that_bitrix24_does_not_confirm_changes_nothing(install_portal):
    """A forged ONAPPUNINSTALL (any user holds the application token): app.info still says installed."""
    portal = install_portal()
    before = Portal.objects.get(pk=portal.pk)
    assert portal_uninstall(portal=portal, clean=True, event_ts=timezone.now()) is False
    after = Portal.objects.get(pk=portal.pk)
    assert after.state == Portal.State.ACTIVE
    assert (after.access_token, after.application_token) == (before.access_token, before.application_token)
    assert after.data_delete_after is None


def test_uninstall_older_than_the_install_changes_nothing(install_portal, portals_sandbox):
    portal = uninstalled_in_sandbox(portals_sandbox, install_portal())
    token = portal.access_token
    event_ts = portal.installed_at - timedelta(seconds=30)
    assert portal_uninstall(portal=portal, clean=False, event_ts=event_ts) is False
    portal.refresh_from_db()
    assert portal.state == Portal.State.ACTIVE
    assert portal.access_token == token


def event_for(owner: Portal, key: str):
    from events.models import Event

    return Event.objects.create(
        portal=owner, event="ONCRMDEALADD", object_key=f"deal:{key}", ts=timezone.now(),
        idempotency_key=key, shard=0, payload={"event": "ONCRMDEALADD"},
    )  # fmt: skip


def test_clean_uninstall_deletes_related_data_only_after_the_grace_period(
    install_portal, portals_sandbox, settings
):
    from events.models import Event

    settings.BITRIX24_UNINSTALL_CLEAN_GRACE_HOURS = 72
    portal = uninstalled_in_sandbox(portals_sandbox, install_portal(1))
    other = make_portal()
    event_for(portal, "a")
    event_for(other, "b")
    assert portal_uninstall(portal=portal, clean=True, event_ts=timezone.now())
    assert Portal.objects.filter(pk=portal.pk, state=Portal.State.UNINSTALLED).exists()
    assert portals_data_purge(now=timezone.now() + timedelta(hours=71)) == []
    assert Event.objects.filter(portal=portal).count() == 1  # still in its grace period
    assert portals_data_purge(now=timezone.now() + timedelta(hours=73)) == [portal.member_id]
    assert not Event.objects.filter(portal=portal).exists()
    assert Portal.objects.filter(pk=portal.pk).exists()  # the row stays, for late uninstalls
    assert Event.objects.filter(portal=other).count() == 1  # another portal's data is untouched


def test_reinstall_within_the_grace_period_keeps_the_data(install_portal, portals_sandbox):
    from events.models import Event

    portal = uninstalled_in_sandbox(portals_sandbox, install_portal(1))
    event_for(portal, "a")
    assert portal_uninstall(portal=portal, clean=True, event_ts=timezone.now())
    portals_sandbox.control("app/install", member_id=portal.member_id)
    reinstalled = install_portal(1)
    assert reinstalled.pk == portal.pk and reinstalled.data_delete_after is None
    assert portals_data_purge(now=timezone.now() + timedelta(days=30)) == []
    assert Event.objects.filter(portal=portal).count() == 1


def test_plain_uninstall_keeps_the_data(install_portal, portals_sandbox):
    from events.models import Event

    portal = uninstalled_in_sandbox(portals_sandbox, install_portal())
    event_for(portal, "k")
    assert portal_uninstall(portal=portal, clean=False, event_ts=timezone.now())
    assert Portal.objects.get(pk=portal.pk).data_delete_after is None
    assert portals_data_purge(now=timezone.now() + timedelta(days=30)) == []
    assert Event.objects.filter(portal=portal).count() == 1


def test_application_token_set_and_constant_time_match():
    portal = make_portal(application_token="old-token")
    portal_application_token_set(portal=portal, application_token="new-token")
    stored = Portal.objects.get(pk=portal.pk)
    assert tokens_equal(stored.application_token, "new-token")
    assert not tokens_equal(stored.application_token, "old-token")
    assert not tokens_equal(stored.application_token, "")
    assert not tokens_equal("", "")


@pytest.mark.parametrize(
    ("license", "plan"),
    [("en_ent250", "enterprise"), ("ru_ent", "enterprise"), ("en_basic", "standard"), ("en_pro", "standard")],
)
def test_plan_follows_the_license(license, plan):
    assert plan_for_license(license) == plan
