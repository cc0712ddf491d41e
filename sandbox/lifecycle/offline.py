"""The offline event queue of one portal (protocol §7.6; RD api-reference/events/offline-events.md).

Pure data structure: no I/O, no clock of its own (callers pass `now`), no locking — the sandbox runs it
on one asyncio loop and no method awaits, so each call is atomic and parallel `get` calls receive
disjoint sets, as the docs promise.
"""

from __future__ import annotations

import hashlib
import operator
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.lifecycle.errors import LifecycleError
from sandbox.seed import bitrix_datetime

PAGE_SIZE = 50  # event.offline.list pages are always 50 records
DEFAULT_GET_LIMIT = 50

_NUMERIC = frozenset({"ID", "ERROR"})
_GET_FIELDS = ("ID", "TIMESTAMP_X", "EVENT_NAME", "MESSAGE_ID")
_LIST_FILTER_FIELDS = (*_GET_FIELDS, "PROCESS_ID", "ERROR")
# Longest operator first, so ">=" is not read as ">" followed by "=ID".
_OPERATORS: tuple[tuple[str, Callable[[Any, Any], bool]], ...] = (
    (">=", operator.ge),
    ("<=", operator.le),
    ("!=", operator.ne),
    ("=", operator.eq),
    (">", operator.gt),
    ("<", operator.lt),
    ("!", operator.ne),
)


def message_id_for(*, event: str, object_id: Any, auth_connector: str = "") -> str:
    """The queue's dedup key: one record per event and object, so 1,000 edits of a deal stay one record."""
    key = f"{event.upper()}|{object_id}|{auth_connector}".encode()
    return hashlib.md5(key, usedforsecurity=False).hexdigest()


@dataclass
class OfflineRecord:
    id: int
    timestamp: float
    event_name: str
    event_data: Any
    message_id: str
    event_additional: Any = False
    process_id: str = ""
    error: int = 0

    def as_get_row(self) -> dict[str, Any]:
        """The row shape of event.offline.get (strings, as PHP serialises database rows)."""
        return {
            "ID": str(self.id),
            "TIMESTAMP_X": bitrix_datetime(self.timestamp),
            "EVENT_NAME": self.event_name,
            "EVENT_DATA": self.event_data,
            "EVENT_ADDITIONAL": self.event_additional,
            "MESSAGE_ID": self.message_id,
        }

    def as_list_row(self) -> dict[str, Any]:
        return {**self.as_get_row(), "PROCESS_ID": self.process_id, "ERROR": str(self.error)}

    def value(self, name: str) -> Any:
        """A field's comparable value: ints for ID/ERROR, the unix time for TIMESTAMP_X, strings otherwise."""
        return {
            "ID": self.id,
            "ERROR": self.error,
            "TIMESTAMP_X": self.timestamp,
            "EVENT_NAME": self.event_name,
            "MESSAGE_ID": self.message_id,
            "PROCESS_ID": self.process_id,
        }[name]


def _coerce(name: str, raw: Any) -> Any:
    if name in _NUMERIC:
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise LifecycleError("INVALID_ARGUMENTS", f"Wrong value for filter field {name}")
    if name == "TIMESTAMP_X":
        if isinstance(raw, int | float):
            return float(raw)
        try:
            parsed = datetime.fromisoformat(str(raw))
        except ValueError:
            raise LifecycleError("INVALID_ARGUMENTS", f"Wrong value for filter field {name}")
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return str(raw)


def _parse_filter(raw: Any, allowed: Iterable[str]) -> list[tuple[str, Callable[[Any, Any], bool], Any]]:
    """Bitrix filter keys put the operator before the field name: {">=ID": 1, "=EVENT_NAME": "X"}."""
    if raw in (None, "", []):
        return []
    if not isinstance(raw, Mapping):
        raise LifecycleError("INVALID_ARGUMENTS", "Parameter 'filter' must be array.")
    allowed = set(allowed)
    conditions = []
    for key, value in raw.items():
        key = str(key).strip()
        op: Callable[[Any, Any], bool] = operator.eq
        for prefix, func in _OPERATORS:
            if key.startswith(prefix):
                op, key = func, key[len(prefix) :]
                break
        name = key.upper()
        if name not in allowed:
            raise LifecycleError("INVALID_ARGUMENTS", f"Filter field {name} is not supported")
        conditions.append((name, op, _coerce(name, value)))
    return conditions


def _parse_order(raw: Any, default: tuple[str, str], allowed: Iterable[str]) -> list[tuple[str, bool]]:
    """[(field, descending)], always ending with ID so equal timestamps come out in queue order."""
    allowed = set(allowed)
    if raw in (None, "", []):
        items = [default]
    elif isinstance(raw, Mapping):
        items = [(str(k), str(v)) for k, v in raw.items()]
    else:
        raise LifecycleError("INVALID_ARGUMENTS", "Parameter 'order' must be array.")
    order = []
    for name, direction in items:
        name = name.upper()
        if name not in allowed:
            raise LifecycleError("INVALID_ARGUMENTS", f"Order field {name} is not supported")
        order.append((name, direction.upper() == "DESC"))
    if not any(name == "ID" for name, _ in order):
        order.append(("ID", False))
    return order


def _sorted(records: list[OfflineRecord], order: list[tuple[str, bool]]) -> list[OfflineRecord]:
    # Stable sorts applied from the last key to the first give a multi-key sort with mixed directions.
    for name, descending in reversed(order):
        records = sorted(records, key=operator.methodcaller("value", name), reverse=descending)
    return records


