"""``select``, ``filter``, ``order`` and ``pagination`` of REST 3.0 list and get methods (§11).

* ``select``: field names; a dotted name (``responsible.name``) selects a related object's field
  and comes back as a nested object. An unknown field of the object itself is silently left out
  (200); an unknown field of a related object is UNKNOWNDTOPROPERTYEXCEPTION (RD rest-v3.md).
* ``filter``: a list of conditions joined by AND: ``[field, op, value]``, ``[field, value]``
  (a list value means ``in``, a scalar ``=``) or ``{"logic": "or"|"and", "conditions": [...]}``.
  Operators ``= != > >= < <= in between``; another operator is UNKNOWNFILTEROPERATOREXCEPTION, a
  field the object lacks UNKNOWNDTOPROPERTYEXCEPTION, a field without the Filterable attribute
  or a value of the wrong type REQUESTVALIDATIONEXCEPTION.
* ``order``: ``{field: "ASC"|"DESC"}`` over sortable fields, else INVALIDORDEREXCEPTION.
* ``pagination``: ``{page, limit, offset}``; limit 50 by default, at most 1,000; ``page`` gives
  the offset ``(page - 1) * limit``; zero, negative or non-numeric values are
  INVALIDPAGINATIONEXCEPTION.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sandbox.rest_v3.errors import (
    INVALID_FILTER,
    INVALID_ORDER,
    INVALID_PAGINATION,
    INVALID_SELECT,
    UNKNOWN_OPERATOR,
    UNKNOWN_PROPERTY,
    V3Error,
    invalid,
)
from sandbox.rest_v3.registry import DTOS, Dto, Field
from sandbox.seed import PORTAL_TZ

Row = dict[str, Any]
Select = dict[str, "Select | None"]  # field -> sub-selection of a related object (None: a plain field)
Predicate = Callable[[Row], bool]

OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "in", "between")
PAGE_DEFAULT = 50
PAGE_MAX = 1000

_TYPE_NAMES = {
    "integer": "int",
    "string": "string",
    "datetime": "DateTime",
    "boolean": "bool",
    "enum": "string",
    "array": "array",
}


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def unknown_field(name: str, dto: Dto) -> V3Error:
    return V3Error(UNKNOWN_PROPERTY, f"Unknown field `{name}` for entity `{dto.name}`")


# --- values ---------------------------------------------------------------------------------


def parse_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=PORTAL_TZ)


def format_datetime(value: datetime) -> str:
    return value.astimezone(PORTAL_TZ).replace(microsecond=0).isoformat()


def typed(field: Field, value: Any, name: str | None = None) -> Any:
    """``value`` checked against the field's type (datetimes parsed); raises REQUESTVALIDATION."""
    name = name or field.name
    wrong = invalid(
        name,
        f"Field `{name}` requires data type `{_TYPE_NAMES.get(field.type, field.type)}` for this request",
    )
    if value is None:
        return None
    if field.type == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if field.type == "boolean":
        if not isinstance(value, bool):
            raise wrong
        return value
    if field.type == "datetime":
        parsed = parse_datetime(value)
        if parsed is None:
            raise wrong
        return parsed
    if field.type == "enum":
        if not isinstance(value, str) or value not in field.values:
            raise invalid(name, f"Field `{name}` accepts one of: {', '.join(field.values)}")
        return value
    if field.type == "array":
        if not isinstance(value, list):
            raise wrong
        element = Field(name, field.items or "string")
        return [typed(element, v, name) for v in value]
    if not isinstance(value, str):
        raise wrong
    return value


def _comparable(field: Field, value: Any) -> Any:
    """A stored value in the form ``typed`` gives a filter's value (dates as datetimes)."""
    if field.type == "datetime":
        return parse_datetime(value)
    return value


# --- select ---------------------------------------------------------------------------------


def parse_select(dto: Dto, select: Any, *, default: list[str]) -> Select:
    if select is None:
        select = default
    if not isinstance(select, list) or not all(isinstance(s, str) for s in select):
        raise V3Error(INVALID_SELECT, f"Unable to recognize select expression `{_compact(select)}`")
    tree: Select = {}
    for path in select:
        _add_path(dto, tree, path, related=False)
    return tree


def _add_path(dto: Dto, tree: Select, path: str, *, related: bool) -> None:
    head, dot, rest = path.partition(".")
    field = dto.fields.get(head)
    if field is None:
        if related:
            raise unknown_field(head, dto)
        return  # an unknown field of the object itself is left out, not refused
    if not field.relation:
        if dot:
            raise unknown_field(rest.partition(".")[0], dto)
        tree[head] = None
        return
    target = DTOS[field.relation]
    sub = tree.get(head) or {}
    if dot:
        _add_path(target, sub, rest, related=True)
    else:
        for name in target.scalar_names():
            sub[name] = None
    tree[head] = sub


Resolver = Callable[[str, Any], Row | None]


def project(row: Row, tree: Select, dto: Dto, resolve: Resolver) -> Row:
    """The selected fields of ``row``; related objects are fetched with ``resolve(dto_name, id)``."""
    out: Row = {}
    for name, sub in tree.items():
        field = dto.fields[name]
        if field.relation and sub is not None:
            related = resolve(field.relation, row.get(field.via))
            out[name] = None if related is None else project(related, sub, DTOS[field.relation], resolve)
        else:
            out[name] = row.get(name)
    return out


