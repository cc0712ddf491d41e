"""The shard waker: requests hand wake-ups to a background thread and never wait for them."""

from __future__ import annotations

import logging
import threading

import pytest

from events.models import Event
from events.services import wake
from events.services.wake import ShardWaker
from tests.fixtures.events import form_body, load_payload

URL = "/bitrix/events/"


def test_submit_returns_while_a_wake_up_is_stuck_and_later_shards_are_coalesced():
    release, stuck = threading.Event(), threading.Event()
    calls: list[set[int]] = []
    all_seen = threading.Event()

    def wake(shards: set[int]) -> None:
        calls.append(shards)
        if len(calls) == 1:
            stuck.set()
            release.wait(10)  # the first wake-up hangs (a Redis that doesn't answer)
        if set().union(*calls) == {1, 2, 3, 4}:
            all_seen.set()

    waker = ShardWaker(wake)
    waker.submit({1})
    # The thread has taken {1} and hangs in it (else the later shards would join that first call).
    assert stuck.wait(5)
    submitted = threading.Thread(target=lambda: [waker.submit({shard}) for shard in (2, 3, 4)])
    submitted.start()
    submitted.join(timeout=5)
    assert not submitted.is_alive()  # submitting never waited for the stuck wake-up
    release.set()
    assert all_seen.wait(5)
    # Everything handed over while the thread was stuck went out in one wake-up.
    assert calls == [{1}, {2, 3, 4}]


def test_a_failed_wake_up_is_logged_and_the_thread_goes_on(caplog):
    failed, done = threading.Event(), threading.Event()
    calls: list[set[int]] = []

    def wake(shards: set[int]) -> None:
        calls.append(shards)
        if len(calls) == 1:
            failed.set()
            raise ConnectionError("redis is down")
        done.set()

    waker = ShardWaker(wake)
    with caplog.at_level(logging.WARNING, logger="events"):
        waker.submit({7})
        assert failed.wait(5)
        waker.submit({8})
        assert done.wait(5)
    assert calls == [{7}, {8}]
    assert any(r.getMessage() == "events.wake_failed" and r.shards == [7] for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_a_group_committed_event_is_answered_while_its_wake_up_hangs(
    client, make_portal, recorder, monkeypatch, settings
):
    settings.BITRIX24_EVENT_GROUP_COMMIT = True
    recorder("ONCRMCONTACTUPDATE")
    release, called = threading.Event(), threading.Event()
    woken: list[set[int]] = []

    def hanging_wake(shards: set[int]) -> None:
        woken.append(shards)
        called.set()
        release.wait(10)

    monkeypatch.setattr(wake, "_waker", ShardWaker(hanging_wake))
    payload = load_payload("oncrmcontactupdate__basic", data={"FIELDS": {"ID": "41"}})
    make_portal(payload)
    answers: list[int] = []

    def send() -> None:
        response = client.generic(
            "POST", URL, form_body(payload), content_type="application/x-www-form-urlencoded"
        )
        answers.append(response.status_code)

    sender = threading.Thread(target=send)
    sender.start()
    sender.join(timeout=5)
    try:
        assert not sender.is_alive() and answers == [200]  # answered, the wake-up still hanging
        assert Event.objects.filter(object_key="ONCRMCONTACT:41").count() == 1
        row = Event.objects.get(object_key="ONCRMCONTACT:41")
        assert called.wait(5) and woken == [{row.shard}]
    finally:
        release.set()
