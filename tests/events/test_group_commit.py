"""Group commit of the receiver's INSERTs: concurrent requests share one statement and one commit."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from events.models import Event
from events.services.intake import EventRow, GroupInsert, _insert_many

pytestmark = pytest.mark.django_db(transaction=True)


def row(portal_id: int, key: str) -> EventRow:
    now = timezone.now()
    return {
        "portal_id": portal_id,
        "event": "ONCRMDEALUPDATE",
        "object_key": f"ONCRMDEAL:{key}",
        "ts": now,
        "source": "online",
        "idempotency_key": key,
        "shard": 3,
        "payload": {"k": 1},
        "status": "pending",
        "available_at": now,
        "received_at": now,
    }


def run_concurrently(group: GroupInsert, rows: list[EventRow]) -> list[object]:
    """Each row inserted from its own thread (its own database connection), as request threads do."""
    results: list[object] = [None] * len(rows)
    start = threading.Barrier(len(rows))

    def one(i: int) -> None:
        start.wait()
        try:
            results[i] = group.insert(rows[i])
        except Exception as e:
            results[i] = e
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(rows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_concurrent_rows_share_commits_and_each_gets_its_own_outcome(make_portal):
    portal = make_portal(member_id="m-group", application_token="t")
    batches: list[int] = []

    def write(batch: list[EventRow]) -> list[int | None]:
        batches.append(len(batch))
        if len(batches) == 1:
            time.sleep(0.3)  # the first INSERT is slow: everyone else queues behind it
        return _insert_many(batch)

    woken: list[list[int | None]] = []
    group = GroupInsert(write, after=lambda rows, results: woken.append(results))
    # 16 distinct events, 4 of them sent twice (at the same moment).
    keys = [f"k{i}" for i in range(16)] + ["k1", "k5", "k9", "k13"]
    results = run_concurrently(group, [row(portal.pk, key) for key in keys])
    assert not [r for r in results if isinstance(r, Exception)], results
    ids = [r for r in results if r is not None]
    assert len(ids) == 16 and len(set(ids)) == 16  # each distinct event got its own row id
    assert sum(batches) == len(keys)
    assert len(batches) < len(keys)  # some requests shared an INSERT (and its commit)
    assert max(batches) > 1
    # The after-commit step (waking the shards) ran once per batch, over the rows it stored.
    assert [len(results) for results in woken] == batches
    assert sorted(r for results in woken for r in results if r is not None) == sorted(ids)
    stored = dict(Event.objects.values_list("id", "idempotency_key"))
    assert sorted(stored.values()) == sorted(set(keys))
    for key, result in zip(keys, results, strict=True):
        if result is not None:
            assert stored[result] == key  # the id handed back is the row of this request's event
    # Sent again later: all duplicates, nothing new stored.
    again = run_concurrently(group, [row(portal.pk, key) for key in keys[:6]])
    assert again == [None] * 6
    assert Event.objects.count() == 16


def test_a_failed_insert_fails_its_whole_batch_and_the_next_one_works(make_portal):
    portal = make_portal(member_id="m-group-fail", application_token="t")
    calls: list[int] = []

    def write(batch: list[EventRow]) -> list[int | None]:
        calls.append(len(batch))
        if len(calls) == 1:
            time.sleep(0.3)
            raise RuntimeError("database went away")
        return _insert_many(batch)

    group = GroupInsert(write)
    results = run_concurrently(group, [row(portal.pk, f"f{i}") for i in range(6)])
    failed = [r for r in results if isinstance(r, RuntimeError)]
    assert len(failed) == calls[0]  # exactly the first batch's requests heard of its failure
    assert Event.objects.count() == len(results) - len(failed)
    # The group is not stuck behind the failure: a later request is stored.
    assert isinstance(group.insert(row(portal.pk, "after")), int)
    connection.close()
    assert Event.objects.filter(idempotency_key="after").exists()


class CountingWrite:
    """A write that stores nothing: records each batch's size and when it was written, and answers
    one id per row. With ``hold_first`` the first write waits until the test releases it."""

    def __init__(self, hold_first: bool = False):
        self.batches: list[int] = []
        self.written_at: list[float] = []
        self.first_started = threading.Event()
        self.release_first = threading.Event()
        if not hold_first:
            self.release_first.set()

    def __call__(self, batch: list[EventRow]) -> list[int | None]:
        self.batches.append(len(batch))
        self.written_at.append(time.monotonic())
        if len(self.batches) == 1:
            self.first_started.set()
            assert self.release_first.wait(30)
        return list(range(len(batch)))


def insert_in_thread(group: GroupInsert, key: str, timings: dict[str, float]) -> threading.Thread:
    def one() -> None:
        started = time.monotonic()
        group.insert(row(1, key))
        timings[key] = time.monotonic() - started

    thread = threading.Thread(target=one)
    thread.start()
    return thread


def wait_queued(group: GroupInsert, count: int) -> None:
    """Wait until ``count`` rows wait in the group's queue (the order of events, not a guess at time)."""
    deadline = time.monotonic() + 30
    while len(group._queue) != count:
        assert time.monotonic() < deadline, f"{count} rows never queued"
        time.sleep(0.005)


def prime_two_row_batch(group: GroupInsert, write: CountingWrite) -> None:
    """One held write with two rows queued behind it: the biggest batch so far becomes 2."""
    timings: dict[str, float] = {}
    first = insert_in_thread(group, "p1", timings)
    assert write.first_started.wait(30)  # p1 leads and is writing
    second = insert_in_thread(group, "p2", timings)
    third = insert_in_thread(group, "p3", timings)
    wait_queued(group, 2)  # both arrived during its write
    write.release_first.set()
    for thread in (first, second, third):
        thread.join(timeout=30)
    assert write.batches == [1, 2]


def test_a_lone_row_is_written_at_once_however_long_the_linger():
    write = CountingWrite()
    group = GroupInsert(write, linger=lambda: 30.0)
    started = time.monotonic()
    assert group.insert(row(1, "alone")) == 0
    assert time.monotonic() - started < 10.0  # the biggest batch so far is one row: no one to wait for
    assert write.batches == [1]


def test_a_leader_lingers_until_as_many_rows_as_the_biggest_batch_have_joined():
    write = CountingWrite(hold_first=True)
    group = GroupInsert(write, linger=lambda: 30.0)
    prime_two_row_batch(group, write)
    timings: dict[str, float] = {}
    leader = insert_in_thread(group, "a", timings)
    wait_queued(group, 1)  # "a" leads and lingers for a second row
    joined_at = time.monotonic()
    joiner = insert_in_thread(group, "b", timings)
    leader.join(timeout=30)
    joiner.join(timeout=30)
    assert write.batches == [1, 2, 2]  # the second row joined the leader's batch: one write, not two
    # The leader wrote only once the second row had come, and then at once, not at the linger's end.
    assert joined_at <= write.written_at[2] < joined_at + 30.0
    assert set(timings) == {"a", "b"}


def test_a_leader_lingers_no_longer_than_the_linger():
    write = CountingWrite(hold_first=True)
    group = GroupInsert(write, linger=lambda: 0.3)
    prime_two_row_batch(group, write)
    timings: dict[str, float] = {}
    late = insert_in_thread(group, "late", timings)  # nobody joins it
    late.join(timeout=30)
    assert write.batches == [1, 2, 1]
    assert 0.3 <= timings["late"] < 10.0  # it waited the linger out, and then wrote alone
