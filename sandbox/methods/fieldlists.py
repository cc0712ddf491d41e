"""The field lists of the emulated entities, as the official docs give them.

``fields.json`` holds, per entity, the ``result`` of the docs' example answer of its ``*.fields``
method (``page`` names the page of the bitrix24/b24restdocs repository it comes from), without the
example portal's own custom fields (``UF_*``, ``PARENT_ID_<n>``). Kept as data rather than code so
it can be compared with the pages line by line, and because the answer is the docs' own shape.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

_FILE = Path(__file__).with_name("fields.json")


@functools.cache
def _load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_FILE.read_text(encoding="utf-8"))
    return data


def field_list(entity: str) -> dict[str, Any]:
    """``entity``'s fields (a fresh copy: callers may change it): for CRM entities, currencies and
    statuses ``{FIELD: {type, isRequired, isReadOnly, isImmutable, isMultiple, isDynamic, title,
    ...}}``; for users and departments ``{FIELD: title}``."""
    return copy.deepcopy(_load()[entity]["fields"])


@functools.cache
def standard(entity: str) -> tuple[str, ...]:
    """The fields ``select: ["*"]`` returns: every field but the multiple ones (RD
    crm/deals/crm-deal-list.md: "'*' — all fields (excluding custom and multiple fields)")."""
    return tuple(name for name, spec in _load()[entity]["fields"].items() if not spec.get("isMultiple"))


@functools.cache
def multiple(entity: str) -> tuple[str, ...]:
    """The entity's multiple fields (PHONE, EMAIL, ..., CONTACT_IDS): returned only when set."""
    return tuple(name for name, spec in _load()[entity]["fields"].items() if spec.get("isMultiple"))


@functools.cache
def types(entity: str) -> dict[str, str]:
    """``{FIELD: type}`` of ``entity`` (shared: don't change it)."""
    return {name: str(spec["type"]) for name, spec in _load()[entity]["fields"].items()}
