"""The typed layer: wire values converted by their declared types, and the helpers over real HTTP."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portals.bitrix.crm import (
    Crm,
    FieldType,
    MultiField,
    Page,
    Record,
    field_types,
    json_value,
    record_from_wire,
    to_bool,
    to_date,
    to_datetime,
    to_decimal,
    to_multifields,
)
from portals.bitrix.exceptions import Bitrix24NotFound


def test_dates_keep_their_offset_and_empty_means_none():
    moment = to_datetime("2026-12-03T10:00:00+03:00")
    assert moment == datetime(2026, 12, 3, 7, 0, tzinfo=UTC)
    assert moment.utcoffset() == timedelta(hours=3)
    assert to_datetime("") is None and to_datetime(None) is None
    assert to_datetime("2026-12-03T10:00:00") is None  # no offset: its moment would be a guess
    assert to_datetime("yesterday") is None
    assert to_date("2026-12-03") == date(2026, 12, 3)
    assert to_date("2026-12-03T23:30:00+03:00") == date(2026, 12, 3)
    assert to_date("") is None


def test_flags_and_money():
    assert (to_bool("Y"), to_bool("N"), to_bool("1"), to_bool("0"), to_bool(True)) == (
        True,
        False,
        True,
        False,
        True,
    )
    assert to_bool("maybe") is None and to_bool(2) is None
    assert to_decimal("1200.50") == Decimal("1200.50")
    assert to_decimal(1200.5) == Decimal("1200.5")  # not the float's binary expansion
    assert to_decimal("100|USD") == Decimal("100")
    assert to_decimal("") is None and to_decimal("NaN") is None and to_decimal("1e999999") is None
    assert to_decimal(float("inf")) is None and to_decimal(True) is None
    assert json_value(Decimal("1200.50")) == "1200.50"


def test_multifields():
    wire = [
        {"ID": "7", "VALUE_TYPE": "WORK", "VALUE": "+1 555 0100", "TYPE_ID": "PHONE"},
        {"ID": "8", "VALUE_TYPE": "HOME", "TYPE_ID": "PHONE"},  # no VALUE: dropped
        "garbage",
    ]
    (phone,) = to_multifields(wire)
    assert phone == MultiField(id=7, value="+1 555 0100", value_type="WORK", type_id="PHONE")
    assert json_value((phone,)) == [
        {"id": 7, "value": "+1 555 0100", "value_type": "WORK", "type_id": "PHONE"}
    ]
    assert to_multifields(None) == ()


def test_a_row_is_typed_by_the_standard_table_and_the_portals_user_fields():
    description = {
        "UF_CRM_BUDGET": {"type": "money", "isMultiple": False},
        "UF_CRM_DAYS": {"type": "double", "isMultiple": True},
        "UF_CRM_AGREED": {"type": "boolean", "isMultiple": False},
    }
    types = field_types("deal", description)
    row = {
        "ID": "42",
        "OPPORTUNITY": "1200.50",
        "CLOSED": "Y",
        "DATE_MODIFY": "2026-12-03T10:00:00+03:00",
        "BEGINDATE": "2026-12-01T00:00:00+03:00",
        "ASSIGNED_BY_ID": "3",
        "CONTACT_IDS": ["5", "6"],
        "UF_CRM_BUDGET": "500.25|EUR",
        "UF_CRM_DAYS": ["1.5", "2"],
        "UF_CRM_AGREED": "1",
        "UF_CRM_UNKNOWN": {"nested": True},
        "TITLE": "Boiler",
    }
    record = record_from_wire("deal", row, types)
    assert isinstance(record, Record) and record.id == 42
    assert record["OPPORTUNITY"] == Decimal("1200.50") and record["CLOSED"] is True
    assert record["DATE_MODIFY"] == datetime(2026, 12, 3, 10, tzinfo=timezone(timedelta(hours=3)))
    assert record["BEGINDATE"] == date(2026, 12, 1) and record["ASSIGNED_BY_ID"] == 3
    assert record["CONTACT_IDS"] == [5, 6]
    assert record.user_fields == {
        "UF_CRM_BUDGET": Decimal("500.25"),
        "UF_CRM_DAYS": [Decimal("1.5"), Decimal("2")],
        "UF_CRM_AGREED": True,
        "UF_CRM_UNKNOWN": {"nested": True},
    }
    as_json = record.as_json()
    assert as_json["OPPORTUNITY"] == "1200.50" and as_json["DATE_MODIFY"] == "2026-12-03T10:00:00+03:00"
    with pytest.raises(ValueError):
        record_from_wire("deal", {"TITLE": "no id"}, types)
    assert record_from_wire("currency", {"CURRENCY": "USD", "BASE": "Y"}, field_types("currency")).id == "USD"


@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=60),
        st.lists(st.text(max_size=5)),
    )
)
def test_conversions_never_raise(value):
    for kind in (
        "integer",
        "double",
        "char",
        "boolean",
        "datetime",
        "date",
        "crm_multifield",
        "string",
        "user",
    ):
        FieldType(kind).convert(value)
        FieldType(kind, multiple=True).convert(value)


def test_deals_round_trip(make_client, sandbox, sandbox_portal) -> None:
    crm = Crm(make_client())
    new_id = crm.deals.add({"TITLE": "helper deal", "OPPORTUNITY": 1200})
    deal = crm.deals.get(new_id)
    assert deal.id == new_id and deal["TITLE"] == "helper deal"
    assert deal["OPPORTUNITY"] == Decimal("1200") and isinstance(deal["DATE_MODIFY"], datetime)
    assert crm.deals.update(new_id, {"STAGE_ID": "WON"}) is True
    assert crm.deals.get(new_id)["STAGE_ID"] == "WON"
    page = crm.deals.list(filter={"<=ID": 60}, select=["ID"], order={"ID": "ASC"})
    assert isinstance(page, Page) and len(page.rows) == 50 and page.next == 50 and page.total == 60
    assert [r.id for r in page.rows] == list(range(1, 51))
    assert "TITLE" in crm.deals.fields()
    ids = [r.id for r in crm.deals.iterate(filter={"<=ID": 130}, select=["ID"])]
    assert sorted(ids) == list(range(1, 131))
    assert crm.deals.delete(new_id) is True
    with pytest.raises(Bitrix24NotFound):
        crm.deals.get(new_id)
    writes = sandbox.counters()["writes"][sandbox_portal.member_id]
    assert writes["crm.deal.add"] == 1 and writes["crm.deal.update"] == 1 and writes["crm.deal.delete"] == 1


def test_other_entities_share_the_shape(make_client) -> None:
    crm = Crm(make_client())
    assert crm.leads.get(1).id == 1
    assert crm.contacts.get(1).id == 1
    company = crm.companies.get(1)
    assert company.id == 1 and isinstance(company["DATE_CREATE"], datetime)


def test_references_currencies_and_users(make_client) -> None:
    crm = Crm(make_client())
    types = {t["ID"] for t in crm.statuses.entity_types()}
    assert "DEAL_STAGE" in types
    stages = crm.statuses.entity_items("DEAL_STAGE")
    assert stages and all({"STATUS_ID", "NAME", "SORT"} <= set(s) for s in stages)
    listed = crm.statuses.list(filter={"ENTITY_ID": "DEAL_STAGE"})
    assert {s["STATUS_ID"] for s in listed} == {s["STATUS_ID"] for s in stages}
    assert all(isinstance(s["SORT"], int) for s in listed)
    assert {s.id for s in crm.statuses.iterate()} >= {s.id for s in listed}
    base = crm.currencies.base()
    currency = crm.currencies.get(base)
    assert currency.id == base and currency["BASE"] is True
    assert base in {c.id for c in crm.currencies.list()}
    me = crm.users.current()
    assert isinstance(me.id, int) and crm.users.get(me.id).id == me.id
    assert crm.users.get(10**6) is None
    assert {u.id for u in crm.users.iterate()} >= {me.id}
