"""The ``batch`` method's wire format: sub-call strings, back-references, per-command results.

Each sub-call is ``method?<PHP-style query>`` (qs-codec builds ``a[b][c]=`` like PHP's
http_build_query, which is what Bitrix24 parses on the other side). ``$result[key][...]``
back-references are resolved by Bitrix24 inside one request; across the 50-command chunks of a
longer batch, or when a sub-call is re-sent, this module resolves them locally from the results
already received.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import qs_codec as qs

from .exceptions import Bitrix24ApiError, error_from_payload

MAX_COMMANDS = 50


def _quote(text: str) -> str:
    return quote(text, safe="")  # RFC 3986 unreserved characters only, as qs-codec does


# $result[key] followed by any number of [segment]s; other sections ($result_total...) too.
_REF = re.compile(r"\$(result|result_total|result_next)\[([^\]]+)\]((?:\[[^\]]*\])*)")


def php_values(value: Any) -> Any:
    """Booleans as PHP sends them (1/0), None as empty: qs-codec would write true/false."""
    if isinstance(value, bool):
        return 1 if value else 0
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return {k: php_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [php_values(v) for v in value]
    return value


def encode_command(method: str, params: Mapping[str, Any] | None) -> str:
    query = php_query(dict(params or {}))
    return f"{method}?{query}" if query else method


class _Unusual(Exception):
    """A value our fast encoder leaves to qs-codec (dates, decimals, custom objects)."""


def _flatten(prefix: str, value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(f"{_quote(prefix)}={_quote(value)}")
    elif isinstance(value, bool):
        out.append(f"{_quote(prefix)}={1 if value else 0}")
    elif isinstance(value, int | float):
        out.append(f"{_quote(prefix)}={_quote(str(value))}")
    elif value is None:
        out.append(f"{_quote(prefix)}=")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}[{k}]", v, out)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out)
    else:
        raise _Unusual


def php_query(params: Mapping[str, Any]) -> str:
    """``params`` as a PHP-style query string (``filter%5B%3EID%5D=5``), exactly as qs-codec writes it.

    Strings, numbers, booleans (1/0), None (empty), dicts and lists are encoded here; anything else
    goes through qs-codec. Why not always qs-codec: a list traversal encodes 50 sub-calls per
    request, and qs-codec's general machinery took ~30 ms of CPU per request — as much as the rest
    of the client's work on 2,500 rows. The output is checked against qs-codec in the tests.
    """
    out: list[str] = []
    try:
        for key, value in params.items():
            _flatten(str(key), value, out)
    except _Unusual:
        return qs.encode(php_values(dict(params)))
    return "&".join(out)


def references(params: Any) -> set[str]:
    """Keys of other commands that ``params`` refers to through ``$result[...]``."""
    found: set[str] = set()
    if isinstance(params, str):
        found.update(m.group(2) for m in _REF.finditer(params))
    elif isinstance(params, Mapping):
        for v in params.values():
            found |= references(v)
    elif isinstance(params, list | tuple):
        for v in params:
            found |= references(v)
    return found


def _lookup(value: Any, path: str) -> tuple[bool, Any]:
    for segment in re.findall(r"\[([^\]]*)\]", path):
        if isinstance(value, Mapping):
            if segment in value:
                value = value[segment]
            elif segment.lower() in value:
                value = value[segment.lower()]
            else:
                return False, None
        elif isinstance(value, list):
            if not segment.isdigit() or int(segment) >= len(value):
                return False, None
            value = value[int(segment)]
        else:
            return False, None
    return True, value


def resolve(params: Any, done: Mapping[str, CommandResult]) -> Any:
    """``params`` with references to already-finished commands replaced by their values.

    A value that is exactly one reference takes the referenced value as is (a list stays a list);
    references to unknown keys are left for Bitrix24 to resolve inside the request.
    """
    if isinstance(params, str):
        whole = _REF.fullmatch(params)
        if whole and whole.group(2) in done:
            ok, value = _section(done[whole.group(2)], whole.group(1), whole.group(3))
            return value if ok else params

        def one(m: re.Match[str]) -> str:
            if m.group(2) not in done:
                return m.group(0)
            ok, value = _section(done[m.group(2)], m.group(1), m.group(3))
            return str(value) if ok else m.group(0)

        return _REF.sub(one, params)
    if isinstance(params, Mapping):
        return {k: resolve(v, done) for k, v in params.items()}
    if isinstance(params, list | tuple):
        return [resolve(v, done) for v in params]
    return params


def _section(result: CommandResult, section: str, path: str) -> tuple[bool, Any]:
    if not result.ok:
        return False, None
    base = {"result": result.result, "result_total": result.total, "result_next": result.next}[section]
    return _lookup(base, path)


@dataclass
class CommandResult:
    """One sub-call's outcome: ``result`` when ``ok``, else ``error`` (never both)."""

    key: str
    method: str
    ok: bool
    result: Any = None
    error: Bitrix24ApiError | None = None
    total: int | None = None
    next: int | None = None
    time: dict[str, Any] = field(default_factory=dict)
    ran: bool = True  # False when halted (or never sent) before this command ran

    def unwrap(self) -> Any:
        """The result, or raise the command's own error."""
        if self.error is not None:
            raise self.error
        if not self.ok:
            raise Bitrix24ApiError("NOT_RUN", f"{self.method} did not run (batch halted)", method=self.method)
        return self.result


