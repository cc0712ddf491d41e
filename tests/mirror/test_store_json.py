"""What the upsert stores means what the typed layer says, whichever way its JSON was written
(orjson, the slow path for what orjson can't write or for NUL characters, the ORM); the row
reader converts as the declared types say."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.entities import ENTITIES
from mirror.models import Deal
from mirror.services.store import records_upsert, storable, upsert_execute, upsert_prepare
from portals.bitrix.crm import (
    _CONVERTERS,
    FieldType,
    MultiField,
    Record,
    field_types,
    record_from_wire,
    record_reader,
    to_int,
    to_multifields,
)
from portals.bitrix.values import bounded_int

DEAL = ENTITIES["deal"]
MSK = timezone(timedelta(hours=3))


def _records() -> list[Record]:
    odd_offset = timezone(timedelta(hours=5, minutes=30, seconds=15))
    common = {
        "ASSIGNED_BY_ID": 3,
        "DATE_CREATE": datetime(2026, 1, 2, 3, 4, 5, tzinfo=MSK),
        "DATE_MODIFY": datetime(2026, 1, 2, 3, 4, 5, 120, tzinfo=odd_offset),
        "TITLE": "Boiler",
        "STAGE_ID": "NEW",
        "CATEGORY_ID": 0,
        "OPPORTUNITY": Decimal("1200.50"),
        "CURRENCY_ID": "USD",
        "COMPANY_ID": 4,
        "CONTACT_ID": None,
        "CLOSED": False,
    }
    plain = {
        **common,
        "ID": 1,
        "BEGINDATE": date(2026, 1, 1),
        "TAX_VALUE": Decimal("1E+2"),
        "UF_CRM_BUDGET": [Decimal("500.25"), Decimal("-0.000")],
        "PHONE": (MultiField(7, "+7 900", "WORK", "PHONE"),),
        "MOVED_TIME": datetime(2026, 1, 2, 0, 0, tzinfo=UTC),
        "COMMENTS": "Ünïcödé € 😀 \\u0000 as text",
        "UF_CRM_NESTED": {"a": [1, 2.5, None, True], "b": {"c": "d"}},
        "IS_NEW": None,
    }
    with_nul = {
        **common,
        "ID": 2,
        "TITLE": "Bo\x00iler",
        "COMMENTS": "a\x00b",
        "UF_CRM_X": {"k\x00": ["\x00"]},
    }
    huge = {**common, "ID": 3, "UF_CRM_BIG": {"n": 2**70}, "UF_CRM_KEYS": {1: "one"}}
    return [Record("deal", r["ID"], r) for r in (plain, with_nul, huge)]


def _expected(record: Record) -> dict[str, Any]:
    """The typed layer's JSON of the fields ``data`` keeps, NUL characters removed, as read back."""
    _, data = DEAL.row(record)
    return json.loads(json.dumps(storable(data)))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"])
def test_what_is_stored_means_what_the_typed_layer_says(vendor, install_portal, redis_client):
    if vendor == "postgresql" and connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's statement")
    portal = install_portal()
    records = _records()
    if vendor == "sqlite":
        # The ORM's path (SQLite, the demo), here run against PostgreSQL; without NULs, which
        # PostgreSQL refuses whichever way they come.
        records = [records[0], records[2]]
    for record in records:  # one each: a chunk orjson can't write goes the slow way whole
        prepared = upsert_prepare(portal_id=portal.pk, entity=DEAL, records=[record], vendor=vendor)
        assert upsert_execute(prepared) == 1
    stored = {d.bitrix_id: d for d in Deal.objects.filter(portal=portal)}
    assert stored.keys() == {r.id for r in records}
    for record in records:
        deal = stored[record.id]
        assert deal.data == _expected(record)
        assert "TITLE" not in deal.data and deal.title == record["TITLE"].replace("\x00", "")
        assert deal.date_modify == record["DATE_MODIFY"] and deal.opportunity == Decimal("1200.50")
        assert deal.closed is False and deal.company_id == 4 and deal.contact_id is None
    assert stored[1].data["MOVED_TIME"] == "2026-01-02T00:00:00+00:00"
    assert stored[1].data["PHONE"] == [{"id": 7, "value": "+7 900", "value_type": "WORK", "type_id": "PHONE"}]
    assert stored[3].data["UF_CRM_BIG"] == {"n": 2**70} and stored[3].data["UF_CRM_KEYS"] == {"1": "one"}


