"""The drainer's two promises that only a race shows (docs/events.md, "Order" and the wake-ups):
one drainer per shard, so nothing is dispatched twice or out of order; and an event committed while
a drainer is finishing is never stranded. Real PostgreSQL (advisory locks), Redis and worker."""

from __future__ import annotations

import threading
import time

import pytest
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone

from events import registry
from events.models import Event
from events.services import drain
from events.services.drain import DrainReport, events_drain_shard
from events.services.intake import event_store
from events.services.wake import events_wake, wake_flag
from portals.bitrix.events import parse_event_body
from tests.events.test_dispatch import contact, post
from tests.fixtures.events import form_body

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0


def store_quietly(portal_id: int, payload: dict) -> int:
    """Store an event and commit it without its wake-up: the test decides who drains."""
    parsed = parse_event_body(form_body(payload))
    with transaction.atomic():
        event_id = event_store(portal_id=portal_id, payload=parsed, now=timezone.now())
        transaction.get_connection().run_on_commit = []
    assert event_id is not None
    return event_id


def test_two_drainers_racing_on_one_shard_dispatch_each_event_once_and_in_order(
    make_portal, redis_client, settings
):
    settings.BITRIX24_EVENT_SHARDS = 1  # every object in the one shard both drainers want
    now = int(time.time())
    portal = make_portal(contact("1", now))
    ids = [store_quietly(portal.pk, contact(str(1 + i % 3), now - 60 + i)) for i in range(12)]
    expected = [(str(1 + i % 3), now - 60 + i) for i in range(12)]

    calls: list[tuple[str, str, int]] = []
    first_taken = threading.Event()
    second_over = threading.Event()

    def handler(*, portal, payload) -> None:
        me = threading.current_thread().name
        if me == "drainer-a" and not first_taken.is_set():
            first_taken.set()
            # Drainer A holds its batch here, mid-way, until drainer B has had its go at the shard.
            second_over.wait(WAIT)
        calls.append((me, payload.object_id, int(payload.ts.timestamp())))

    reports: dict[str, DrainReport | None] = {}

    def run(name: str) -> None:
        try:
            reports[name] = events_drain_shard(shard=0)
        finally:
            if name == "drainer-b":
                second_over.set()
            connection.close()

    registry.on_event("ONCRMCONTACTUPDATE")(handler)
    try:
        a = threading.Thread(target=run, args=("drainer-a",), name="drainer-a")
        a.start()
        assert first_taken.wait(WAIT), "drainer A never reached its first event"
        b = threading.Thread(target=run, args=("drainer-b",), name="drainer-b")
        b.start()
        b.join(WAIT)
        a.join(WAIT)
        assert not a.is_alive() and not b.is_alive()
    finally:
        registry.unregister("ONCRMCONTACTUPDATE", handler)

    assert reports["drainer-b"] is None  # turned away: the shard was A's
    report = reports["drainer-a"]
    assert report is not None and report.done == 12
    assert [(obj, ts) for _, obj, ts in calls] == expected  # each once, in (ts, id) order
    assert {name for name, _, _ in calls} == {"drainer-a"}
    assert set(Event.objects.filter(id__in=ids).values_list("status", flat=True)) == {"done"}


def test_an_event_committed_while_the_drainer_finishes_is_not_stranded(
    client, make_portal, recorder, celery_tasks, monkeypatch
):
    rec = recorder("ONCRMCONTACTUPDATE")
    now = int(time.time())
    portal = make_portal(contact("61", now))
    late = contact("61", now + 1)  # same object, so same shard
    arrival: dict[str, object] = {}
    clear = drain.wake_flag_clear

    def clear_after_a_late_arrival(shard: int) -> None:
        if not arrival:
            # The drainer has found nothing more to do. Just now a request commits an event of the
            # shard, and its wake-up finds the drainer's flag still set, so it queues nothing...
            arrival["id"] = store_quietly(portal.pk, late)
            key = f"{django_settings.REDIS_KEY_PREFIX}{wake_flag(shard)}"
            arrival["flag_set"] = bool(celery_tasks.redis.exists(key))
            events_wake(shard=shard)
        clear(shard)  # ... and only then does the drainer clear the flag.

    monkeypatch.setattr(drain, "wake_flag_clear", clear_after_a_late_arrival)
    post(client, contact("61", now))
    # No sweep runs here: only the finishing drainer's second look can dispatch the late event.
    calls = rec.wait_for(2, timeout=WAIT)
    assert arrival["flag_set"] is True  # the race happened as described
    assert calls == [("ONCRMCONTACTUPDATE", "61", now), ("ONCRMCONTACTUPDATE", "61", now + 1)]
    celery_tasks.wait_idle()
    assert len(rec.calls) == 2
    assert Event.objects.get(pk=arrival["id"]).status == "done"
