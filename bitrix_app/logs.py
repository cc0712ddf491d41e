"""Plain log lines that keep their context, and routine work kept out of the way.

* :class:`KeyValueFormatter`: the plain format, then every ``extra=`` field as ``key=value``
  (``portal.refresh_unanswered member_id=…``). The value of a key that holds a secret (tokens,
  client secret, auth blocks, passwords) is never printed, at any depth.
* :class:`RoutineAtDebug`: routine records (static files served, the periodic tasks' bookkeeping
  every few seconds) are DEBUG records, whatever level their logger gave them: they show only with
  LOG_LEVEL=DEBUG.

Configured by LOGGING in bitrix_app/settings.py. No Django imports: the web server's workers load
this while Django sets up logging.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
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


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(marker in lowered for marker in SECRET_MARKERS)


def _masked(value: Any) -> Any:
    """``value`` with the values of secret keys replaced, in nested mappings and lists too."""
    if isinstance(value, Mapping):
        return {k: HIDDEN if is_secret_key(str(k)) else _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
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


class KeyValueFormatter(logging.Formatter):
    """``logging.Formatter`` that appends each ``extra=`` field as `` key=value``, in the order given.

    Secret keys print as ``key=[hidden]``. An extra that is the message's own arguments (Celery
    passes its context both ways) is not repeated.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - the logging API
        line = super().formatMessage(record)
        pairs = []
        for key, value in vars(record).items():
            if key in _RECORD_ATTRIBUTES or key.startswith("_") or value is record.args:
                continue
            shown = HIDDEN if is_secret_key(key) else _text(_masked(value))
            pairs.append(f"{key}={shown}")
        return f"{line} {' '.join(pairs)}" if pairs else line


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
