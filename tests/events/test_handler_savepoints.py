"""A handler's database effects are its event's alone, however the handler uses transactions
(docs/events.md, Dispatch guarantees): its first query may come from inside an atomic block of its
own without a savepoint, as Django's ``delete()`` and multi-table ``save()`` open one."""

from __future__ import annotations

import time

import pytest
from django.db import connection, transaction

from events import registry
from events.models import Event
from events.services.drain import events_drain_shard
from portals.bitrix.events import parse_event_body
from tests.events.test_dispatch import contact
from tests.events.test_dispatch_guarantees import effect_rows, effects  # noqa: F401 - a fixture
from tests.events.test_drain_races import store_quietly
from tests.fixtures.events import form_body

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.usefixtures("effects")  # its table of handlers' effects
def test_a_handler_failing_inside_its_own_atomic_block_fails_only_its_event(
    make_portal, redis_client, settings
):
    settings.BITRIX24_EVENT_SHARDS = 1
    settings.BITRIX24_EVENT_RETRY_BASE_SECONDS = 30  # the failed event stays waiting: one run sees all
    now = int(time.time())
    portal = make_portal(contact("1", now))
    failing = store_quietly(portal.pk, contact("1", now))
    fine = store_quietly(portal.pk, contact("2", now + 1))
    failed_payload = parse_event_body(form_body(contact("1", now)))
    done_payload = parse_event_body(form_body(contact("2", now + 1)))

    def handler(*, portal, payload) -> None:
        with transaction.atomic(savepoint=False):
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO test_handler_effect VALUES (%s, 1)", [payload.idempotency_key()])
            if payload.object_id == "1":
                # A database error inside the block: the block marks the transaction for rollback.
                with connection.cursor() as cursor:
                    cursor.execute("SELECT * FROM no_such_table_anywhere")

    registry.on_event("ONCRMCONTACTUPDATE")(handler)
    try:
        report = events_drain_shard(shard=0)
    finally:
        registry.unregister("ONCRMCONTACTUPDATE", handler)
    assert report is not None and (report.done, report.retried) == (1, 1)
    failed, done = Event.objects.get(pk=failing), Event.objects.get(pk=fine)
    assert (failed.status, failed.attempts) == ("pending", 1) and "no_such_table" in failed.last_error
    assert (done.status, done.attempts) == ("done", 1)
    # The failed event's write went with it; the other's committed.
    assert effect_rows(failed_payload.idempotency_key()) == []
    assert effect_rows(done_payload.idempotency_key()) == [1]