def _as_int(raw: Any, default: int) -> int:
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise LifecycleError("INVALID_ARGUMENTS", f"Wrong integer value {raw!r}")


def _as_list(raw: Any) -> list[str]:
    if raw in (None, ""):
        return []
    if isinstance(raw, Mapping):
        raw = list(raw.values())
    if not isinstance(raw, list | tuple):
        raw = [raw]
    return [str(v) for v in raw]


@dataclass
class OfflineQueue:
    """One portal's offline queue (records shared by every offline handler of the app, as on a portal)."""

    records: list[OfflineRecord] = field(default_factory=list)
    next_id: int = 1

    def record(
        self, *, event: str, data: Any, object_id: Any, now: float, auth_connector: str = ""
    ) -> tuple[OfflineRecord, bool]:
        """Record a change; returns (record, created). A waiting record of the same object is updated in
        place (latest state wins); a record reserved by a process or marked as an error is left alone
        and a new one is queued, so nothing a consumer holds changes under its feet."""
        message_id = message_id_for(event=event, object_id=object_id, auth_connector=auth_connector)
        for existing in self.records:
            if existing.message_id == message_id and not existing.process_id and not existing.error:
                existing.timestamp = now
                existing.event_data = data
                return existing, False
        rec = OfflineRecord(
            id=self.next_id, timestamp=now, event_name=event.upper(), event_data=data, message_id=message_id
        )
        self.next_id += 1
        self.records.append(rec)
        return rec, True

    def get(self, params: Mapping[str, Any], *, extended: bool) -> dict[str, Any]:
        """event.offline.get: select waiting records; clear=1 deletes them, clear=0 reserves them.

        `extended` is the rest_offline_extended feature: without it the reserve mode is refused.
        Reserved records go under the caller's `process_id` when it passes one (RD: "to select more
        unprocessed records from the current process"), else under a new one. A reserved record is
        never selected again, not even for its own `process_id`: the docs are silent on that, so the
        sandbox gives a consumer that lost a batch only what it can count on, `event.offline.list`
        (which shows the batch under its PROCESS_ID) and `event.offline.clear` / `.error`.
        """
        clear = _as_int(params.get("clear"), 1)
        limit = max(0, _as_int(params.get("limit"), DEFAULT_GET_LIMIT))
        want_errors = _as_int(params.get("error"), 0)
        process_id = str(params.get("process_id") or "")
        if not clear and not extended:
            raise LifecycleError(
                "ACCESS_DENIED", "Feature rest_offline_extended is not available on this plan", status=403
            )
        conditions = _parse_filter(params.get("filter"), _GET_FIELDS)
        order = _parse_order(params.get("order"), ("TIMESTAMP_X", "ASC"), _GET_FIELDS)
        candidates = [
            r
            for r in self.records
            if not r.process_id
            and r.error == (1 if want_errors else 0)
            and all(op(r.value(name), value) for name, op, value in conditions)
        ]
        selected = _sorted(candidates, order)[:limit]
        rows = [r.as_get_row() for r in selected]
        if clear:
            chosen = {id(r) for r in selected}
            self.records = [r for r in self.records if id(r) not in chosen]
            return {"process_id": None, "events": rows}
        process_id = process_id or secrets.token_hex(16)
        for r in selected:
            r.process_id = process_id
        return {"process_id": process_id, "events": rows}

    def clear(self, params: Mapping[str, Any]) -> bool:
        """event.offline.clear: delete a process's records (all of them, or those in id[] / message_id[])."""
        process_id = str(params.get("process_id") or "")
        if not process_id:
            raise LifecycleError("INVALID_ARGUMENTS", "Process ID is required")
        ids = {int(v) for v in _as_list(params.get("id")) if v.isdigit()}
        message_ids = set(_as_list(params.get("message_id")))

        def cleared(r: OfflineRecord) -> bool:
            if r.process_id != process_id:
                return False
            if ids:
                return r.id in ids
            if message_ids:
                return r.message_id in message_ids
            return True

        self.records = [r for r in self.records if not cleared(r)]
        return True

    def error(self, params: Mapping[str, Any]) -> bool:
        """event.offline.error: mark a process's records as failed; they leave the process and are then
        returned only by event.offline.get with error=1."""
        process_id = str(params.get("process_id") or "")
        if not process_id:
            raise LifecycleError("INVALID_ARGUMENTS", "Process ID is required")
        message_ids = set(_as_list(params.get("message_id")))
        for r in self.records:
            if r.process_id == process_id and (not message_ids or r.message_id in message_ids):
                r.process_id = ""
                r.error = 1
        return True

    def list(self, params: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int, int | None]:
        """event.offline.list: read without changing anything; returns (page, total, next start or None)."""
        conditions = _parse_filter(params.get("filter"), _LIST_FILTER_FIELDS)
        order = _parse_order(params.get("order"), ("ID", "ASC"), _LIST_FILTER_FIELDS)
        start = max(0, _as_int(params.get("start"), 0))
        matching = [r for r in self.records if all(op(r.value(n), v) for n, op, v in conditions)]
        matching = _sorted(matching, order)
        page = [r.as_list_row() for r in matching[start : start + PAGE_SIZE]]
        following = start + PAGE_SIZE
        return page, len(matching), (following if following < len(matching) else None)
