"""Log lines that keep their context, and routine work kept out of the way.

* :class:`KeyValueFormatter`: the one formatter, in two modes (``LOG_FORMAT``). ``plain``: the
  plain format, then every ``extra=`` field as ``key=value`` (``portal.refresh_unanswered
  member_id=…``). ``json``: one JSON object per line with the same fields, for a log shipper.
  Both add the scope's ``request_id`` (the web request's, or the Celery task's id) and the
  ``member_id`` the work is about, when known (:func:`log_scope`, :func:`bind`). The value of a key
  that holds a secret (tokens, client secret, auth blocks, passwords) is never printed, at any depth;
  nor is a secret inside the text (``refresh_token=…`` in a URL, a webhook's path): :func:`redacted`.
* :class:`RoutineAtDebug`: routine records (static files served, the periodic tasks' bookkeeping
  every few seconds) are DEBUG records, whatever level their logger gave them: they show only with
  LOG_LEVEL=DEBUG.

Configured by LOGGING in bitrix_app/settings.py. No Django imports: the web server's workers load
this while Django sets up logging.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
# A key naming one of these (in any case) holds a secret: its value is replaced by HIDDEN.
SECRET_MARKERS = ("token", "secret", "password", "passwd", "auth", "credential", "cookie", "signature")
HIDDEN = "[hidden]"


# Secrets inside a message's text, where no key names them: a query string's or form's
# ``refresh_token=…`` (urllib3's DEBUG line of an OAuth refresh prints its whole URL) and an inbound
# webhook's path (``/rest/1/<secret>/method``, REST 3.0's ``/rest/api/1/<secret>/``).
_SECRET_PAIR = re.compile(r"(?i)([\w\[\]]*(?:" + "|".join(SECRET_MARKERS) + r")[\w\[\]]*)=([^&\s\"',;]+)")
_WEBHOOK_PATH = re.compile(r"(/rest/(?:api/)?\d+/)[^/\s?\"']+")


def redacted(text: str) -> str:
    """``text`` with the values of secret-named ``key=value`` pairs and webhook secrets hidden."""
    if "=" in text:
        text = _SECRET_PAIR.sub(
            lambda m: f"{m.group(1)}={HIDDEN}" if m.group(2) != HIDDEN else m.group(0), text
        )
    if "/rest/" in text:
        text = _WEBHOOK_PATH.sub(rf"\g<1>{HIDDEN}", text)
    return text


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(marker in lowered for marker in SECRET_MARKERS)


def masked(value: Any) -> Any:
    """``value`` with the values of secret keys replaced, in nested mappings and lists too."""
    if isinstance(value, Mapping):
        return {k: HIDDEN if is_secret_key(str(k)) else masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    return value


def _text(value: Any) -> str:
    """One token of a ``key=value`` pair: bare when it reads unambiguously, JSON-quoted otherwise."""
    if isinstance(value, str):
        if value and not any(c.isspace() or c in '"=' for c in value):
            return value
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    return str(value)


# The scope's fields (request_id, member_id): set per web request (bitrix_app.probes) and per
# Celery task (bitrix_app.celery); a context variable, so threads and tasks never see each other's.
_scope: ContextVar[dict[str, str] | None] = ContextVar("log_scope", default=None)
SCOPE_FIELDS = ("request_id", "member_id")


def scope_enter(**fields: str) -> Token[dict[str, str] | None]:
    """Open a scope whose records carry ``fields``; close it with :func:`scope_exit` and the token."""
    return _scope.set({k: v for k, v in fields.items() if v})


def scope_exit(token: Token[dict[str, str] | None]) -> None:
    _scope.reset(token)


@contextlib.contextmanager
def log_scope(**fields: str) -> Iterator[dict[str, str]]:
    """Every record logged inside carries ``fields`` (and what :func:`bind` adds to the scope)."""
    token = scope_enter(**fields)
    try:
        yield _scope.get() or {}
    finally:
        scope_exit(token)


def bind(**fields: str) -> None:
    """Add ``fields`` to the current scope (e.g. the member_id once a request names its portal).

    Outside a scope (a management command, a test) it does nothing: a binding with no end would
    label every later line of the thread.
    """
    current = _scope.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v})


def scope_fields() -> dict[str, str]:
    return dict(_scope.get() or {})


class KeyValueFormatter(logging.Formatter):
    """The one formatter: ``mode="plain"`` (``key=value`` pairs) or ``mode="json"`` (JSON lines).

    Plain: the format, then each ``extra=`` field as `` key=value`` in the order given, then the
    scope's fields not given as extras. JSON: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, the scope's fields, every extra, and ``exc_info`` / ``stack_info`` as text.
    Secret keys print as ``[hidden]``. An extra that is the message's own arguments (Celery passes
    its context both ways) is not repeated.
    """

    MODES = ("plain", "json")

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, *, mode: str = "plain") -> None:
        if mode not in self.MODES:
            raise ValueError(f"LOG_FORMAT must be one of {', '.join(self.MODES)}, not {mode!r}")
        super().__init__(fmt, datefmt)
        self.mode = mode

    def _fields(self, record: logging.LogRecord) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for key, value in vars(record).items():
            if key in _RECORD_ATTRIBUTES or key.startswith("_") or value is record.args:
                continue
            fields[key] = HIDDEN if is_secret_key(key) else masked(value)
        for key, value in scope_fields().items():
            fields.setdefault(key, value)
        return fields

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - the logging API
        line = super().formatMessage(record)
        pairs = [f"{key}={_text(value)}" for key, value in self._fields(record).items()]
        return f"{line} {' '.join(pairs)}" if pairs else line

    def format(self, record: logging.LogRecord) -> str:
        if self.mode == "plain":
            return redacted(super().format(record))
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redacted(record.getMessage()),
        }
        for key, value in self._fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc_info"] = redacted("".join(traceback.format_exception(*record.exc_info)).rstrip())
        elif record.exc_text:
            entry["exc_info"] = redacted(record.exc_text)
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class RoutineAtDebug(logging.Filter):
    """Re-level routine records to DEBUG, and drop them unless ``level`` lets DEBUG through.

    Routine: the access log's requests for static files (``static_url``) and the favicon, and the
    Celery bookkeeping lines ("task succeeded", "sending due task") of the periodic ``tasks``, which
    would otherwise print every few seconds. Their own log lines (what a sweep found) keep their level.
    """

    def __init__(self, level: str = "INFO", static_url: str = "/static/", tasks: Iterable[str] = ()) -> None:
        super().__init__()
        self.show = logging.getLevelName(str(level).upper()) == logging.DEBUG
        self.static_url = "/" + static_url.strip("/") + "/"
        self.tasks = frozenset(tasks)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not self._routine(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return self.show

    def _routine(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "granian.access" and isinstance(args, Mapping):
            path = str(args.get("path", ""))
            return path.startswith(self.static_url) or path == "/favicon.ico"
        if record.name == "celery.app.trace" and isinstance(args, Mapping):
            return args.get("name") in self.tasks and record.levelno <= logging.INFO
        if record.name == "celery.beat" and isinstance(args, tuple) and len(args) == 2:
            return args[1] in self.tasks  # "Scheduler: Sending due task %s (%s)"
        return False
