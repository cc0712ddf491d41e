"""Dispatch through the outbox with a real Celery worker: once, in order, retried, failed, replayed."""

from __future__ import annotations

import io
import time

import pytest
from django.core.management import call_command
from django.db import transaction

from events.models import Event
from events.registry import PermanentEventError
from portals.bitrix.exceptions import Bitrix24AccessDenied, Bitrix24ServerError
from tests.fixtures.events import form_body, load_payload

URL = "/bitrix/events/"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def fast_retries(settings):
    settings.BITRIX24_EVENT_RETRY_BASE_SECONDS = 0.05
    settings.BITRIX24_EVENT_RETRY_MAX_SECONDS = 0.2
    settings.BITRIX24_EVENT_MAX_ATTEMPTS = 3


@pytest.fixture
def worker(redis_client, celery_worker):
    """A real worker on a clean Redis (no wake-up flags left by another test)."""
    return celery_worker


def post(client, payload):
    response = client.generic("POST", URL, form_body(payload), content_type=FORM)
    assert response.status_code == 200, response.content
    return response.json()


def contact(contact_id: str, ts: int, **data):
    return load_payload("oncrmcontactupdate__basic", ts=ts, data={"FIELDS": {"ID": contact_id, **data}})


def wait_status(event_id: int, *statuses: str, timeout: float = 20.0) -> Event:
    deadline = time.monotonic() + timeout
    while True:
        row = Event.objects.get(pk=event_id)
        if row.status in statuses or time.monotonic() > deadline:
            return row
        time.sleep(0.05)


def test_accepted_event_is_dispatched_once(client, make_portal, recorder, worker, celery_tasks):
    rec = recorder("ONCRMCONTACTUPDATE")
    now = int(time.time())
    make_portal(contact("31", now))
    first = post(client, contact("31", now))
    duplicate = post(client, {**contact("31", now), "event_handler_id": "77"})
    assert (first["result"], duplicate["result"]) == ("accepted", "duplicate")
    row = wait_status(first["id"], "done")
    assert row.status == "done"
    assert row.attempts == 1
    celery_tasks.wait_idle()  # every drain the two requests caused has run: a second dispatch would show
    assert "events.tasks.events_drain" in celery_tasks.finished
    assert rec.calls == [("ONCRMCONTACTUPDATE", "31", now)]


