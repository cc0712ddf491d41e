"""The initial sync's pipeline: a producer thread converts the pages list_all hands over while the
caller writes the one before. Rows before the checkpoint that says they are in; a producer's error
reaches the caller; an error on either side leaves no thread behind; the producer stays at most a
page or two ahead."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db.models.signals import post_save

from mirror.models import Deal, SyncState
from mirror.services import sync
from mirror.services.sync import AHEAD, mirror_sync
from sandbox.seed import deal_generator

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = 100
_deal = deal_generator(15, [1, 2, 3], 10, 10)


class PortalGone(Exception):
    pass


class PagedClient:
    """A client whose list_all pages ``total`` generated deals, ``PAGE`` per page, with a checkpoint
    ``{"after": id}`` before the first page and after each one, as Bitrix24Client.list_all does;
    ``fail_at``: the page it raises at instead (the portal went away)."""

    def __init__(self, total: int, *, fail_at: int | None = None):
        self.total = total
        self.fail_at = fail_at
        self.pages_out = 0
        self.resumed_from: Any = "not asked"
        self.closed = False

    def call(self, method: str, params: Any = None) -> dict[str, Any]:
        return {}  # crm.deal.fields: no user fields

    def list_all(
        self,
        method: str,
        params: Any = None,
        *,
        checkpoint: dict[str, Any] | None = None,
        on_checkpoint: Any = None,
        progress: Any = None,
        parallel: int = 4,
    ) -> Iterator[dict[str, Any]]:
        self.resumed_from = checkpoint
        after = checkpoint["after"] if checkpoint else 0
        try:
            on_checkpoint({"after": after})
            while after < self.total:
                if self.pages_out == self.fail_at:
                    raise PortalGone("the portal stopped answering")
                last = min(after + PAGE, self.total)
                self.pages_out += 1
                for i in range(after + 1, last + 1):
                    yield _deal(i)
                after = last
                on_checkpoint({"after": after})
        finally:
            self.closed = True


@pytest.fixture
def portal(install_portal, redis_client):
    return install_portal()


def _use(monkeypatch, client: PagedClient) -> None:
    monkeypatch.setattr(sync, "mirror_client", lambda *, portal: client)


def _sync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mirror-sync-")]


def test_each_checkpoint_is_stored_after_its_rows_and_the_producer_stays_close(portal, monkeypatch):
    client = PagedClient(total=2_050)
    _use(monkeypatch, client)
    seen: list[tuple[int, int, int]] = []

    def checkpoint_saved(sender, instance, update_fields=None, **_: Any) -> None:
        if (
            instance.entity == "deal"
            and instance.checkpoint
            and update_fields
            and "checkpoint" in update_fields
        ):
            after = instance.checkpoint["after"]
            stored = Deal.objects.filter(portal_id=instance.portal_id).count()
            seen.append((after, stored, client.pages_out))

    post_save.connect(checkpoint_saved, sender=SyncState)
    try:
        state = mirror_sync(portal_id=portal.pk, entity="deal")
    finally:
        post_save.disconnect(checkpoint_saved, sender=SyncState)

    assert state.state == SyncState.State.COMPLETE and state.rows == 2_050
    assert [after for after, _, _ in seen] == [0, *range(PAGE, 2_001, PAGE), 2_050]
    for after, stored, pages_out in seen:
        assert stored == after  # every row the checkpoint covers is in, and none it doesn't
        # Pages handed out by list_all: the stored ones, those queued, the one being converted.
        assert pages_out <= -(-after // PAGE) + AHEAD + 1
    ids = sorted(Deal.objects.filter(portal=portal).values_list("bitrix_id", flat=True))
    assert ids == list(range(1, 2_051))
    assert not _sync_threads()


def test_a_producer_error_reaches_the_caller_and_the_next_run_resumes(portal, monkeypatch):
    failing = PagedClient(total=1_000, fail_at=4)
    _use(monkeypatch, failing)
    with pytest.raises(PortalGone):
        mirror_sync(portal_id=portal.pk, entity="deal")
    state = SyncState.objects.get(portal=portal, entity="deal")
    assert state.state == SyncState.State.FAILED and "PortalGone" in state.error
    assert state.checkpoint == {"after": 4 * PAGE} and state.rows == 4 * PAGE
    assert Deal.objects.filter(portal=portal).count() == 4 * PAGE
    assert failing.closed and not _sync_threads()

    again = PagedClient(total=1_000)
    _use(monkeypatch, again)
    state = mirror_sync(portal_id=portal.pk, entity="deal")
    assert again.resumed_from == {"after": 4 * PAGE}
    assert state.state == SyncState.State.COMPLETE and state.rows == 1_000
    ids = sorted(Deal.objects.filter(portal=portal).values_list("bitrix_id", flat=True))
    assert ids == list(range(1, 1_001))


class Stop(Exception):
    pass


def test_an_error_of_the_caller_stops_the_producer(portal, monkeypatch):
    client = PagedClient(total=100_000)
    _use(monkeypatch, client)
    calls = []

    def stop_at_the_second_page(rows: int) -> None:
        calls.append(rows)
        if len(calls) == 2:
            raise Stop

    with pytest.raises(Stop):
        mirror_sync(portal_id=portal.pk, entity="deal", progress=stop_at_the_second_page)
    # The producer ended with the caller: its list_all was closed, its thread joined, and it
    # hadn't run on through the table.
    assert client.closed and not _sync_threads()
    assert client.pages_out <= 2 + AHEAD + 1
    state = SyncState.objects.get(portal=portal, entity="deal")
    assert state.state == SyncState.State.FAILED and state.checkpoint == {"after": 2 * PAGE}


def test_a_write_error_stops_the_producer(portal, monkeypatch):
    client = PagedClient(total=100_000)
    _use(monkeypatch, client)
    written = []
    execute = sync.upsert_execute

    def fail_on_the_third(prepared: Any) -> int:
        if len(written) == 2:
            raise RuntimeError("database gone")
        written.append(execute(prepared))
        return written[-1]

    monkeypatch.setattr(sync, "upsert_execute", fail_on_the_third)
    with pytest.raises(RuntimeError, match="database gone"):
        mirror_sync(portal_id=portal.pk, entity="deal")
    assert client.closed and not _sync_threads()
    state = SyncState.objects.get(portal=portal, entity="deal")
    assert state.checkpoint == {"after": 2 * PAGE}
    assert Deal.objects.filter(portal=portal).count() == 2 * PAGE
