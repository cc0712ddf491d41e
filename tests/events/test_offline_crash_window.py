"""Offline draining when the drain dies after ``event.offline.get`` reserved a batch and before it was
stored (docs/events.md, Offline events): a real drain process is killed there; its self-chosen
process_id, committed before the get, leads the next drain to the batch through
``event.offline.list``. A process_id whose get may still be in flight is kept; one drain per portal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from events.models import Event, OfflineReservation
from events.services import offline
from events.services.offline import OFFLINE_DRAINS, offline_events_drain
from portals.models import Portal
from portals.services import client as client_module
from tests.events.test_offline_crash import change_deals, offline_portal, queue
from tests.fixtures.portals import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["offline_portal"]  # the fixture, shared with the store-and-clear crash tests

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0

# A drain in a process of its own that stops, reporting its process_id, once event.offline.get has
# answered and before the batch is stored; the test then kills it with SIGKILL.
DRAINER = """
import sys
import django
django.setup()
from events.services import offline

def stop_here(portal, records, report):
    print("reserved", len(records), flush=True)
    sys.stdin.read()

offline._store_batch = stop_here
offline.offline_events_drain(portal_id=int(sys.argv[1]))
"""

# A live drain of the portal as another process sees it: it holds the portal's drain lock.
HOLDER = """
import sys
import psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
conn.execute("SELECT pg_advisory_lock(%s, %s)", (int(sys.argv[2]), int(sys.argv[3])))
print("holding", flush=True)
sys.stdin.read()
"""


def stored_keys(portal: Portal) -> list[str]:
    rows = Event.objects.filter(portal=portal, source="offline").order_by("object_key")
    return [row.object_key for row in rows]


def child_env(sandbox) -> dict[str, str]:
    """The test's settings for a child process: its database, Redis, queue and the sandbox."""
    db = connection.settings_dict
    state = sandbox.state
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": django_settings.REDIS_URL,
        "REDIS_KEY_PREFIX": django_settings.REDIS_KEY_PREFIX,
        "CELERY_QUEUE": django_settings.CELERY_TASK_DEFAULT_QUEUE,
        "BITRIX24_CA_BUNDLE": state["ca_bundle"],
        "BITRIX24_OAUTH_SERVERS": state["oauth_server"],
        "BITRIX24_CLIENT_ID": state["client_id"],
        "BITRIX24_CLIENT_SECRET": state["client_secret"],
    }


def drain_lock_held(portal: Portal) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [OFFLINE_DRAINS.class_id, portal.pk],
        )
        return bool(cursor.fetchone()[0])


def test_a_drain_killed_between_get_and_store_is_recovered_by_the_next(
    offline_portal, portals_sandbox, recorder, celery_tasks
):
    rec = recorder("ONCRMDEALUPDATE")
    change_deals(portals_sandbox, 11, 12, 13)
    drainer = subprocess.Popen(
        [sys.executable, "-c", DRAINER, str(offline_portal.pk)],
        cwd=ROOT,
        env=child_env(portals_sandbox),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert drainer.stdout.readline().split() == ["reserved", "3"]
    finally:
        drainer.send_signal(signal.SIGKILL)
        drainer.wait(timeout=10)
    # The dead drain's process_id was committed before its get, and the portal holds the batch
    # under exactly that id, hidden from event.offline.get.
    (reservation,) = OfflineReservation.objects.filter(portal=offline_portal)
    reserved = queue(offline_portal)
    assert {row["PROCESS_ID"] for row in reserved} == {reservation.process_id}
    assert len(reserved) == 3 and stored_keys(offline_portal) == []
    wait_for(lambda: not drain_lock_held(offline_portal), timeout=10, what="the server frees the dead lock")

    change_deals(portals_sandbox, 14)
    report = offline_events_drain(portal_id=offline_portal.pk)
    assert (report.recovered, report.stored, report.duplicates) == (3, 4, 0)
    assert stored_keys(offline_portal) == [f"ONCRMDEAL:{n}" for n in (11, 12, 13, 14)]
    assert queue(offline_portal) == []
    assert not OfflineReservation.objects.exists()
    rec.wait_for(4, timeout=WAIT)
    celery_tasks.wait_idle()
    assert sorted(obj for _, obj, _ in rec.calls) == ["11", "12", "13", "14"]


def test_a_process_id_that_may_still_be_in_flight_is_kept_until_it_cannot_be(offline_portal, portals_sandbox):
    # A drain died after committing its process_id, with its get still on the way to the portal.
    late = OfflineReservation.objects.create(portal=offline_portal, process_id="f" * 32)
    report = offline_events_drain(portal_id=offline_portal.pk)
    assert report.recovered == 0
    assert list(OfflineReservation.objects.values_list("process_id", flat=True)) == [late.process_id]

    # The get arrives and reserves what is there under that process_id; the next drain reads it.
    change_deals(portals_sandbox, 21, 22)
    client = client_module.client_for_portal(member_id=offline_portal.member_id)
    got = client.call("event.offline.get", {"clear": 0, "process_id": late.process_id}, read=False)
    assert got["process_id"] == late.process_id and len(got["events"]) == 2
    report = offline_events_drain(portal_id=offline_portal.pk)
    assert (report.recovered, report.stored) == (2, 2)
    assert stored_keys(offline_portal) == ["ONCRMDEAL:21", "ONCRMDEAL:22"]
    assert queue(offline_portal) == [] and not OfflineReservation.objects.exists()

    # Past the window nothing can still arrive: an empty reservation is dropped.
    gone = OfflineReservation.objects.create(portal=offline_portal, process_id="e" * 32)
    OfflineReservation.objects.filter(pk=gone.pk).update(created_at=timezone.now() - timedelta(hours=1))
    offline_events_drain(portal_id=offline_portal.pk)
    assert not OfflineReservation.objects.exists()


def test_a_drain_turned_away_by_a_live_one_leaves_it_a_flag_to_look_again(
    offline_portal, portals_sandbox, redis_client, monkeypatch
):
    change_deals(portals_sandbox, 31)
    db = connection.settings_dict
    dsn = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, dsn, str(OFFLINE_DRAINS.class_id), str(offline_portal.pk)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    flag = f"{django_settings.REDIS_KEY_PREFIX}offline:again:{offline_portal.pk}"
    try:
        assert holder.stdout.readline().strip() == "holding"
        report = offline_events_drain(portal_id=offline_portal.pk)
        # Turned away: nothing reserved, nothing recovered from under the live drain's feet.
        assert report.busy and report.fetched == 0
        assert [row["PROCESS_ID"] for row in queue(offline_portal)] == [""]
        assert redis_client.exists(flag)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    wait_for(lambda: not drain_lock_held(offline_portal), timeout=10, what="the server frees the lock")
    # The holder's part, played by the next drain: it finds the flag, drains, and looks once more.
    looks: list[int] = []
    real_drain = offline._drain_held

    def counted(*args: Any) -> None:
        looks.append(1)
        real_drain(*args)

    monkeypatch.setattr(offline, "_drain_held", counted)
    report = offline_events_drain(portal_id=offline_portal.pk)
    assert report.stored == 1 and not report.busy
    assert len(looks) == 2 and not redis_client.exists(flag)
    assert queue(offline_portal) == []
