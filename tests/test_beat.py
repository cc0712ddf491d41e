"""Exactly one beat sends: a second one stands by, and takes over once the leader's lease runs out."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from celery.beat import ScheduleEntry

from bitrix_app.beat import LEASE_NAME, SingletonScheduler
from bitrix_app.celery import app
from portals.services.coordination import coordination

pytestmark = pytest.mark.django_db


class RecordingScheduler(SingletonScheduler):
    """The real scheduler, recording what it would send instead of sending it."""

    def __init__(self, *args, **kwargs):
        self.sent: list[str] = []
        super().__init__(*args, **kwargs)

    def apply_async(self, entry: ScheduleEntry, producer=None, advance=True, **kwargs):
        self.sent.append(entry.task)
        return None


@pytest.fixture
def beats(tmp_path, settings, redis_client):
    settings.BITRIX24_BEAT_LEASE_SECONDS = 1.0
    made = []

    def make(name: str) -> RecordingScheduler:
        beat = RecordingScheduler(app=app, schedule_filename=str(tmp_path / f"{name}-schedule"))
        made.append(beat)
        return beat

    yield make
    for beat in made:
        beat.close()


def _everything_due(beat: RecordingScheduler) -> None:
    """Make every periodic task due now (a fresh schedule's tasks are first due one period later)."""
    for entry in beat.schedule.values():
        entry.last_run_at -= timedelta(days=32)  # longer than any period in the schedule


def test_a_second_beat_stands_by_and_takes_over_when_the_first_dies(beats):
    first, second = beats("first"), beats("second")
    assert first.is_leader()
    _everything_due(first)
    first.tick()
    assert first.sent, "the leader sends the due periodic tasks"

    _everything_due(second)
    for _ in range(3):
        second.tick()
    assert second.sent == [] and not second.is_leader()

    # The leader dies: nobody renews its lease, which runs out after 1 s; then the standby leads.
    first._lease = None  # a dead process releases nothing
    deadline = time.monotonic() + 5
    while not second.is_leader():
        assert time.monotonic() < deadline, "the standby never took over"
        time.sleep(0.1)
    second.tick()
    assert second.sent


def test_a_clean_stop_hands_over_at_once(beats):
    first, second = beats("first"), beats("second")
    assert first.is_leader()
    assert not second.is_leader()
    first.close()
    assert second.is_leader()
    assert coordination().lease(LEASE_NAME, ttl=1.0) is None  # held by the second now
