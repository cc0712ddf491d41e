"""A disabled portal: no calls, its events dropped (lifecycle excepted), its refresh token kept alive."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from events.models import Event
from portals.bitrix.exceptions import Bitrix24PortalDisabled
from portals.models import Portal
from portals.services.client import client_for_portal
from portals.services.tokens import RefreshWhen, portal_tokens_refresh
from tests.fixtures.events import form_body, load_payload
from tests.fixtures.portals import sandbox_grants

pytestmark = pytest.mark.django_db(transaction=True)


def _requests(sandbox, member_id: str) -> int:
    return sandbox.counters()["requests"]["by_portal"].get(member_id, 0)


def _deal_event(portal: Portal) -> bytes:
    auth = {
        "member_id": portal.member_id,
        "application_token": portal.application_token,
        "domain": portal.domain,
    }
    return form_body(load_payload("oncrmdealupdate__basic", auth=auth))


def test_a_disabled_portal_makes_no_call_and_drops_its_events_until_enabled(
    logged_in, client, install_portal, portals_sandbox
):
    portal = install_portal(1)
    Portal.objects.filter(pk=portal.pk).update(application_token="app-token-disable")
    portal.refresh_from_db()
    operator = logged_in("operator")

    assert operator.post(f"/admin/portals/portal/{portal.pk}/act/disable/").status_code == 302
    assert Portal.objects.get(pk=portal.pk).disabled_at is not None
    assert "disable: disabled" in LogEntry.objects.get(object_id=str(portal.pk)).get_change_message()
    page = operator.get("/admin/portals/portal/").content.decode()
    assert "badge-disabled" in page

    sent = _requests(portals_sandbox, portal.member_id)
    with pytest.raises(Bitrix24PortalDisabled):
        client_for_portal(member_id=portal.member_id).call("profile")
    assert _requests(portals_sandbox, portal.member_id) == sent  # refused before anything is sent

    answer = client.generic(
        "POST", "/bitrix/events/", _deal_event(portal), content_type="application/x-www-form-urlencoded"
    )
    assert answer.status_code == 200 and answer.json()["result"] == "ignored"
    assert not Event.objects.filter(portal=portal).exists()

    # The refresh token is still kept alive: the keep-alive refresh goes on while disabled.
    grants = sandbox_grants(portals_sandbox, portal.member_id)
    soon = timezone.now() + timedelta(seconds=1)
    portal_tokens_refresh(portal_id=portal.pk, when=RefreshWhen(issued_before=soon), reason="keep-alive")
    assert sandbox_grants(portals_sandbox, portal.member_id) == grants + 1

    assert operator.post(f"/admin/portals/portal/{portal.pk}/act/enable/").status_code == 302
    assert Portal.objects.get(pk=portal.pk).disabled_at is None
    assert client_for_portal(member_id=portal.member_id).call("profile")
    answer = client.generic(
        "POST", "/bitrix/events/", _deal_event(portal), content_type="application/x-www-form-urlencoded"
    )
    assert answer.json()["result"] == "accepted"


def test_a_viewer_cannot_disable(logged_in, install_portal):
    portal = install_portal(1)
    viewer = logged_in("viewer")
    assert viewer.post(f"/admin/portals/portal/{portal.pk}/act/disable/").status_code == 403
    assert Portal.objects.get(pk=portal.pk).disabled_at is None
