"""Offline draining against the sandbox portal when it goes wrong (docs/events.md, "Offline events"):
the connection cut between storing a batch and confirming it with event.offline.clear loses nothing
and stores nothing twice, and an unreadable record is reported with event.offline.error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from events.models import Event
from events.services.offline import offline_events_drain
from portals.bitrix.client import Bitrix24Client
from portals.bitrix.exceptions import Bitrix24WriteOutcomeUnknown
from portals.models import Portal
from portals.services import client as client_module

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0


@pytest.fixture
def offline_portal(install_portal, portals_sandbox, settings, celery_tasks) -> Portal:
    """Sandbox portal 1 installed, ONCRMDEALUPDATE bound offline, the install's own tasks finished."""
    settings.BITRIX24_EVENTS = []  # nothing online: every change reaches us through the offline queue
    portal = install_portal(1)
    Portal.objects.filter(pk=portal.pk).update(offline_events=True)
    celery_tasks.wait_idle()  # the install's binding task, whose calls would take the faults below
    client = client_module.client_for_portal(member_id=portal.member_id)
    client.call("event.bind", {"event": "ONCRMDEALUPDATE", "event_type": "offline"}, read=False)
    return portal


def change_deals(sandbox, *deal_ids: int) -> None:
    for deal_id in deal_ids:
        sandbox.control("lifecycle/crm", portal=1, action="deal-update", id=deal_id)


def queue(portal: Portal) -> list[dict[str, Any]]:
    """The portal's offline queue as event.offline.list shows it (reserved and failed records too)."""
    return list(client_module.client_for_portal(member_id=portal.member_id).call("event.offline.list") or [])


def intercept(monkeypatch, method: str, before: Callable[[], None] | None = None, after=None) -> list[str]:
    """Run ``before`` just before the first call of ``method`` to Bitrix24, or pass its result
    through ``after``; returns the list that records that the call was made."""
    real = Bitrix24Client.call
    seen: list[str] = []

    def watched(client: Bitrix24Client, name: str, params: Any = None, **options: Any) -> Any:
        first = name == method and not seen
        if first:
            seen.append(name)
            if before is not None:
                before()
        result = real(client, name, params, **options)
        return after(result) if first and after is not None else result

    monkeypatch.setattr(Bitrix24Client, "call", watched)
    return seen


def stored_offline(portal: Portal) -> list[tuple[str, int]]:
    rows = Event.objects.filter(portal=portal, source="offline").order_by("object_key", "ts")
    return [(row.object_key, int(row.ts.timestamp())) for row in rows]


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param("drop_before", id="clear-never-arrives"),
        pytest.param("drop_after", id="clear-done-answer-lost"),
    ],
)
def test_a_connection_cut_at_the_clear_loses_nothing_and_stores_nothing_twice(
    offline_portal, portals_sandbox, recorder, celery_tasks, monkeypatch, cut
):
    rec = recorder("ONCRMDEALUPDATE")
    change_deals(portals_sandbox, 1, 2, 3)
    member_id = offline_portal.member_id

    def cut_the_connection() -> None:
        portals_sandbox.control("faults", member_id=member_id, kind=cut, count=1)

    seen = intercept(monkeypatch, "event.offline.clear", before=cut_the_connection)
    with pytest.raises(Bitrix24WriteOutcomeUnknown):
        offline_events_drain(portal_id=offline_portal.pk)
    assert seen == ["event.offline.clear"]  # the drain died at the confirmation, as intended
    # Stored before the confirmation was attempted: nothing lost with the connection.
    crashed = stored_offline(offline_portal)
    assert [key for key, _ in crashed] == ["ONCRMDEAL:1", "ONCRMDEAL:2", "ONCRMDEAL:3"]

    # Recovery: the next drain (with a further change waiting) confirms what the first one left
    # reserved, and adds only what is new.
    monkeypatch.undo()
    change_deals(portals_sandbox, 4)
    offline_events_drain(portal_id=offline_portal.pk)
    recovered = stored_offline(offline_portal)
    assert recovered[:-1] == crashed and recovered[-1][0] == "ONCRMDEAL:4"
    assert queue(offline_portal) == []  # nothing left reserved on the portal
    # Each stored change is dispatched once.
    calls = rec.wait_for(4, timeout=WAIT)
    celery_tasks.wait_idle()
    assert sorted(obj for _, obj, _ in rec.calls) == ["1", "2", "3", "4"]
    assert len(calls) == 4


def test_a_batch_reserved_by_a_drain_that_died_before_storing_it_is_stored_by_the_next(
    offline_portal, portals_sandbox, recorder, celery_tasks, monkeypatch
):
    rec = recorder("ONCRMDEALUPDATE")
    change_deals(portals_sandbox, 8, 9)
    member_id = offline_portal.member_id

    def lose_the_answer() -> None:
        portals_sandbox.control("faults", member_id=member_id, kind="drop_after", count=1)

    # The portal reserves the batch, and the answer is lost on the way: the drain never saw it.
    seen = intercept(monkeypatch, "event.offline.get", before=lose_the_answer)
    with pytest.raises(Bitrix24WriteOutcomeUnknown):
        offline_events_drain(portal_id=offline_portal.pk)
    assert seen == ["event.offline.get"]
    monkeypatch.undo()
    assert stored_offline(offline_portal) == []
    assert {row["PROCESS_ID"] != "" for row in queue(offline_portal)} == {True}  # reserved, hidden
    report = offline_events_drain(portal_id=offline_portal.pk)
    assert report.stored == 2
    assert [key for key, _ in stored_offline(offline_portal)] == ["ONCRMDEAL:8", "ONCRMDEAL:9"]
    assert queue(offline_portal) == []
    rec.wait_for(2, timeout=WAIT)
    celery_tasks.wait_idle()
    assert sorted(obj for _, obj, _ in rec.calls) == ["8", "9"]


def test_an_unreadable_record_is_reported_with_event_offline_error_and_the_rest_stored(
    offline_portal, portals_sandbox, recorder, celery_tasks, monkeypatch
):
    recorder("ONCRMDEALUPDATE")
    change_deals(portals_sandbox, 5, 6, 7)
    spoiled: list[str] = []

    def spoil_one(result: dict[str, Any]) -> dict[str, Any]:
        # PostgreSQL can't store NUL in jsonb, so such a record can't be stored: it is unreadable.
        record = result["events"][1]
        record["EVENT_DATA"] = {"FIELDS": {"ID": record["EVENT_DATA"]["FIELDS"]["ID"], "TITLE": "a\x00b"}}
        spoiled.append(record["MESSAGE_ID"])
        return result

    intercept(monkeypatch, "event.offline.get", after=spoil_one)
    report = offline_events_drain(portal_id=offline_portal.pk)
    assert (report.fetched, report.stored, report.errors) == (3, 2, 1)
    assert [key for key, _ in stored_offline(offline_portal)] == ["ONCRMDEAL:5", "ONCRMDEAL:7"]
    # On the portal the unreadable record is marked failed and released; the others are cleared.
    (left,) = queue(offline_portal)
    assert (left["MESSAGE_ID"], str(left["ERROR"]), left["PROCESS_ID"]) == (spoiled[0], "1", "")
    celery_tasks.wait_idle()
