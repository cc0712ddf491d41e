"""Dispatch guarantees with a real worker, PostgreSQL and Redis: a dead drainer's shard is swept up at
once, a handler's database effects commit with its done mark (exactly once), a token refreshed by a
failing handler survives it, lifecycle-style handlers run outside the batch, and Redis being down
costs one log line per cause and window, never a traceback."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from psycopg.conninfo import make_conninfo

from events import registry
from events.models import Event
from events.services import drain, replay, wake
from events.services.intake import event_shard, event_store
from events.services.shards import SHARD_LOCKS
from portals.bitrix.events import parse_event_body
from portals.models import Portal
from portals.services.client import client_for_portal
from tests.events.test_dispatch import contact, post, wait_status
from tests.fixtures.events import form_body, load_payload
from tests.fixtures.portals import expire_access_token, issue_tokens, sandbox_grants, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# A drainer as seen from outside: it holds the shard's advisory lock and has set the wake flag,
# then waits to be killed.
HOLDER = """
import sys
import psycopg, redis
dsn, lock_class, shard, redis_url, flag = sys.argv[1:]
conn = psycopg.connect(dsn, autocommit=True)
conn.execute("SELECT pg_advisory_lock(%s, %s)", (int(lock_class), int(shard)))
redis.Redis.from_url(redis_url).set(flag, "dead-drainer", ex=120)
print("holding", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def worker(redis_client, celery_worker):
    return celery_worker


@pytest.fixture
def handler():
    """``handler("EVENT", func, atomic=...)`` registers ``func`` for the test's duration."""
    registered: list[tuple[str, object]] = []

    def register(name: str, func, *, atomic: bool = True):
        registry.on_event(name, atomic=atomic)(func)
        registered.append((name, func))
        return func

    yield register
    for name, func in registered:
        registry.unregister(name, func)


@pytest.fixture
def effects():
    """A table for handlers' database effects: (idempotency key of the event, attempt)."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE test_handler_effect (event_key text NOT NULL, attempt int NOT NULL)")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE test_handler_effect")


def effect_rows(key: str) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT attempt FROM test_handler_effect WHERE event_key = %s ORDER BY attempt", [key])
        return [attempt for (attempt,) in cursor.fetchall()]


class EffectHandler:
    """Writes an effect row per call, then fails the first ``failures`` calls.

    Records, per call, the event's idempotency key and how many effect rows of the event were
    committed when the call began.
    """

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.calls: list[tuple[str, int]] = []

    def __call__(self, *, portal, payload) -> None:
        key = payload.idempotency_key()
        before = len(effect_rows(key))
        self.calls.append((key, before))
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO test_handler_effect (event_key, attempt) VALUES (%s, %s)", [key, len(self.calls)]
            )
        if len(self.calls) <= self.failures:
            raise RuntimeError(f"handler failed after its write (call {len(self.calls)})")


def shard_lock_held(shard: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [SHARD_LOCKS.class_id, shard],
        )
        return bool(cursor.fetchone()[0])


def test_a_dead_drainers_shard_is_dispatched_after_one_sweep(
    client, make_portal, recorder, worker, redis_client, settings
):
    rec = recorder("ONCRMCONTACTUPDATE")
    now = int(time.time())
    portal = make_portal(contact("21", now))
    shard = event_shard(portal_id=portal.pk, object_key="ONCRMCONTACT:21")
    flag = settings.REDIS_KEY_PREFIX + wake.wake_flag(shard)
    db = connection.settings_dict
    dsn = make_conninfo(dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"])
    args = [dsn, str(SHARD_LOCKS.class_id), str(shard), settings.REDIS_URL, flag]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        event_id = post(client, contact("21", now))["id"]
        # A live holder keeps its flag through a sweep: it is draining and will see the event.
        assert replay.events_sweep() == [shard]
        assert redis_client.get(flag) == b"dead-drainer"
    finally:
        holder.kill()  # SIGKILL: the drainer dies mid-drain, its flag left behind
        holder.wait(timeout=10)
    wait_for(lambda: not shard_lock_held(shard), timeout=10, what="the server releases the dead lock")
    assert redis_client.get(flag) == b"dead-drainer"
    swept = time.monotonic()
    assert replay.events_sweep() == [shard]
    row = wait_status(event_id, "done", timeout=20)
    assert row.status == "done"
    assert time.monotonic() - swept < 20  # not the flag's 120 s
    assert rec.calls == [("ONCRMCONTACTUPDATE", "21", now)]


def test_a_failing_handlers_writes_are_rolled_back_and_applied_once_on_success(
    client, make_portal, handler, effects, worker, settings
):
    settings.BITRIX24_EVENT_RETRY_BASE_SECONDS = 0.2
    settings.BITRIX24_EVENT_RETRY_MAX_SECONDS = 0.4
    effect = handler("ONCRMCONTACTUPDATE", EffectHandler(failures=2))
    now = int(time.time())
    make_portal(contact("22", now))
    event_id = post(client, contact("22", now))["id"]
    row = wait_status(event_id, "done")
    assert (row.status, row.attempts) == ("done", 3)
    key = row.idempotency_key
    # Every attempt found nothing of the failed ones: their writes went with their savepoints.
    assert effect.calls == [(key, 0), (key, 0), (key, 0)]
    assert effect_rows(key) == [3]


def test_a_batch_killed_before_its_commit_is_redispatched_without_applying_effects_twice(
    client, make_portal, handler, effects, worker, monkeypatch
):
    effect = handler("ONCRMCONTACTUPDATE", EffectHandler())
    interrupted = threading.Event()
    mark_done = drain._mark_done

    def dies_at_the_done_mark(event_ids, *, now):
        if not interrupted.is_set():
            interrupted.set()
            raise RuntimeError("worker killed before the batch committed")
        mark_done(event_ids, now=now)

    monkeypatch.setattr(drain, "_mark_done", dies_at_the_done_mark)
    now = int(time.time())
    portal = make_portal(contact("23", now))
    event_id = post(client, contact("23", now))["id"]
    assert interrupted.wait(20)
    shard = Event.objects.get(pk=event_id).shard
    wait_for(lambda: not shard_lock_held(shard), timeout=10, what="the failed drain releases the shard")
    row = Event.objects.get(pk=event_id)
    assert (row.status, row.attempts) == ("pending", 0)
    assert effect_rows(row.idempotency_key) == []  # the handler ran; nothing of its batch committed
    # The dead run left its wake flag; one sweep dispatches the event again.
    assert replay.events_sweep() == [shard]
    row = wait_status(event_id, "done")
    assert (row.status, row.attempts) == ("done", 1)
    # Run twice (outside effects are at least once), with the same key both times; applied once.
    assert effect.calls == [(row.idempotency_key, 0), (row.idempotency_key, 0)]
    assert effect_rows(row.idempotency_key) == [2]
    assert row.idempotency_key == row.as_payload().idempotency_key()
    assert portal.pk == row.portal_id


def sandbox_portal(sandbox) -> Portal:
    """A portal holding a real token pair from the sandbox's OAuth server (not installed: no tasks)."""
    tokens = issue_tokens(sandbox, 1)
    now = timezone.now()
    return Portal.objects.create(
        member_id=tokens["member_id"],
        domain=tokens["client_endpoint"].split("/")[2],
        client_endpoint=tokens["client_endpoint"],
        server_endpoint=tokens["server_endpoint"],
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        expires_at=now + timedelta(seconds=int(tokens.get("expires_in", 3600))),
        refresh_token_issued_at=now,
        installed_at=now - timedelta(days=1),
        state=Portal.State.ACTIVE,
    )


@pytest.mark.parametrize(
    "writes_first", [False, True], ids=["calls", "writes a row of the portal, then calls"]
)
@pytest.mark.parametrize("expiry", ["expired locally", "refused by the portal"])
def test_a_token_refreshed_by_a_failing_handler_stays_stored(
    portals_sandbox, handler, worker, expiry, writes_first
):
    portal = sandbox_portal(portals_sandbox)
    before = sandbox_grants(portals_sandbox, portal.member_id)
    if expiry == "expired locally":
        stale = expire_access_token(portal)  # refreshed ahead of the call
    else:
        stale = portal.access_token
        portals_sandbox.control("clock", offset=3700)  # the portal answers expired_token
    seen: list[str] = []

    def calls_then_fails(*, portal, payload) -> None:
        if writes_first:  # holds FOR KEY SHARE on the portal's row until the batch commits
            Event.objects.create(
                portal=portal, event="X", object_key=f"x:{len(seen)}", ts=timezone.now(),
                idempotency_key=f"handler-row-{len(seen)}", shard=99, payload={}, status=Event.Status.DONE,
            )  # fmt: skip
        client_for_portal(member_id=portal.member_id).call("profile")
        seen.append(Portal.objects.get(pk=portal.pk).access_token)
        if len(seen) == 1:
            raise RuntimeError("failed after the refresh")

    handler("ONCRMCONTACTUPDATE", calls_then_fails)
    payload = parse_event_body(form_body(contact("24", int(time.time()))))
    event_id = event_store(portal_id=portal.pk, payload=payload, now=timezone.now())
    row = wait_for(lambda: Event.objects.filter(pk=event_id, attempts=1).first(), what="the failed attempt")
    assert "failed after the refresh" in row.last_error
    stored = Portal.objects.get(pk=portal.pk)
    assert stored.access_token == seen[0] != stale  # the refresh survived the handler's rollback
    assert stored.state == Portal.State.ACTIVE
    assert sandbox_grants(portals_sandbox, portal.member_id) - before == 1
    Event.objects.filter(pk=event_id).update(available_at=timezone.now())
    replay.events_sweep()
    assert wait_status(event_id, "done").status == "done"
    # The portal stays usable with that pair: no second grant, no refresh token used twice.
    assert client_for_portal(member_id=portal.member_id).call("profile")
    assert sandbox_grants(portals_sandbox, portal.member_id) - before == 1
    reuse = portals_sandbox.counters()["refresh_token_reuse"]["by_portal"].get(portal.member_id, 0)
    assert reuse == 0


def test_an_atomic_false_handler_runs_after_the_batch_so_far_is_committed(
    client, make_portal, handler, worker
):
    now = int(time.time())
    make_portal(contact("25", now))
    seen: list[tuple[str, bool, str]] = []

    def in_batch(*, portal, payload) -> None:
        seen.append((payload.event, connection.in_atomic_block, ""))

    def outside(*, portal, payload) -> None:
        earlier = Event.objects.get(event="ONCRMCONTACTUPDATE", ts__lt=payload.ts)
        seen.append((payload.event, connection.in_atomic_block, earlier.status))

    handler("ONCRMCONTACTUPDATE", in_batch)
    handler("ONCRMCONTACTDELETE", outside, atomic=False)
    with transaction.atomic():  # committed together: one batch
        first = post(client, contact("25", now))
        post(
            client,
            load_payload(
                "oncrmcontactupdate__basic",
                ts=now + 1,
                event="ONCRMCONTACTDELETE",
                data={"FIELDS": {"ID": "25"}},
            ),
        )
        last = post(client, contact("25", now + 2, NAME="later"))
    assert wait_status(last["id"], "done").status == "done"
    assert seen == [
        ("ONCRMCONTACTUPDATE", True, ""),
        ("ONCRMCONTACTDELETE", False, "done"),  # the event before it was committed done first
        ("ONCRMCONTACTUPDATE", True, ""),
    ]
    assert Event.objects.filter(status="done").count() == 3
    assert wait_status(first["id"], "done").attempts == 1


def test_redis_down_logs_one_line_per_cause_and_window_and_never_raises(
    make_portal, recorder, settings, caplog, monkeypatch
):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: connection refused
    monkeypatch.setattr(wake._log_wake_failed, "interval", 0.5)
    wake._log_wake_failed.clear()
    rec = recorder("ONCRMCONTACTUPDATE")
    now = int(time.time())
    portal = make_portal(contact("26", now))
    payload = parse_event_body(form_body(contact("26", now)))
    with caplog.at_level(logging.INFO, logger="events"):
        for _ in range(50):
            wake.events_wake(shard=1, force=True)
        # Every path that touches Redis goes on without it: the sweep, a drain, a replay.
        with transaction.atomic():
            event_id = event_store(portal_id=portal.pk, payload=payload, now=timezone.now())
            transaction.get_connection().run_on_commit = []  # no waker thread logging meanwhile
        shard = Event.objects.get(pk=event_id).shard
        assert replay.events_sweep() == [shard]
        report = drain.events_drain_shard(shard=shard, scheduled=True)
        assert report is not None and report.done == 1
        with transaction.atomic():
            assert replay.events_replay(event_ids=[event_id]) == 1
        failed = [r for r in caplog.records if r.getMessage() == "events.wake_failed"]
        assert len(failed) == 1
        assert (failed[0].cause, failed[0].suppressed) == ("redis.exceptions.ConnectionError", 0)
        time.sleep(0.5)  # the window passes
        wake.events_wake(shard=1, force=True)
    failed = [r for r in caplog.records if r.getMessage() == "events.wake_failed"]
    assert len(failed) == 2
    assert failed[1].suppressed >= 49 + 3  # the other wake-ups, the sweep's, the drain's, the replay's
    assert not [r for r in caplog.records if r.exc_info]
    assert rec.calls == [("ONCRMCONTACTUPDATE", "26", now)]
