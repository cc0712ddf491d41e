"""The typed helpers over real HTTP: each names the method Bitrix24 really has."""

from __future__ import annotations

import pytest

from portals.bitrix.crm import Crm, Page
from portals.bitrix.exceptions import Bitrix24NotFound


def test_deals_round_trip(make_client, sandbox, sandbox_portal) -> None:
    crm = Crm(make_client())
    new_id = crm.deals.add({"TITLE": "helper deal", "OPPORTUNITY": 1200})
    assert crm.deals.get(new_id)["TITLE"] == "helper deal"
    assert crm.deals.update(new_id, {"STAGE_ID": "WON"}) is True
    assert crm.deals.get(new_id)["STAGE_ID"] == "WON"
    page = crm.deals.list(filter={"<=ID": 60}, select=["ID"], order={"ID": "ASC"})
    assert isinstance(page, Page) and len(page.rows) == 50 and page.next == 50 and page.total == 60
    assert "TITLE" in crm.deals.fields()
    ids = [int(r["ID"]) for r in crm.deals.iterate(filter={"<=ID": 130}, select=["ID"])]
    assert sorted(ids) == list(range(1, 131))
    assert crm.deals.delete(new_id) is True
    with pytest.raises(Bitrix24NotFound):
        crm.deals.get(new_id)
    writes = sandbox.counters()["writes"][sandbox_portal.member_id]
    assert writes["crm.deal.add"] == 1 and writes["crm.deal.update"] == 1 and writes["crm.deal.delete"] == 1


def test_other_entities_share_the_shape(make_client) -> None:
    crm = Crm(make_client())
    assert crm.leads.get(1)["ID"] == "1"
    assert crm.contacts.get(1)["ID"] == "1"
    assert crm.companies.get(1)["ID"] == "1"


def test_references_currencies_and_users(make_client) -> None:
    crm = Crm(make_client())
    types = {t["ID"] for t in crm.statuses.entity_types()}
    assert "DEAL_STAGE" in types
    stages = crm.statuses.entity_items("DEAL_STAGE")
    assert stages and all({"STATUS_ID", "NAME", "SORT"} <= set(s) for s in stages)
    assert {s["STATUS_ID"] for s in crm.statuses.list(filter={"ENTITY_ID": "DEAL_STAGE"})} == {
        s["STATUS_ID"] for s in stages
    }
    base = crm.currencies.base()
    assert crm.currencies.get(base)["CURRENCY"] == base
    assert base in {c["CURRENCY"] for c in crm.currencies.list()}
    me = crm.users.current()
    assert crm.users.get(int(me["ID"]))["ID"] == me["ID"]
    assert crm.users.get(10**6) is None
    assert {u["ID"] for u in crm.users.iterate()} >= {me["ID"]}
