"""Per-portal rollups, kept in the database as figures arrive.

Every figure the client, the receiver, the drainer and the refresh record through
``portals.bitrix.metrics`` reaches :meth:`Rollups.observe` with the portal's member_id. A process
adds them up in memory per portal and minute, and one background thread writes them every
BITRIX24_CONSOLE_FLUSH_SECONDS as a few multi-row upserts (``count = count + new``): the
receiver's and the drainer's hot paths never wait for the database, and a thousand events a
second cost one statement per table every few seconds rather than a write each.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from portals.conf import app_settings
from portals.models import Portal

from .models import PortalHealth, PortalRollup, Resolution, TotalRollup

logger = logging.getLogger(__name__)

SUMMED = (
    "events_accepted",
    "events_duplicate",
    "events_refused",
    "events_done",
    "events_retried",
    "events_failed",
    "events_ignored",
    "dispatch_lag_sum",
    "rest_calls",
    "rest_errors",
    "rest_limited_503",
    "rest_limited_429",
    "limiter_wait_seconds",
    "operating_seconds",
    "refreshes",
    "refresh_failures",
)
MAXED = ("dispatch_lag_max",)
COLUMNS = SUMMED + MAXED
MINUTE_KEEP = timedelta(hours=2)
RECENT_ERRORS = 10  # call errors kept per portal for its page

_RECEIVED = {"accepted": "events_accepted", "duplicate": "events_duplicate"}
_DISPATCHED = {
    "done": "events_done",
    "retry": "events_retried",
    "failed": "events_failed",
    "ignored": "events_ignored",
}


def _minute(moment: float) -> int:
    return int(moment // 60) * 60


class Rollups:
    """One process's figures not yet written: (member_id or "", minute) → column → value.

    ``clock``: wall time in seconds. Thread-safe; :meth:`flush` writes and empties.
    """

    def __init__(self, *, clock: Any = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._health: dict[str, dict[str, Any]] = defaultdict(dict)
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- gathering (the hot path: a lock and a few dict updates) ----------------------------------

    def observe(self, kind: str, portal: str | None, fields: dict[str, float], detail: str) -> None:
        """The ``portals.bitrix.metrics`` observer."""
        now = self.clock()
        key = (portal or "", _minute(now))
        with self._lock:
            counts = self._counts[key]
            if kind == "rest":
                self._rest(counts, portal, fields, detail, now)
            elif kind == "received":
                column = _RECEIVED.get(detail)
                if column:
                    counts[column] += 1
            elif kind == "refused":
                counts["events_refused"] += 1
            elif kind == "dispatched":
                column = _DISPATCHED.get(detail)
                if column:
                    counts[column] += 1
                lag = fields.get("lag", 0.0)
                counts["dispatch_lag_sum"] += lag
                counts["dispatch_lag_max"] = max(counts["dispatch_lag_max"], lag)
            elif kind == "refresh":
                if detail == "refreshed":
                    counts["refreshes"] += 1
                else:
                    counts["refresh_failures"] += 1
                    if portal:
                        self._health[portal].update(refresh_failed_at=now, refresh_error=detail[:100])
        self._ensure_thread()

    def _rest(
        self, counts: dict[str, float], portal: str | None, fields: dict[str, float], detail: str, now: float
    ) -> None:
        for name, value in fields.items():
            if name == "calls":
                counts["rest_calls"] += value
            elif name == "limiter_wait_seconds":
                counts["limiter_wait_seconds"] += value
            elif name.startswith("operating_seconds:"):
                counts["operating_seconds"] += value
            elif name.startswith("errors:"):
                counts["rest_errors"] += value
            elif name == "limited:503":
                counts["rest_limited_503"] += value
            elif name == "limited:429":
                counts["rest_limited_429"] += value
        if portal and "calls" in fields:
            self._health[portal]["last_call_at"] = now
        if portal and detail:
            health = self._health[portal]
            health.update(last_error=detail[:200], last_error_at=now)
            errors = health.setdefault("errors", [])
            errors.append([now, detail[:200]])
            del errors[:-RECENT_ERRORS]

    # -- writing ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what was gathered (on this thread's connection, in one transaction of its own).

        Raises the database's error; the figures of a failed write are dropped: they are
        observability, and keeping them would let a database outage grow the process's memory
        without bound.
        """
        with self._flush_lock:
            with self._lock:
                counts, self._counts = self._counts, defaultdict(lambda: defaultdict(float))
                health, self._health = self._health, defaultdict(dict)
            if counts or health:
                rollups_write(counts=counts, health=health)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        interval = app_settings.console_flush_seconds
        if interval <= 0:
            return  # flushed by whoever calls flush() (tests, the benchmark) and at exit
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=self._run, args=(interval,), name="console-rollups", daemon=True
            )
            self._thread.start()

    def _run(self, interval: float) -> None:
        while True:
            time.sleep(interval)
            try:
                self.flush()
            except DatabaseError:
                logger.warning("console.rollups.write_failed", exc_info=True)
            finally:
                # Between flushes this thread holds no connection (nor blocks a test database's removal).
                connections.close_all()


rollups = Rollups()


@atexit.register
def _flush_at_exit() -> None:
    # Silent: at exit the log's streams may be closed already, and a few seconds of figures are not
    # worth a traceback.
    with contextlib.suppress(Exception):
        rollups.flush()


def _as_datetime(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, tz=UTC)


