"""Property test of the lazy table behind every keyset page: walking and counting the id space
must agree with a brute-force look at the rows, whatever was deleted or added."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.store import EntityTable


def _row(row_id: int) -> dict:
    return {"ID": str(row_id), "TITLE": f"row {row_id}"}


@settings(max_examples=200, deadline=None)
@given(
    generated=st.integers(min_value=0, max_value=60),
    deletes=st.lists(st.integers(min_value=1, max_value=90), max_size=30),
    adds=st.integers(min_value=0, max_value=20),
    lo=st.integers(min_value=-5, max_value=100),
    span=st.one_of(st.none(), st.integers(min_value=-5, max_value=100)),
    descending=st.booleans(),
)
def test_ids_and_counts_match_brute_force(generated, deletes, adds, lo, span, descending):
    table = EntityTable(_row, generated)
    for _ in range(adds):
        table.insert({"TITLE": "added"})
    for row_id in deletes:
        table.delete(row_id)
    hi = None if span is None else lo + span
    existing = [i for i in range(1, table.next_id) if table.get(i) is not None]
    wanted = [i for i in existing if i >= lo and (hi is None or i <= hi)]
    assert list(table.ids(lo, hi, descending=descending)) == (wanted[::-1] if descending else wanted)
    assert table.count_ids(lo, hi) == len(wanted)
    assert len(table) == len(existing)
    assert all(table.get(i)["ID"] == str(i) for i in existing)
