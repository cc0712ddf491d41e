"""The receiver's exact limits (docs/events.md, "Answers"): a body of BITRIX24_EVENT_MAX_BYTES is read,
one byte more is refused with 413, on both reading paths; and a burst of refusals from one address is
logged once per reason and address every 10 s, the next line carrying how many were suppressed."""

from __future__ import annotations

import json
import logging

import pytest

from events import views
from events.models import Event
from portals.refusals import RefusalLog
from tests.fixtures.events import form_body, load_payload
from tests.test_wsgi_entry import call

pytestmark = pytest.mark.django_db

URL = "/bitrix/events/"
FORM = "application/x-www-form-urlencoded"


def deal(deal_id: str) -> dict:
    return load_payload("oncrmdealupdate__basic", data={"FIELDS": {"ID": deal_id}})


def test_a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_413(client, make_portal, settings):
    make_portal(deal("1"))
    body = form_body(deal("1"))
    settings.BITRIX24_EVENT_MAX_BYTES = len(body)
    at_limit = client.generic("POST", URL, body, content_type=FORM)
    assert at_limit.status_code == 200 and at_limit.json()["result"] == "accepted"
    over = form_body(deal("12"))  # the same event with one more digit in its deal id
    assert len(over) == len(body) + 1
    refused = client.generic("POST", URL, over, content_type=FORM)
    assert refused.status_code == 413 and refused.json()["error"] == "EventTooLarge"
    assert Event.objects.count() == 1


def test_without_a_content_length_the_limit_is_exact_too(make_portal, settings):
    # A chunked body (no Content-Length) is read from the stream up to one byte past the limit.
    make_portal(deal("2"))
    body = form_body(deal("2"))
    settings.BITRIX24_EVENT_MAX_BYTES = len(body)
    status, _, content = call(URL, body=body, length=None)
    assert status == 200 and json.loads(content)["result"] == "accepted"
    over = form_body(deal("23"))
    assert len(over) == len(body) + 1
    status, _, content = call(URL, body=over, length=None)
    assert status == 413 and json.loads(content)["error"] == "EventTooLarge"
    assert Event.objects.count() == 1


class Clock:
    """The refusal log's clock, moved by the test instead of waiting out the 10 s window."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def refusal_lines(caplog) -> list[tuple[str, int, str, int]]:
    return [
        (r.reason, r.status, r.remote, r.suppressed)
        for r in caplog.records
        if r.name == "events" and r.getMessage() == "events.refused"
    ]


def forged(deal_id: str) -> bytes:
    payload = deal(deal_id)
    return form_body({**payload, "auth": {**payload["auth"], "application_token": "forged"}})


def send(client, body: bytes, remote: str = "203.0.113.7") -> int:
    return client.generic("POST", URL, body, content_type=FORM, REMOTE_ADDR=remote).status_code


def test_a_burst_of_refusals_from_one_address_is_logged_once(client, make_portal, caplog):
    # The receiver's own log, on the real clock: thirty refusals take far less than its 10 s.
    make_portal(deal("3"))
    body = forged("3")
    with caplog.at_level(logging.WARNING, logger="events"):
        assert [send(client, body) for _ in range(30)] == [403] * 30
        assert send(client, body, "198.51.100.4") == 403  # another address has a window of its own
    assert refusal_lines(caplog) == [
        ("InvalidApplicationToken", 403, "203.0.113.7", 0),
        ("InvalidApplicationToken", 403, "198.51.100.4", 0),
    ]
    assert Event.objects.count() == 0


def test_the_line_after_the_window_carries_how_many_were_suppressed(client, make_portal, caplog, monkeypatch):
    make_portal(deal("4"))
    body = forged("4")
    clock = Clock()
    # The receiver's kind of log with a clock the test moves, instead of waiting out the 10 s.
    monkeypatch.setattr(views, "_log_refusal", RefusalLog(views.logger, "events.refused", clock=clock))
    with caplog.at_level(logging.WARNING, logger="events"):
        assert [send(client, body) for _ in range(30)] == [403] * 30
        clock.now = 5009.9
        assert send(client, body) == 403
        assert refusal_lines(caplog) == [("InvalidApplicationToken", 403, "203.0.113.7", 0)]
        clock.now = 5010.0  # the 10 s are over
        assert send(client, body) == 403
    assert refusal_lines(caplog)[1:] == [("InvalidApplicationToken", 403, "203.0.113.7", 30)]