@pytest.mark.django_db(transaction=True)
def test_an_update_keeps_a_tombstone_and_replaces_the_data(install_portal, redis_client):
    portal = install_portal()
    first = _records()[0]
    records_upsert(portal_id=portal.pk, entity=DEAL, records=[first])
    Deal.objects.filter(portal=portal, bitrix_id=1).update(deleted_at=datetime(2026, 2, 1, tzinfo=MSK))
    changed = Record("deal", 1, {**first.values, "TITLE": "changed", "UF_CRM_NESTED": None})
    records_upsert(portal_id=portal.pk, entity=DEAL, records=[changed])
    deal = Deal.objects.get(portal=portal, bitrix_id=1)
    assert deal.deleted_at is not None and deal.title == "changed" and deal.data["UF_CRM_NESTED"] is None


# --- the row reader ------------------------------------------------------------------------------


def _reference(spec: FieldType, value: Any) -> Any:
    """FieldType.convert as it was written before converters were decided once per field type."""
    if spec.type == "crm_multifield":
        return to_multifields(value)
    convert = _CONVERTERS.get(spec.type, _to_text_reference)
    if spec.multiple:
        items = value if isinstance(value, list) else ([] if value in (None, "", False) else [value])
        return [convert(item) for item in items]
    if isinstance(value, list) and spec.type in _CONVERTERS:
        value = value[0] if value else None
    return convert(value)


def _to_text_reference(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return value


wire_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.sampled_from(
        ["", "Y", "N", " y ", "1", "0", "true", "42", " 42 ", "+7", "-0", "٣", "²", "1.5", "1e3"]
    ),
    st.sampled_from(["9" * 18, "9" * 19, "9223372036854775807", "9223372036854775808", "100|USD"]),
    st.sampled_from(["2026-12-03T10:00:00+03:00", "2026-12-03", "2026-12-03T10:00:00", "maybe"]),
    st.text(max_size=12),
)
TYPES = ["integer", "user", "double", "money", "char", "boolean", "datetime", "date", "string", "crm_status"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(TYPES), st.booleans(), st.one_of(wire_values, st.lists(wire_values, max_size=3))
        ),
        max_size=8,
    )
)
def test_the_row_reader_converts_as_the_declared_types_say(fields):
    types = {f"F{i}": FieldType(kind, multiple) for i, (kind, multiple, _) in enumerate(fields)}
    row: dict[str, Any] = {"ID": "7", "UNTYPED": {"as": "sent"}}
    row.update({f"F{i}": value for i, (_, _, value) in enumerate(fields)})
    read = record_reader("deal", types)
    record = read(row)
    assert record == record_from_wire("deal", row, types)
    assert record.id == 7 and record["UNTYPED"] == {"as": "sent"}
    for i, (kind, multiple, value) in enumerate(fields):
        assert _same(record[f"F{i}"], _reference(FieldType(kind, multiple), value))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@given(
    st.one_of(
        st.text(max_size=25),
        st.from_regex(r"\s*[+-]?[0-9]{1,22}\s*", fullmatch=True),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.none(),
        st.booleans(),
        st.floats(allow_nan=False),
    )
)
def test_integers_are_read_as_the_general_parser_reads_them(value):
    assert _same(to_int(value), bounded_int(value, low=-(2**63), high=2**63 - 1))


def test_the_reader_types_a_portal_row():
    types = field_types(
        "deal", {"UF_CRM_BUDGET": {"type": "money"}, "UF_CRM_DAYS": {"type": "double", "isMultiple": True}}
    )
    row = {
        "ID": "42",
        "OPPORTUNITY": "1200.50",
        "CLOSED": "Y",
        "DATE_MODIFY": "2026-12-03T10:00:00+03:00",
        "CONTACT_IDS": ["5", "6"],
        "UF_CRM_BUDGET": "500.25|EUR",
        "UF_CRM_DAYS": ["1.5", "2"],
        "PROBABILITY": None,
    }
    record = record_reader("deal", types)(row)
    assert record.id == 42 and record["OPPORTUNITY"] == Decimal("1200.50") and record["CLOSED"] is True
    assert record["DATE_MODIFY"] == datetime(2026, 12, 3, 10, tzinfo=MSK)
    assert record["CONTACT_IDS"] == [5, 6] and record["PROBABILITY"] is None
    assert record.user_fields == {
        "UF_CRM_BUDGET": Decimal("500.25"),
        "UF_CRM_DAYS": [Decimal("1.5"), Decimal("2")],
    }
    with pytest.raises(ValueError):
        record_reader("deal", types)({"TITLE": "no id"})
