"""Bitrix24 list semantics shared by every list method.

Pages of 50; ``start`` is the offset (``next`` = start + 50 while rows remain); ``start=-1`` skips
the COUNT (``total`` 0, no ``next``); ``order`` is ``{FIELD: ASC|DESC}``; ``filter`` keys carry an
operator prefix; ``select`` takes field names, ``*`` (all standard fields) and ``UF_*`` (user
fields). The cost model is charged here: per returned row, per skipped OFFSET row and per counted
row unless start=-1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from sandbox.registry import Call, ListPage, RestError
from sandbox.store import EntityTable, Row

PAGE = 50
OPERATOR = re.compile(r"^(!=%|!%=|!@|!=|>=|<=|=%|%=|!%|!|>|<|=|%|@)?(.+)$")


def param(params: dict[str, Any], name: str) -> Any:
    """A list parameter by its documented lower-case name or upper-case (the docs' own examples
    send both: ``filter``/``FILTER``, ``order``/``ORDER``, ``select``/``SELECT``)."""
    value = params.get(name)
    return params.get(name.upper()) if value is None else value


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _compare(left: Any, right: Any) -> int:
    ln, rn = _number(left), _number(right)
    if ln is not None and rn is not None:
        return (ln > rn) - (ln < rn)
    ls, rs = "" if left is None else str(left), "" if right is None else str(right)
    return (ls > rs) - (ls < rs)


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, list):
        return any(_equal(item, right) for item in left)
    if right in ("", None) or right == []:
        return left in ("", None) or left == []
    if isinstance(left, bool) or isinstance(right, bool):
        return _truthy(left) == _truthy(right)
    return _compare(left, right) == 0


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("y", "true", "1")


def _like(value: Any, pattern: str) -> bool:
    text = "" if value is None else str(value)
    return pattern.lower() in text.lower()


def _like_pattern(value: Any, pattern: str) -> bool:
    regex = "^" + re.escape(pattern).replace("%", ".*").replace("_", ".") + "$"
    return re.match(regex, "" if value is None else str(value), re.IGNORECASE | re.DOTALL) is not None


def _values(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return value
    return [value]


def compile_filter(raw: Any) -> list[tuple[str, str, Any]]:
    """``{">ID": 5, "STAGE_ID": ["NEW", "WON"]}`` → [(op, FIELD, value)]."""
    if raw in (None, "", []):
        return []
    if not isinstance(raw, dict):
        raise RestError("", "Parameter 'filter' must be array.", 400)
    conditions = []
    for key, value in raw.items():
        match = OPERATOR.match(str(key))
        if not match:
            continue
        op, field = match.group(1) or "", match.group(2).upper()
        if op == "" and isinstance(value, list | dict):
            op = "@"
        conditions.append((op, field, value))
    return conditions


def matches(row: Row, conditions: list[tuple[str, str, Any]]) -> bool:
    for op, field, expected in conditions:
        value = row.get(field)
        if op in ("", "="):
            ok = _equal(value, expected)
        elif op in ("!", "!="):
            ok = not _equal(value, expected)
        elif op == ">":
            ok = value not in (None, "") and _compare(value, expected) > 0
        elif op == ">=":
            ok = value not in (None, "") and _compare(value, expected) >= 0
        elif op == "<":
            ok = value not in (None, "") and _compare(value, expected) < 0
        elif op == "<=":
            ok = value not in (None, "") and _compare(value, expected) <= 0
        elif op == "%":
            ok = _like(value, str(expected))
        elif op == "!%":
            ok = not _like(value, str(expected))
        elif op in ("=%", "%="):
            ok = _like_pattern(value, str(expected))
        elif op in ("!=%", "!%="):
            ok = not _like_pattern(value, str(expected))
        elif op == "@":
            ok = any(_equal(value, item) for item in _values(expected))
        elif op == "!@":
            ok = not any(_equal(value, item) for item in _values(expected))
        else:  # pragma: no cover - the regex admits no other operator
            ok = False
        if not ok:
            return False
    return True


def compile_order(raw: Any, default: str = "ID") -> list[tuple[str, bool]]:
    """``{"DATE_CREATE": "DESC"}`` → [("DATE_CREATE", descending)]; empty → by ``default`` ASC."""
    if not raw:
        return [(default, False)]
    if not isinstance(raw, dict):
        raise RestError("", "Parameter 'order' must be array.", 400)
    return [(str(field).upper(), str(direction).upper() == "DESC") for field, direction in raw.items()]


def checked_order(raw: Any, field_of: Callable[[str], str | None] = str) -> dict[str, str]:
    """The universal API's ``order`` ({field: ASC|DESC}) checked as crm.item.list and crm.type.list
    document it: ``field_of`` names the stored field (None: not sortable); answers
    ``{stored field: ASC|DESC}`` or raises 400 INVALID_ARG_VALUE."""
    if raw in (None, "", []):
        return {}
    if not isinstance(raw, dict):
        raise RestError("INVALID_ARG_VALUE", "Invalid order: an object {field: ASC|DESC} is expected", 400)
    order: dict[str, str] = {}
    for name, direction in raw.items():
        stored = field_of(str(name))
        if stored is None:
            raise RestError(
                "INVALID_ARG_VALUE", f"Invalid order: field '{str(name)[:64]}' is not allowed in order", 400
            )
        if str(direction).upper() not in ("ASC", "DESC"):
            raise RestError(
                "INVALID_ARG_VALUE",
                f"Invalid order: allowed sort directions are ASC, DESC. But got '{str(direction)[:16]}' "
                f"for field '{str(name)[:64]}'",
                400,
            )
        order[stored] = str(direction).upper()
    return order


def sort_rows(rows: list[Row], order: list[tuple[str, bool]]) -> list[Row]:
    for field, descending in reversed(order):
        numeric = all(_number(r.get(field)) is not None for r in rows)

        def key(row: Row, field: str = field, numeric: bool = numeric) -> Any:
            value = row.get(field)
            return _number(value) if numeric else ("" if value is None else str(value))

        rows.sort(key=key, reverse=descending)
    return rows


def project(row: Row, select: Any, standard: Iterable[str]) -> Row:
    """Apply ``select``: none or ``*`` → standard fields; ``UF_*`` → user fields; else the names."""
    fields = [str(f).upper() for f in _values(select)] if select else []
    if not fields:
        return {k: row.get(k) for k in standard}
    chosen: dict[str, Any] = {}
    for field in fields:
        if field == "*":
            chosen.update({k: row.get(k) for k in standard})
        elif field == "UF_*":
            chosen.update({k: v for k, v in row.items() if k.startswith("UF_")})
        elif field in row or field in standard:
            chosen[field] = row.get(field)
    if "ID" in row and "ID" not in chosen:
        chosen = {"ID": row["ID"], **chosen}
    return chosen


def parse_start(raw: Any) -> int:
    try:
        start = int(raw or 0)
    except (TypeError, ValueError):
        start = 0
    return start if start >= -1 else 0


def _id_bounds(conditions: list[tuple[str, str, Any]]) -> tuple[int, int | None] | None:
    """When the filter only constrains ID by comparison, the id range it selects; else None."""
    lo, hi = 1, None
    for op, field, value in conditions:
        number = _number(value) if not isinstance(value, list | dict) else None
        if field != "ID" or number is None:
            return None
        if op == ">":
            lo = max(lo, math.floor(number) + 1)
        elif op == ">=":
            lo = max(lo, math.ceil(number))
        elif op in ("<", "<="):
            top = math.ceil(number) - 1 if op == "<" else math.floor(number)
            hi = top if hi is None else min(hi, top)
        elif op in ("", "="):
            if number != int(number):
                return 1, 0
            lo, hi = max(lo, int(number)), int(number) if hi is None else min(hi, int(number))
        else:
            return None
    return lo, hi


def _only_id(select: Any) -> bool:
    return bool(select) and {str(f).upper() for f in _values(select)} == {"ID"}


def list_table(
    call: Call, table: EntityTable, standard: Iterable[str], *, params: dict[str, Any] | None = None
) -> ListPage:
    """Answer a ``crm.*.list`` call over ``table`` with Bitrix24's paging, filter, order and select
    (``params`` when given: crm.item.list passes its own, translated to the old field names)."""
    params = call.params if params is None else params
    cost = call.sandbox.config.cost
    conditions = compile_filter(param(params, "filter"))
    order = compile_order(param(params, "order"))
    start = parse_start(param(params, "start"))
    offset = max(start, 0)
    standard = list(standard)
    select = param(params, "select")
    bounds = _id_bounds(conditions)
    if bounds is not None and len(order) == 1 and order[0][0] == "ID":
        # Keyset fast path: ID order with ID-only filters walks the id space directly.
        lo, hi = bounds
        ids: Iterator[int] = table.ids(lo, hi, descending=order[0][1])
        page_ids = list(islice(ids, offset, offset + PAGE))
        if _only_id(select):
            # Keyset traversals select only ID: don't build 50 generated rows to throw them away.
            result = [{"ID": str(i)} for i in page_ids]
            call.charge(cost.per_row * len(result) + cost.per_offset_row * offset)
            total = table.count_ids(lo, hi) if start != -1 else 0
            if start != -1:
                call.charge(cost.per_count_row * total)
            has_next = start != -1 and offset + PAGE < total
            return ListPage(rows=result, total=total, next=offset + PAGE if has_next else None)
        rows = [r for r in (table.get(i) for i in page_ids) if r is not None]
        total = table.count_ids(lo, hi) if start != -1 else 0
    else:
        matched = [r for r in (table.get(i) for i in table.ids()) if r is not None and matches(r, conditions)]
        sort_rows(matched, order)
        rows = matched[offset : offset + PAGE]
        total = len(matched) if start != -1 else 0
    call.charge(cost.per_row * len(rows) + cost.per_offset_row * offset)
    if start != -1:
        call.charge(cost.per_count_row * total)
    result = [project(r, select, standard) for r in rows]
    has_next = start != -1 and offset + PAGE < total
    return ListPage(rows=result, total=total, next=offset + PAGE if has_next else None)


def list_rows(call: Call, rows: list[Row], standard: Iterable[str], *, default_order: str = "ID") -> ListPage:
    """Like list_table, over a small materialised list (statuses, currencies, users)."""
    params = call.params
    cost = call.sandbox.config.cost
    conditions = compile_filter(param(params, "filter"))
    order = compile_order(param(params, "order"), default_order)
    start = parse_start(param(params, "start"))
    offset = max(start, 0)
    matched = sort_rows([r for r in rows if matches(r, conditions)], order)
    page = matched[offset : offset + PAGE]
    total = len(matched) if start != -1 else 0
    call.charge(cost.per_row * len(page) + cost.per_offset_row * offset + cost.per_count_row * total)
    has_next = start != -1 and offset + PAGE < total
    return ListPage(
        rows=[project(r, param(params, "select"), standard) for r in page],
        total=total,
        next=offset + PAGE if has_next else None,
    )
