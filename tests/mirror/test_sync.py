"""The initial sync, its checkpoints, the mirror's share of the bucket, fetches and tombstones,
against the sandbox over real HTTPS with the real PostgreSQL and Redis."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from mirror.bucket import ShareLimiter
from mirror.entities import ENTITIES, currency_id
from mirror.models import Deal, Pending, SyncState
from mirror.services.incremental import object_changed, object_deleted
from mirror.services.status import mirror_status
from mirror.services.store import records_upsert
from mirror.services.sync import MirrorBusy, mirror_fetch, mirror_sync
from mirror.services.versions import mirror_version
from portals.bitrix.crm import field_types, record_from_wire
from portals.bitrix.limiter import LocalLimiter, plan_params
from portals.services.client import client_for_portal
from portals.services.coordination import coordination

pytestmark = pytest.mark.django_db(transaction=True)


def _wire(portal, method: str, params: dict | None = None) -> list[dict]:
    return list(client_for_portal(member_id=portal.member_id).list_all(method, params or {}))


def test_the_initial_sync_mirrors_every_entity(install_portal, redis_client):
    portal = install_portal()
    for entity in ENTITIES:
        state = mirror_sync(portal_id=portal.pk, entity=entity)
        assert state.state == SyncState.State.COMPLETE and state.checkpoint is None
    wire_deals = {int(r["ID"]): r for r in _wire(portal, "crm.deal.list", {"select": ["*", "UF_*"]})}
    mirrored = {d.bitrix_id: d for d in Deal.objects.filter(portal=portal)}
    assert mirrored.keys() == wire_deals.keys() and len(mirrored) == 120
    deal = mirrored[7]
    wire = wire_deals[7]
    assert deal.title == wire["TITLE"] and deal.stage_id == wire["STAGE_ID"]
    assert deal.opportunity == Decimal(wire["OPPORTUNITY"])
    assert deal.date_modify == datetime.fromisoformat(wire["DATE_MODIFY"])
    assert deal.assigned_by_id == int(wire["ASSIGNED_BY_ID"])
    assert (
        deal.data["SOURCE_ID"] == wire["SOURCE_ID"] and "TITLE" not in deal.data
    )  # typed columns aren't stored twice
    counts = {line.entity: line.rows for line in mirror_status(portal_id=portal.pk)}
    assert counts["lead"] == len(_wire(portal, "crm.lead.list"))
    assert counts["contact"] == len(_wire(portal, "crm.contact.list"))
    assert counts["company"] == len(_wire(portal, "crm.company.list"))
    assert counts["user"] == len(_wire(portal, "user.get")) > 0
    assert counts["status"] == len(_wire(portal, "crm.status.list")) > 0
    currencies = _wire(portal, "crm.currency.list")
    assert counts["currency"] == len(currencies) > 0
    assert {c.bitrix_id for c in ENTITIES["currency"].model.objects.filter(portal=portal)} == {
        currency_id(c["CURRENCY"]) for c in currencies
    }


class Stop(Exception):
    pass


def test_an_interrupted_sync_resumes_from_its_checkpoint(install_portal, portals_sandbox, redis_client):
    portal = install_portal()
    portals_sandbox.control("seed", portal=1, deals=6000)
    seen = []

    def stop_after_first_page(count: int) -> None:
        seen.append(count)
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        mirror_sync(portal_id=portal.pk, entity="deal", progress=stop_after_first_page)
    state = SyncState.objects.get(portal=portal, entity="deal")
    assert state.state == SyncState.State.FAILED and state.checkpoint is not None
    stored_first = Deal.objects.filter(portal=portal).count()
    assert 0 < stored_first < 6000
    mirror_sync(portal_id=portal.pk, entity="deal")
    state.refresh_from_db()
    assert state.state == SyncState.State.COMPLETE and state.checkpoint is None
    ids = sorted(Deal.objects.filter(portal=portal).values_list("bitrix_id", flat=True))
    assert ids == list(range(1, 6001))
    # The resumed run read only what the first one hadn't stored (plus at most the page in flight).
    requests = portals_sandbox.counters()["batch"]["requests"]
    assert requests < 2 * (6000 / 2500 + 8)


def test_one_runner_per_portal_and_entity(install_portal, redis_client):
    portal = install_portal()
    lease = coordination().lease(f"mirror:{portal.pk}:deal", ttl=30)
    try:
        with pytest.raises(MirrorBusy):
            mirror_sync(portal_id=portal.pk, entity="deal")
    finally:
        lease.release()
    assert mirror_sync(portal_id=portal.pk, entity="deal").state == SyncState.State.COMPLETE


def test_the_mirror_takes_at_most_its_share_and_the_app_always_finds_a_slot():
    now = [0.0]
    inner = LocalLimiter(headroom=0, clock=lambda: now[0])
    share = ShareLimiter(inner, share=0.8, sleep=lambda s: now.__setitem__(0, now[0] + s))
    params = plan_params("standard")  # 2/s, burst 50
    app_waits = []
    for i in range(400):
        wait = share.reserve("p1", params)
        now[0] += wait
        if i % 20 == 0:  # the app's own call, now and then, beside the sync
            app_waits.append(inner.reserve("p1", params))
    # Sustained: 400 requests beyond the slice's burst of 40 at 1.6/s.
    assert now[0] == pytest.approx((400 - 40) / 1.6, rel=0.02)
    assert max(app_waits) == 0.0  # the sync never took the slots the app's calls need
    assert inner.level("p1", params) <= 0.8 * 50 + len(app_waits)


def test_events_coalesce_into_one_batch_of_gets(
    install_portal, portals_sandbox, redis_client, django_capture_on_commit_callbacks
):
    portal = install_portal()
    mirror_sync(portal_id=portal.pk, entity="deal")
    client = client_for_portal(member_id=portal.member_id)
    for deal_id in range(1, 31):
        client.call("crm.deal.update", {"id": deal_id, "fields": {"TITLE": f"changed {deal_id}"}})
    spec = ENTITIES["deal"]
    with django_capture_on_commit_callbacks(execute=False):  # the queued fetch is run below, by hand
        for deal_id in [*range(1, 31), *range(1, 31)]:  # each object changed twice: one mark each
            object_changed(portal_id=portal.pk, entity=spec, bitrix_id=deal_id)
    assert Pending.objects.filter(portal=portal).count() == 30
    before = portals_sandbox.counters()["batch"]["requests"]
    assert mirror_fetch(portal_id=portal.pk, entity="deal") == 30
    assert portals_sandbox.counters()["batch"]["requests"] - before == 1  # 30 gets, one request
    assert not Pending.objects.filter(portal=portal).exists()
    titles = dict(Deal.objects.filter(portal=portal, bitrix_id__lte=30).values_list("bitrix_id", "title"))
    assert titles == {i: f"changed {i}" for i in range(1, 31)}


def test_a_fetch_of_a_deleted_object_tombstones_it_and_nothing_revives_it(install_portal, redis_client):
    portal = install_portal()
    mirror_sync(portal_id=portal.pk, entity="deal")
    client = client_for_portal(member_id=portal.member_id)
    spec = ENTITIES["deal"]
    stale = record_from_wire("deal", client.call("crm.deal.get", {"id": 9}), field_types("deal"))
    client.call("crm.deal.delete", {"id": 9})
    object_changed(portal_id=portal.pk, entity=spec, bitrix_id=9)  # an UPDATE that arrives late
    mirror_fetch(portal_id=portal.pk, entity="deal")
    assert Deal.objects.get(portal=portal, bitrix_id=9).deleted_at is not None
    # A fetch that read the deal before it was deleted writes after the tombstone: still deleted.
    records_upsert(portal_id=portal.pk, entity=spec, records=[stale])
    assert Deal.objects.get(portal=portal, bitrix_id=9).deleted_at is not None
    # A DELETE for an object never mirrored leaves a tombstone too.
    object_deleted(portal_id=portal.pk, entity=spec, bitrix_id=99_999)
    assert Deal.objects.get(portal=portal, bitrix_id=99_999).deleted_at is not None


def test_every_write_moves_the_data_version_on(install_portal, redis_client):
    portal = install_portal()
    before = mirror_version(portal_id=portal.pk, entity="deal")
    assert mirror_version(portal_id=portal.pk, entity="deal") == before
    mirror_sync(portal_id=portal.pk, entity="deal")
    after_sync = mirror_version(portal_id=portal.pk, entity="deal")
    assert after_sync != before
    object_deleted(portal_id=portal.pk, entity=ENTITIES["deal"], bitrix_id=3)
    assert mirror_version(portal_id=portal.pk, entity="deal") != after_sync
    assert mirror_version(portal_id=portal.pk, entity="lead") != after_sync
