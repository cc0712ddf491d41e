"""Attacks by an ordinary user of an installed portal (protocol §9, "Insiders").

Such a user opens the app and so holds, from the frame POST, their own access and refresh tokens
and the portal's application token. Each test replays one attack that used to succeed and checks
that it now fails and changes nothing, while Bitrix24's genuine traffic keeps working.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest
from qs_codec import EncodeOptions, encode

from events.models import Event
from portals.models import Portal
from portals.services.client import client_for_portal
from tests.events.test_sandbox import _deliveries, app  # noqa: F401  (the live app fixture)
from tests.fixtures.portals import issue_tokens, wait_for
from tests.portals.test_reauth_and_frames import consent, mark_reauth

pytestmark = pytest.mark.django_db(transaction=True)

CREDENTIALS = ("user_id", "access_token", "refresh_token", "application_token", "state", "installed_at")


def non_admin(sandbox, index: int = 1) -> int:
    return next(u for u in range(2, 6) if u != sandbox.portal(index)["admin_user_id"])


def user_frame(sandbox, user_id: int | None = None) -> dict:
    """What a user's browser receives when they open the app: the frame POST's query and body."""
    return sandbox.control("lifecycle/frame", portal=1, user_id=user_id)


def snapshot(portal: Portal) -> dict:
    stored = Portal.objects.get(pk=portal.pk)
    return {name: getattr(stored, name) for name in CREDENTIALS}


def post_form(client, path: str, form: dict, query: dict | None = None):
    body = encode(form, options=EncodeOptions(encode=True))
    url = f"{path}?{urlencode(query)}" if query else path
    return client.post(url, data=body, content_type="application/x-www-form-urlencoded")


def event_form(frame: dict, event: str, *, data: dict, **auth: str) -> dict:
    """An event as the user could forge it from their frame POST."""
    body = frame["body"]
    return {
        "event": event,
        "event_handler_id": "1",
        "ts": str(int(time.time())),
        "data": data,
        "auth": {
            "access_token": body["AUTH_ID"],
            "expires_in": "3600",
            "domain": frame["query"]["DOMAIN"],
            "member_id": body["member_id"],
            "application_token": body["APPLICATION_TOKEN"],
            "client_endpoint": f"https://{frame['query']['DOMAIN']}/rest/",
            "server_endpoint": body["SERVER_ENDPOINT"],
            **auth,
        },
    }


def test_a_non_admin_cannot_install_by_frame_or_by_onappinstall(app, client):  # noqa: F811
    sandbox, portal = app
    before = snapshot(portal)
    frame = user_frame(sandbox, non_admin(sandbox))
    forged_frame = {**frame["body"], "REFRESH_ID": "garbage-refresh", "APPLICATION_TOKEN": "attacker-token"}
    response = post_form(client, "/bitrix/install/", forged_frame, frame["query"])
    assert response.status_code == 403
    assert b"administrator" in response.content
    # With the user's real refresh token too: the user is not an administrator.
    assert post_form(client, "/bitrix/install/", frame["body"], frame["query"]).status_code == 403

    install_event = event_form(
        frame, "ONAPPINSTALL", data={"VERSION": "1"},
        refresh_token=frame["body"]["REFRESH_ID"], application_token="attacker-token",
    )  # fmt: skip
    assert post_form(client, "/bitrix/install/", install_event).status_code == 403
    assert snapshot(portal) == before

    # Events signed with the attacker's token are refused; the portal's genuine ones still arrive.
    forged = event_form(
        frame, "ONCRMDEALUPDATE", data={"FIELDS": {"ID": "1"}}, application_token="attacker-token"
    )
    assert post_form(client, "/bitrix/events/", forged).status_code == 403
    sandbox.control("lifecycle/crm", portal=1, action="deal-update", id=1)
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    assert _deliveries(sandbox, "ONCRMDEALUPDATE")[-1]["status"] == 200
    assert client_for_portal(member_id=portal.member_id).call("user.admin") is True


def test_a_forged_app_update_does_not_replace_the_application_token(app, client):  # noqa: F811
    sandbox, portal = app
    before = snapshot(portal)
    frame = user_frame(sandbox, non_admin(sandbox))
    version = str(client_for_portal(member_id=portal.member_id).call("app.info")["VERSION"])
    for announced in (version, str(int(version) + 1)):
        update = event_form(
            frame, "ONAPPUPDATE", data={"VERSION": announced, "PREVIOUS_VERSION": version},
            application_token=f"attacker-token-{announced}",
        )  # fmt: skip
        assert post_form(client, "/bitrix/events/", update).status_code == 403
        time.sleep(2.1)  # past the per-portal pause between two update checks
    # Even an administrator's own token can't announce an update that app.info doesn't show.
    admin = user_frame(sandbox)
    update = event_form(admin, "ONAPPUPDATE", data={"VERSION": str(int(version) + 5)}, application_token="x")
    assert post_form(client, "/bitrix/events/", update).status_code == 403
    assert snapshot(portal) == before
    forged = event_form(frame, "ONCRMDEALUPDATE", data={"FIELDS": {"ID": "1"}}, application_token="x")
    assert post_form(client, "/bitrix/events/", forged).status_code == 403


def test_a_non_admin_cannot_reauthorise(admin_client, install_portal, portals_sandbox):
    portal = install_portal(1)
    mark_reauth(portal)
    before = snapshot(portal)
    start = admin_client.get(f"/bitrix/oauth/start/?portal={portal.member_id}")
    callback = consent(start["Location"], portals_sandbox.ca_bundle, user_id=str(non_admin(portals_sandbox)))
    refused = admin_client.get("/bitrix/oauth/callback/?" + urlencode(callback))
    assert refused.status_code == 403
    assert snapshot(portal) == before  # still the admin's (dead) pair, still needs re-authorisation

    # An administrator completes it.
    start = admin_client.get(f"/bitrix/oauth/start/?portal={portal.member_id}")
    callback = consent(start["Location"], portals_sandbox.ca_bundle)
    assert admin_client.get("/bitrix/oauth/callback/?" + urlencode(callback)).status_code == 200
    restored = Portal.objects.get(pk=portal.pk)
    assert restored.state == Portal.State.ACTIVE
    assert restored.user_id == portals_sandbox.portal(1)["admin_user_id"]


def test_the_app_page_offers_reauthorisation_to_administrators_only(client, install_portal, portals_sandbox):
    from portals.services.frames import frame_session_from_signed

    portal = install_portal(1)
    user = issue_tokens(portals_sandbox, 1, user_id=non_admin(portals_sandbox))
    admin = issue_tokens(portals_sandbox, 1)
    for tokens, is_admin in ((user, False), (admin, True)):
        page = post_form(
            client,
            "/bitrix/app/",
            {
                "AUTH_ID": tokens["access_token"], "REFRESH_ID": tokens["refresh_token"],
                "SERVER_ENDPOINT": tokens["server_endpoint"], "member_id": portal.member_id,
                "APPLICATION_TOKEN": tokens["application_token"], "PLACEMENT": "DEFAULT",
            },
            {"DOMAIN": portal.domain, "PROTOCOL": "1", "LANG": "en"},
        )  # fmt: skip
        assert page.status_code == 200
        signed = page.context["frame_token"]
        assert frame_session_from_signed(signed).is_admin is is_admin
        start = client.get(f"/bitrix/oauth/start/?frame={signed}")
        assert start.status_code == (302 if is_admin else 403)


def test_a_forged_uninstall_changes_nothing_until_bitrix24_confirms(app, client):  # noqa: F811
    sandbox, portal = app
    before = snapshot(portal)
    frame = user_frame(sandbox, non_admin(sandbox))
    forged = event_form(frame, "ONAPPUNINSTALL", data={"CLEAN": "1", "LANGUAGE_ID": "en"})
    answer = post_form(client, "/bitrix/events/", forged)
    assert answer.status_code == 200  # it carries the portal's token: stored, it is only a hint
    wait_for(lambda: Event.objects.filter(pk=answer.json()["id"], status="done").exists())
    assert snapshot(portal) == before
    assert Portal.objects.get(pk=portal.pk).data_delete_after is None

    # Bitrix24's own uninstall (tokens revoked, app.info no longer answers) is applied.
    sandbox.control("lifecycle/uninstall", portal=1, clean=True)
    sandbox.control("lifecycle/deliveries/wait", timeout=20)
    # The forged copy released its idempotency key, so the genuine event was not taken for its duplicate.
    gone = wait_for(lambda: Portal.objects.filter(pk=portal.pk, state="uninstalled").first())
    assert gone.data_delete_after is not None  # CLEAN waits for its grace period
    assert Event.objects.filter(portal=portal).exists()


def test_the_installer_frame_and_onappinstall_may_carry_one_token_chain(client, portals_sandbox):
    """The second claim finds its refresh token spent: it changes no pair and moves no installed_at."""
    tokens = issue_tokens(portals_sandbox, 1)
    query = {"DOMAIN": tokens["client_endpoint"].split("/")[2], "PROTOCOL": "1", "LANG": "en"}
    frame = {
        "AUTH_ID": tokens["access_token"], "REFRESH_ID": tokens["refresh_token"],
        "SERVER_ENDPOINT": tokens["server_endpoint"], "member_id": tokens["member_id"],
        "PLACEMENT": "DEFAULT",
    }  # fmt: skip
    assert post_form(client, "/bitrix/install/", frame, query).status_code == 200
    first = Portal.objects.get(member_id=tokens["member_id"])
    assert first.application_token == ""  # an older portal's frame carries none

    replay = post_form(client, "/bitrix/install/", frame, query)  # the same POST again
    assert replay.status_code == 200
    event = {
        "event": "ONAPPINSTALL", "ts": str(int(time.time())), "data": {"VERSION": "1"},
        "auth": {
            "access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"],
            "domain": query["DOMAIN"], "member_id": tokens["member_id"],
            "client_endpoint": tokens["client_endpoint"], "server_endpoint": tokens["server_endpoint"],
            "application_token": tokens["application_token"],
        },
    }  # fmt: skip
    assert post_form(client, "/bitrix/install/", event).status_code == 200
    after = Portal.objects.get(pk=first.pk)
    assert (after.refresh_token, after.installed_at) == (first.refresh_token, first.installed_at)
    assert after.application_token == tokens["application_token"]
    assert client_for_portal(member_id=first.member_id).call("user.admin") is True


@pytest.mark.parametrize(
    "field, value",
    [
        ("AUTH_EXPIRES", "9" * 400),
        ("AUTH_EXPIRES", "99999999999"),
        ("DOMAIN", "x" * 5000),
        ("member_id", "\x00"),
    ],
)
def test_malformed_install_frames_are_refused_without_a_server_error(client, portals_sandbox, field, value):
    tokens = issue_tokens(portals_sandbox, 1)
    query = {"DOMAIN": tokens["client_endpoint"].split("/")[2], "PROTOCOL": "1"}
    form = {"AUTH_ID": "a" * 32, "REFRESH_ID": "r" * 32, "member_id": tokens["member_id"]}
    (query if field == "DOMAIN" else form)[field] = value
    response = post_form(client, "/bitrix/install/", form, query)
    assert 400 <= response.status_code < 500
    assert not Portal.objects.exists()