class BatchResult(dict[str, CommandResult]):
    """Results by command key, in the order the commands were given."""

    @property
    def errors(self) -> dict[str, Bitrix24ApiError]:
        return {k: r.error for k, r in self.items() if r.error is not None}

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.values())


def _section_of(envelope: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    # PHP serialises empty sections as [] and list-style cmds as lists: accept every shape.
    value = envelope.get(name)
    if isinstance(value, Mapping):
        return value
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def parse_batch(envelope: Mapping[str, Any], commands: Sequence[tuple[str, str]]) -> list[CommandResult]:
    """Split one batch answer (``result`` of the batch call) into per-command results.

    ``commands`` is [(key, method)] in send order. A command absent from both ``result`` and
    ``result_error`` did not run (halt stopped the batch before it).
    """
    results = _section_of(envelope, "result")
    errors = _section_of(envelope, "result_error")
    totals = _section_of(envelope, "result_total")
    nexts = _section_of(envelope, "result_next")
    times = _section_of(envelope, "result_time")
    out = []
    for key, method in commands:
        time_info = times.get(key)
        time_info = time_info if isinstance(time_info, dict) else {}
        if key in errors:
            err = errors[key]
            payload = err if isinstance(err, dict) else {"error": "", "error_description": str(err)}
            # The batch's own status (200) says nothing about a sub-call; method-level errors
            # without a code are the 400s of a direct call ("Not found"...).
            sub_status = 400 if not payload.get("error") else None
            exc = error_from_payload(payload, status=sub_status, method=method)
            out.append(CommandResult(key, method, ok=False, error=exc, time=time_info))
        elif key in results:
            total = totals.get(key)
            nxt = nexts.get(key)
            out.append(
                CommandResult(
                    key,
                    method,
                    ok=True,
                    result=results[key],
                    total=int(total) if total is not None else None,
                    next=int(nxt) if nxt is not None else None,
                    time=time_info,
                )
            )
        else:
            out.append(CommandResult(key, method, ok=False, ran=False, time=time_info))
    return out


def normalise_commands(
    commands: Mapping[str, tuple[str, Mapping[str, Any] | None]]
    | Iterable[tuple[str, Mapping[str, Any] | None]],
) -> list[tuple[str, str, dict[str, Any]]]:
    """[(key, method, params)] from a mapping key → (method, params) or a sequence (keys "0", "1"...)."""
    if isinstance(commands, Mapping):
        items = [(str(k), m, dict(p or {})) for k, (m, p) in commands.items()]
    else:
        items = [(str(i), m, dict(p or {})) for i, (m, p) in enumerate(commands)]
    keys = [k for k, _, _ in items]
    if len(set(keys)) != len(keys):
        raise ValueError("batch command keys must be unique")
    return items
