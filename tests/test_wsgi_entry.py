"""The web process's entry point (bitrix_app.wsgi): the lean lane of the event receiver and the API,
and the full site beside it."""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from events.models import Event
from tests.fixtures.events import form_body, load_payload

pytestmark = pytest.mark.django_db


def call(
    path: str,
    *,
    method: str = "POST",
    body: bytes = b"",
    length: str | None = "auto",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request through the WSGI application, as the web server makes it."""
    from bitrix_app.wsgi import application

    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
        "HTTP_HOST": "127.0.0.1", "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/x-www-form-urlencoded", "wsgi.url_scheme": "http",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.errors": io.StringIO(),
    }  # fmt: skip
    environ.update(headers or {})
    if length is None:
        del environ["CONTENT_LENGTH"]
    elif length != "auto":
        environ["CONTENT_LENGTH"] = length
    started: list[tuple[str, list[tuple[str, str]]]] = []
    # As Django's test client does: the test's transaction must outlive the request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        chunks = application(
            environ, lambda status, headers, exc_info=None: started.append((status, headers))
        )
        content = b"".join(chunks)
        getattr(chunks, "close", lambda: None)()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    status, headers = started[0]
    return int(status.split()[0]), {name.lower(): value for name, value in headers}, content


def test_receiver_lane_stores_authentic_events_and_refuses_forged_ones(make_portal):
    payload = load_payload("oncrmdealupdate__basic")
    make_portal(payload)
    status, headers, content = call("/bitrix/events/", body=form_body(payload))
    assert status == 200, content
    event_id = json.loads(content)["id"]
    assert Event.objects.get(pk=event_id).event == "ONCRMDEALUPDATE"
    # The security middleware still runs on the lean lane; the frame-options one does not.
    assert headers["x-content-type-options"] == "nosniff"
    assert "x-frame-options" not in headers
    forged = load_payload(
        "oncrmdealupdate__basic", data={"FIELDS": {"ID": "77"}}, auth={"application_token": "x"}
    )
    status, _, content = call("/bitrix/events/", body=form_body(forged))
    assert status == 403
    assert json.loads(content)["error"] == "InvalidApplicationToken"
    assert Event.objects.count() == 1


@pytest.mark.parametrize("length", [None, ""])
def test_a_body_without_a_usable_content_length_is_still_read(make_portal, settings, length):
    # A chunked body, or a server that leaves CONTENT_LENGTH out: the event is not lost for it...
    payload = load_payload("oncrmdealupdate__basic")
    make_portal(payload)
    status, _, content = call("/bitrix/events/", body=form_body(payload), length=length)
    assert status == 200, content
    assert json.loads(content)["result"] == "accepted"
    # ... and the size limit still holds, reading one byte past it at most.
    settings.BITRIX24_EVENT_MAX_BYTES = 100
    status, _, content = call("/bitrix/events/", body=b"x=" + b"1" * 500, length=length)
    assert status == 413
    status, _, content = call("/bitrix/events/", body=b"", length=length)
    assert status == 400
    assert Event.objects.count() == 1


def test_api_lane_answers_without_the_browser_middleware(make_portal, transactional_db):
    from api.services.keys import apikey_create

    portal = make_portal(load_payload("oncrmdealupdate__basic"))
    key = apikey_create(name="lane", portals=[portal])[1]
    browser = {"HTTP_ACCEPT_LANGUAGE": "ru", "HTTP_COOKIE": "sessionid=x; csrftoken=y"}
    status, headers, content = call(
        f"/api/v1/portals/{portal.member_id}/deals", method="GET", headers={"HTTP_X_API_KEY": key, **browser}
    )
    assert status == 200, content
    assert json.loads(content)["items"] == []
    # No session, locale or CSRF work: nothing varies by cookie or language, no cookie is set.
    assert not {"vary", "set-cookie", "content-language", "x-frame-options"} & set(headers)
    # What stays on the lane still runs: the request id, the security headers.
    assert headers["x-request-id"] and headers["x-content-type-options"] == "nosniff"
    # The API's docs page is a browser's page: the full stack.
    status, headers, _ = call("/api/docs", method="GET", headers=browser)
    assert status == 200 and "Accept-Language" in headers["vary"]


def test_receiver_lane_keeps_the_views_method_check():
    status, _, _ = call("/bitrix/events/", method="GET")
    assert status == 405


def test_other_paths_get_the_full_middleware_stack():
    # The admin's login page needs sessions, CSRF and auth: it only renders through the full stack.
    status, headers, content = call("/admin/login/", method="GET")
    assert status == 200, content[:300]
    assert headers["x-frame-options"] == "DENY"
    assert "csrftoken" in headers.get("set-cookie", "")


def test_lean_handler_drops_only_the_listed_middleware():
    from bitrix_app.wsgi import LEAN_SKIPS, application

    before = list(settings.MIDDLEWARE)
    lean = [path for path in settings.MIDDLEWARE if path not in LEAN_SKIPS]
    assert lean and len(lean) < len(before)  # something is skipped, something still runs
    # Loading the lean chain again leaves the settings as they were.
    application.lean.load_middleware()
    assert settings.MIDDLEWARE == before
    assert application.lean._middleware_chain is not None