# --- filter ---------------------------------------------------------------------------------


def parse_filter(dto: Dto, value: Any) -> Predicate:
    if value is None:
        return lambda row: True
    if not isinstance(value, list):
        raise V3Error(INVALID_FILTER, f"Unable to recognize filter expression `{_compact(value)}`")
    parts = [_condition(dto, c) for c in value]
    return lambda row: all(p(row) for p in parts)


def _condition(dto: Dto, condition: Any) -> Predicate:
    if isinstance(condition, dict):
        logic = str(condition.get("logic", "and")).lower()
        members = condition.get("conditions")
        if logic not in ("and", "or") or not isinstance(members, list) or not members:
            raise V3Error(INVALID_FILTER, f"Unable to recognize filter expression `{_compact(condition)}`")
        parts = [_condition(dto, c) for c in members]
        if logic == "or":
            return lambda row: any(p(row) for p in parts)
        return lambda row: all(p(row) for p in parts)
    if not isinstance(condition, list) or len(condition) not in (2, 3) or not isinstance(condition[0], str):
        raise V3Error(INVALID_FILTER, f"Unable to recognize filter expression `{_compact(condition)}`")
    if len(condition) == 2:
        name, value = condition
        operator: Any = "in" if isinstance(value, list) else "="
    else:
        name, operator, value = condition
    field = dto.fields.get(name)
    if field is None or field.relation:
        raise unknown_field(name, dto)
    if not isinstance(operator, str) or operator.lower() not in OPERATORS:
        raise V3Error(UNKNOWN_OPERATOR, f"Unknown filter operator `{operator}`")
    operator = operator.lower()
    if not field.filterable:
        raise invalid(
            name,
            f"In DTO `{dto.name}`, the `{name}` field requires the `Filterable` attribute for such a request",
        )
    if operator in ("in", "between"):
        if not isinstance(value, list) or (operator == "between" and len(value) != 2) or not value:
            kind = "a list of two values" if operator == "between" else "a list"
            raise invalid(name, f"Operator `{operator}` of field `{name}` requires {kind}")
        wanted = [typed(field, v, name) for v in value]
    else:
        wanted = [typed(field, value, name)]
    return _predicate(field, operator, wanted)


def _predicate(field: Field, operator: str, wanted: list[Any]) -> Predicate:
    name = field.name

    def test(row: Row) -> bool:
        have = _comparable(field, row.get(name))
        if operator == "in":
            return have in wanted
        if operator == "!=":
            return have != wanted[0]
        if operator == "=":
            return have == wanted[0]
        if have is None or any(w is None for w in wanted):
            return False
        if operator == "between":
            return bool(wanted[0] <= have <= wanted[1])
        return bool(
            {">": have > wanted[0], ">=": have >= wanted[0], "<": have < wanted[0], "<=": have <= wanted[0]}[
                operator
            ]
        )

    return test


# --- order and pagination --------------------------------------------------------------------


def parse_order(dto: Dto, value: Any) -> list[tuple[str, bool]]:
    """``[(field, descending)]``; ``id`` ascending when no order is given."""
    if value is None:
        return [("id", False)]
    bad = V3Error(INVALID_ORDER, f"Unable to recognize sorting parameter `{_compact(value)}`")
    if not isinstance(value, dict) or not value:
        raise bad
    keys = []
    for name, direction in value.items():
        field = dto.fields.get(name)
        if field is None or not field.sortable or str(direction).upper() not in ("ASC", "DESC"):
            raise bad
        keys.append((name, str(direction).upper() == "DESC"))
    return keys


def sort_rows(rows: list[Row], keys: list[tuple[str, bool]], dto: Dto) -> list[Row]:
    # Stable sorts, last key first; missing values sort before any value, as NULLs do ascending.
    for name, descending in reversed(keys):
        field = dto.fields[name]

        def key(row: Row, field: Field = field) -> tuple[bool, Any]:
            value = _comparable(field, row.get(field.name))
            return (value is not None, value if value is not None else 0)

        rows.sort(key=key, reverse=descending)
    return rows


def parse_pagination(value: Any) -> tuple[int, int]:
    """(offset, limit) of a list request."""
    if value is None:
        return 0, PAGE_DEFAULT
    bad = V3Error(INVALID_PAGINATION, f"Unable to recognize pagination parameter `{_compact(value)}`")
    if not isinstance(value, dict):
        raise bad

    def number(key: str, default: int | None) -> int | None:
        raw = value.get(key, default)
        if raw is None:
            return None
        if isinstance(raw, str) and raw.strip().isdigit():
            raw = int(raw)
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise bad
        return raw

    limit = number("limit", PAGE_DEFAULT)
    page = number("page", None)
    offset = number("offset", 0)
    if not limit or page == 0:
        raise bad
    limit = min(limit, PAGE_MAX)
    if page is not None:
        offset = (page - 1) * limit
    return int(offset or 0), limit