def _portal_ids(member_ids: Iterable[str]) -> dict[str, int]:
    wanted = [m for m in set(member_ids) if m]
    if not wanted:
        return {}
    return dict(Portal.objects.filter(member_id__in=wanted).values_list("member_id", "id"))


def rollups_write(
    *, counts: dict[tuple[str, int], dict[str, float]], health: dict[str, dict[str, Any]]
) -> None:
    """Add ``counts`` to the minute and hour rollups of their portals and of the total; record health.

    Figures of a member_id no portal has (a webhook's host, a portal deleted since) count in the
    total only.
    """
    ids = _portal_ids([member for member, _ in counts] + list(health))
    per_portal: dict[tuple[int, str, int], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    total: dict[tuple[str, int], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (member, minute), values in counts.items():
        hour = minute - minute % 3600
        targets = [total[(Resolution.MINUTE, minute)], total[(Resolution.HOUR, hour)]]
        if member in ids:
            pid = ids[member]
            targets += [
                per_portal[(pid, Resolution.MINUTE, minute)],
                per_portal[(pid, Resolution.HOUR, hour)],
            ]
        for target in targets:
            for column, value in values.items():
                if column in MAXED:
                    target[column] = max(target[column], value)
                else:
                    target[column] += value
    with transaction.atomic():
        _upsert(PortalRollup._meta.db_table, ("portal_id", "resolution", "start"), per_portal)
        _upsert(TotalRollup._meta.db_table, ("resolution", "start"), total)
        _health_write({ids[m]: values for m, values in health.items() if m in ids})


def _upsert(table: str, key: tuple[str, ...], rows: dict[tuple[Any, ...], dict[str, float]]) -> None:
    """``INSERT … ON CONFLICT (key) DO UPDATE SET c = c + excluded.c``: the same SQL for PostgreSQL
    and SQLite (single-process mode)."""
    if not rows:
        return
    q = connection.ops.quote_name
    columns = (*key, *COLUMNS)
    t = q(table)
    updates = [f"{q(c)} = {t}.{q(c)} + excluded.{q(c)}" for c in SUMMED] + [
        f"{q(c)} = CASE WHEN excluded.{q(c)} > {t}.{q(c)} THEN excluded.{q(c)} ELSE {t}.{q(c)} END"
        for c in MAXED
    ]
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    params: list[Any] = []
    for key_values, values in sorted(rows.items()):
        *head, start = key_values
        params += [*head, connection.ops.adapt_datetimefield_value(_as_datetime(start))]
        params += [values.get(c, 0) for c in COLUMNS]
    # Names are the models' own table and column names (quoted); every value is a parameter.
    sql = (
        f"INSERT INTO {q(table)} ({', '.join(q(c) for c in columns)}) VALUES "  # noqa: S608
        f"{', '.join([row_sql] * len(rows))} "
        f"ON CONFLICT ({', '.join(q(c) for c in key)}) DO UPDATE SET {', '.join(updates)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


_HEALTH_GROUPS = (
    ("last_call_at",),
    ("refresh_failed_at", "refresh_error"),
)


def _health_write(health: dict[int, dict[str, Any]]) -> None:
    """One upsert per group of fields, so a portal's row keeps the fields this flush didn't see."""
    _errors_write({pid: values for pid, values in health.items() if "errors" in values})
    for group in _HEALTH_GROUPS:
        rows = []
        for pid, values in sorted(health.items()):
            if group[0] not in values:
                continue
            fields = {
                name: _as_datetime(values[name]) if name.endswith("_at") else values[name] for name in group
            }
            rows.append(PortalHealth(portal_id=pid, **fields))
        if rows:
            PortalHealth.objects.bulk_create(
                rows, update_conflicts=True, unique_fields=["portal"], update_fields=list(group)
            )


def _errors_write(health: dict[int, dict[str, Any]]) -> None:
    """The latest call errors, newest last, merged with those already stored.

    Read, merged and written under row locks: two processes flushing at once keep both lists.
    """
    if not health:
        return
    PortalHealth.objects.bulk_create(
        [PortalHealth(portal_id=pid) for pid in sorted(health)], ignore_conflicts=True
    )
    rows = list(PortalHealth.objects.select_for_update().filter(portal_id__in=health).order_by("pk"))
    for row in rows:
        values = health[row.portal_id]
        row.recent_errors = [*row.recent_errors, *values["errors"]][-RECENT_ERRORS:]
        row.last_error = values["last_error"]
        row.last_error_at = _as_datetime(values["last_error_at"])
    PortalHealth.objects.bulk_update(rows, ["recent_errors", "last_error", "last_error_at"])


def portal_binding_record(*, portal_id: int, error: str) -> None:
    """The app's event bindings on a portal failed (``error``), or succeeded (``""``)."""
    failed_at = timezone.now() if error else None
    PortalHealth.objects.bulk_create(
        [PortalHealth(portal_id=portal_id, binding_failed_at=failed_at, binding_error=error[:200])],
        update_conflicts=True,
        unique_fields=["portal"],
        update_fields=["binding_failed_at", "binding_error"],
    )


def rollups_prune(*, now: datetime | None = None) -> int:
    """Delete minute rollups older than two hours and hour rollups older than the retention."""
    now = now or timezone.now()
    hours = now - timedelta(days=app_settings.console_rollup_days)
    deleted = 0
    for model in (PortalRollup, TotalRollup):
        deleted += model.objects.filter(resolution=Resolution.MINUTE, start__lt=now - MINUTE_KEEP).delete()[0]
        deleted += model.objects.filter(resolution=Resolution.HOUR, start__lt=hours).delete()[0]
    return deleted