def test_many_events_over_many_objects_all_dispatched_exactly_once(
    client, make_portal, recorder, worker, celery_tasks
):
    rec = recorder("ONCRMCONTACTUPDATE")
    now = int(time.time())
    make_portal(contact("1", now))
    ids = [post(client, contact(str(i % 17), now + i // 17, N=str(i)))["id"] for i in range(120)]
    calls = rec.wait_for(120)
    assert len(calls) == 120
    for event_id in ids:
        assert wait_status(event_id, "done").status == "done"
    celery_tasks.wait_idle()
    assert len(rec.calls) == 120


def test_events_of_one_object_are_processed_in_ts_order(client, make_portal, recorder, worker):
    rec = recorder("ONCRMCONTACTUPDATE")
    now = int(time.time())
    make_portal(contact("5", now))
    # Arrive out of order, committed together: the drainer sees all three at once.
    with transaction.atomic():
        for offset in (2, 0, 1):
            post(client, contact("5", now + offset))
    calls = rec.wait_for(3)
    assert [c[2] for c in calls] == [now, now + 1, now + 2]


def test_failing_event_is_retried_with_backoff_and_blocks_its_object(
    client, make_portal, recorder, worker, fast_retries, settings
):
    # Retries slow enough that the other object's event, queued at the same moment, is surely first.
    settings.BITRIX24_EVENT_RETRY_BASE_SECONDS = 0.6
    settings.BITRIX24_EVENT_RETRY_MAX_SECONDS = 1.2
    rec = recorder("ONCRMCONTACTUPDATE")
    now = int(time.time())
    make_portal(contact("7", now))
    rec.fail_next("7", Bitrix24ServerError("INTERNAL_SERVER_ERROR", "boom"), RuntimeError("flaky"))
    with transaction.atomic():
        first = post(client, contact("7", now))
        second = post(client, contact("7", now + 1))
        other = post(client, contact("8", now + 2))
    calls = rec.wait_for(3)
    # The other object went ahead; the later event of object 7 waited for the first one's retries.
    assert [(c[1], c[2]) for c in calls] == [("8", now + 2), ("7", now), ("7", now + 1)]
    row = wait_status(first["id"], "done")
    assert (row.status, row.attempts) == ("done", 3)
    assert wait_status(second["id"], "done").attempts == 1
    assert wait_status(other["id"], "done").attempts == 1


def test_retries_are_bounded_then_failed_and_replayable(client, make_portal, recorder, worker, fast_retries):
    rec = recorder("ONCRMCONTACTUPDATE")
    now = int(time.time())
    make_portal(contact("9", now))
    rec.fail_next("9", *[RuntimeError(f"down {i}") for i in range(3)])
    event_id = post(client, contact("9", now))["id"]
    row = wait_status(event_id, "failed")
    assert row.status == "failed"
    assert row.attempts == 3
    assert "RuntimeError: down 2" in row.last_error
    assert rec.calls == []

    out = io.StringIO()
    call_command("bitrix", "events", "list", "--status", "failed", stdout=out)
    assert str(event_id) in out.getvalue()
    call_command("bitrix", "events", "replay", "--failed", stdout=out)
    assert "re-queued 1 event(s)" in out.getvalue()
    row = wait_status(event_id, "done")
    assert (row.status, row.last_error) == ("done", "")
    assert rec.calls == [("ONCRMCONTACTUPDATE", "9", now)]


@pytest.mark.parametrize(
    "error", [PermanentEventError("bad data"), Bitrix24AccessDenied("ACCESS_DENIED", "no")]
)
def test_permanent_error_fails_at_once_and_later_events_proceed(client, make_portal, recorder, worker, error):
    rec = recorder("ONCRMCONTACTUPDATE")
    now = int(time.time())
    make_portal(contact("11", now))
    rec.fail_next("11", error)
    with transaction.atomic():
        first = post(client, contact("11", now))
        second = post(client, contact("11", now + 1))
    row = wait_status(first["id"], "failed")
    assert (row.status, row.attempts) == ("failed", 1)
    assert type(error).__name__ in row.last_error
    assert wait_status(second["id"], "done").status == "done"
    assert rec.calls == [("ONCRMCONTACTUPDATE", "11", now + 1)]


def test_replay_by_id_redispatches_a_done_event(client, make_portal, recorder, worker):
    rec = recorder("ONCRMCONTACTUPDATE")
    now = int(time.time())
    make_portal(contact("12", now))
    event_id = post(client, contact("12", now))["id"]
    rec.wait_for(1)
    wait_status(event_id, "done")
    out = io.StringIO()
    call_command("bitrix", "events", "replay", "--id", str(event_id), stdout=out)
    assert rec.wait_for(2) == [("ONCRMCONTACTUPDATE", "12", now)] * 2


def test_sweep_recovers_events_whose_wake_up_was_lost(make_portal, recorder, worker, celery_tasks):
    from events.services.intake import event_store
    from events.services.replay import events_sweep
    from portals.bitrix.events import parse_event_body

    rec = recorder("ONCRMCONTACTUPDATE")
    now = int(time.time())
    portal = make_portal(contact("13", now))
    payload = parse_event_body(form_body(contact("13", now)))
    # Stored without its after-commit wake-up (as if the web process died right after COMMIT).
    with transaction.atomic():
        event_id = event_store(portal_id=portal.pk, payload=payload, now=payload.ts)
        transaction.get_connection().run_on_commit = []
    celery_tasks.wait_idle()  # nothing queued, nothing running: nobody is coming for the event
    assert rec.calls == []
    assert Event.objects.get(pk=event_id).status == "pending"
    assert events_sweep() == [Event.objects.get(pk=event_id).shard]
    assert rec.wait_for(1) == [("ONCRMCONTACTUPDATE", "13", now)]


def test_late_uninstall_never_undoes_a_newer_install(client, make_portal, worker):
    from django.utils import timezone

    from portals.models import Portal

    now = int(time.time())
    payload = load_payload("onappuninstall__keep_data", ts=now - 120)
    portal = make_portal(payload, installed_at=timezone.now() - timezone.timedelta(seconds=30))
    event_id = post(client, payload)["id"]
    assert wait_status(event_id, "done").status == "done"
    portal.refresh_from_db()
    assert portal.state == Portal.State.ACTIVE and portal.application_token
    # An uninstall newer than the install is applied.
    newer = load_payload("onappuninstall__keep_data", ts=now)
    assert wait_status(post(client, newer)["id"], "done").status == "done"
    portal.refresh_from_db()
    assert portal.state == Portal.State.UNINSTALLED and portal.application_token == ""


def test_clean_uninstall_also_deletes_the_portals_event_history(client, make_portal, recorder, worker):
    from portals.models import Portal
    from portals.services.lifecycle import portals_data_purge

    recorder("ONCRMCONTACTUPDATE")
    now = int(time.time())
    portal = make_portal(contact("1", now))
    assert wait_status(post(client, contact("1", now))["id"], "done").status == "done"
    post(client, load_payload("onappuninstall__clean"))
    deadline = time.monotonic() + 20
    while Portal.objects.get(pk=portal.pk).state != Portal.State.UNINSTALLED and time.monotonic() < deadline:
        time.sleep(0.05)
    uninstalled = Portal.objects.get(pk=portal.pk)
    assert uninstalled.state == Portal.State.UNINSTALLED
    # "Delete app data" was ticked: after the grace period the portal's rows, its events included, go.
    assert Event.objects.filter(portal_id=portal.pk).exists()
    assert portals_data_purge(now=uninstalled.data_delete_after) == [portal.member_id]
    assert not Event.objects.filter(portal_id=portal.pk).exists()


def test_a_full_batch_behind_a_blocked_object_neither_stalls_nor_repeats(
    client, make_portal, recorder, worker, settings, celery_tasks
):
    # Small batches: the blocked object's later events fill a whole batch, the other object's
    # events come after them in (ts, id) order and must still be reached, each exactly once.
    settings.BITRIX24_EVENT_BATCH_SIZE = 4
    settings.BITRIX24_EVENT_SHARDS = 1  # both objects in one shard, so one drainer sees both
    settings.BITRIX24_EVENT_RETRY_BASE_SECONDS = 30
    settings.BITRIX24_EVENT_RETRY_MAX_SECONDS = 30
    rec = recorder("ONCRMCONTACTUPDATE")
    now = int(time.time())
    make_portal(contact("20", now))
    rec.fail_next("20", RuntimeError("down"))
    with transaction.atomic():
        blocked = [post(client, contact("20", now - 100 + i))["id"] for i in range(6)]
        others = [post(client, contact("21", now - 50 + i))["id"] for i in range(3)]
    calls = rec.wait_for(3)
    assert [c[1] for c in calls] == ["21", "21", "21"]
    # Every drain has run, but for the one held until object 20's retry is due (30 s away).
    celery_tasks.wait_idle(scheduled=False)
    assert len(rec.calls) == 3  # nothing twice, and object 20 waits for its retry
    assert Event.objects.get(pk=blocked[0]).attempts == 1
    assert all(Event.objects.get(pk=pk).status == "pending" for pk in blocked)
    assert all(wait_status(pk, "done").status == "done" for pk in others)
