"""What the console's pages show, read from the rollups, the portal rows and Redis.

No page counts rows of the events table beyond a bounded list: figures over time come from the
rollups (console/rollups.py), the outbox's depth from its small partial index, a portal's latest
events from the (portal, -id) index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Case, Count, F, IntegerField, Min, Q, QuerySet, Sum, Value, When
from django.utils.translation import gettext_lazy as _

from events.models import Event
from portals.bitrix.limiter import BucketParams, LocalLimiter, RedisLimiter, plan_params
from portals.bitrix.operating import Entry
from portals.conf import app_settings
from portals.models import Portal
from portals.services.shared_client import client_parts
from portals.services.sweep import portals_sweep_plan

from .charts import Series, line_chart
from .models import PortalHealth, PortalRollup, Resolution, TotalRollup
from .rollups import COLUMNS, MAXED

RECENT_EVENTS = 20
NEEDS_ACTION_SHOWN = 25


@dataclass(frozen=True)
class Period:
    name: str
    label: Any
    span: timedelta
    resolution: str
    step: timedelta
    time_format: str


PERIODS = {
    "hour": Period(
        "hour",
        _("last hour, per minute"),
        timedelta(hours=1),
        Resolution.MINUTE,
        timedelta(minutes=1),
        "%H:%M",
    ),
    "day": Period(
        "day", _("last day, per hour"), timedelta(days=1), Resolution.HOUR, timedelta(hours=1), "%H:%M"
    ),
    "week": Period(
        "week", _("last week, per hour"), timedelta(days=7), Resolution.HOUR, timedelta(hours=1), "%d.%m"
    ),
}

# Worst first: what an operator must act on.
ATTENTION = {
    "reauth": _("needs re-authorisation"),
    "payment": _("payment required"),
    "binding": _("binding failed"),
    "refresh": _("refresh failing"),
}


def _floor(moment: datetime, step: timedelta) -> datetime:
    seconds = int(step.total_seconds())
    return datetime.fromtimestamp(int(moment.timestamp()) // seconds * seconds, tz=moment.tzinfo)


@dataclass
class Timeline:
    buckets: list[datetime]
    columns: dict[str, list[float]]

    def total(self, column: str) -> float:
        values = self.columns[column]
        return max(values, default=0.0) if column in MAXED else sum(values)


def timeline(rows: QuerySet[Any], *, period: Period, now: datetime) -> Timeline:
    """The period's buckets (oldest first, the current one last) and each column's values."""
    last = _floor(now, period.step)
    count = int(period.span / period.step)
    buckets = [last - period.step * (count - 1 - i) for i in range(count)]
    index = {bucket: i for i, bucket in enumerate(buckets)}
    columns = {column: [0.0] * count for column in COLUMNS}
    found = rows.filter(resolution=period.resolution, start__gte=buckets[0]).values("start", *COLUMNS)
    for row in found:
        i = index.get(row["start"])
        if i is None:
            continue
        for column in COLUMNS:
            columns[column][i] += row[column]
    return Timeline(buckets=buckets, columns=columns)


def charts(line: Timeline, period: Period) -> dict[str, Any]:
    def chart(title: Any, pairs: list[tuple[Any, str]]) -> Any:
        return line_chart(
            title=str(title),
            buckets=line.buckets,
            series=[Series(str(label), line.columns[column]) for label, column in pairs],
            time_format=period.time_format,
        )

    return {
        "events": chart(
            _("Events"),
            [
                (_("accepted"), "events_accepted"),
                (_("refused"), "events_refused"),
                (_("dispatched"), "events_done"),
                (_("failed"), "events_failed"),
            ],
        ),
        "rest": chart(
            _("REST calls"),
            [
                (_("calls"), "rest_calls"),
                (_("errors"), "rest_errors"),
                ("503", "rest_limited_503"),
                ("429", "rest_limited_429"),
            ],
        ),
        "waits": chart(
            _("Seconds"),
            [(_("limiter waits"), "limiter_wait_seconds"), (_("operating"), "operating_seconds")],
        ),
        "refreshes": chart(_("Refreshes"), [(_("made"), "refreshes"), (_("failed"), "refresh_failures")]),
    }


def _attention_q(kind: str) -> Q:
    active = Q(state=Portal.State.ACTIVE)
    return {
        "reauth": Q(state=Portal.State.REAUTH_REQUIRED),
        "payment": Q(state=Portal.State.PAYMENT_REQUIRED),
        "binding": active & Q(health__binding_failed_at__isnull=False),
        "refresh": active
        & Q(health__refresh_failed_at__isnull=False)
        & (Q(last_refreshed_at__isnull=True) | Q(health__refresh_failed_at__gt=F("last_refreshed_at"))),
    }[kind]


def portals_needing_action(kind: str | None = None) -> QuerySet[Portal]:
    """Portals needing an operator or their administrator (one kind, or all), worst first."""
    if kind is not None:
        return Portal.objects.filter(_attention_q(kind))
    wanted = Q()
    for name in ATTENTION:
        wanted |= _attention_q(name)
    return Portal.objects.filter(wanted)


def attention_priority() -> Case:
    """0 for needs re-authorisation … 3 for refresh failing, 4 for the rest (an ordering key)."""
    return Case(
        *[When(_attention_q(kind), then=Value(i)) for i, kind in enumerate(ATTENTION)],
        default=Value(len(ATTENTION)),
        output_field=IntegerField(),
    )


def outbox(*, now: datetime) -> dict[str, Any]:
    """The outbox's depth and how long its oldest due event has waited (the dispatch lag now)."""
    pending = Event.objects.pending()
    depth = pending.count()
    oldest = pending.filter(available_at__lte=now).aggregate(oldest=Min("ts"))["oldest"]
    return {"depth": depth, "lag": max((now - oldest).total_seconds(), 0.0) if oldest else 0.0}


def dashboard(*, period: Period, now: datetime) -> dict[str, Any]:
    states = dict(Portal.objects.order_by().values_list("state").annotate(n=Count("id")))
    line = timeline(TotalRollup.objects.all(), period=period, now=now)
    minute = timeline(TotalRollup.objects.all(), period=PERIODS["hour"], now=now)
    # The last whole minute (the current one is still filling).
    last_minute = {column: values[-2] for column, values in minute.columns.items()}
    dispatched = sum(
        line.total(c) for c in ("events_done", "events_retried", "events_failed", "events_ignored")
    )
    plan = portals_sweep_plan(now=now)
    attention = [
        {"kind": kind, "label": label, "count": portals_needing_action(kind).count()}
        for kind, label in ATTENTION.items()
    ]
    needing = list(
        portals_needing_action()
        .select_related("health")
        .annotate(priority=attention_priority())
        .order_by("priority", "domain")[:NEEDS_ACTION_SHOWN]
    )
    return {
        "period": period,
        "periods": PERIODS,
        "states": [
            {"state": value, "label": label, "count": states.get(value, 0)}
            for value, label in Portal.State.choices
        ],
        "portal_total": sum(states.values()),
        "attention": attention,
        "needing": needing,
        "last_minute": last_minute,
        "totals": {column: line.total(column) for column in COLUMNS},
        "lag_mean": line.total("dispatch_lag_sum") / dispatched if dispatched else 0.0,
        "outbox": outbox(now=now),
        "refreshes_due": len(plan.warm) + len(plan.keepalive),
        "charts": charts(line, period),
    }


@dataclass
class PortalFigures:
    """One portal's row in the list: from the rollups (24 h), the outbox and Redis."""

    failed_24h: int = 0
    calls_24h: int = 0
    errors_24h: int = 0
    pending: int = 0
    bucket_level: float | None = None
    bucket_capacity: float = 0.0
    operating: list[tuple[str, float]] = field(default_factory=list)
    health: PortalHealth | None = None


def _bucket(portal: Portal) -> BucketParams:
    return plan_params(portal.plan or app_settings.default_plan)


def portal_figures(portals: list[Portal], *, now: datetime) -> dict[int, PortalFigures]:
    """Figures for a page of portals: a handful of queries and Redis reads per page, not per row."""
    ids = [p.pk for p in portals]
    figures = {pk: PortalFigures() for pk in ids}
    day = (
        PortalRollup.objects.filter(
            portal_id__in=ids, resolution=Resolution.HOUR, start__gte=now - timedelta(hours=24)
        )
        .order_by()
        .values("portal_id")
        .annotate(failed=Sum("events_failed"), calls=Sum("rest_calls"), errors=Sum("rest_errors"))
    )
    for row in day:
        one = figures[row["portal_id"]]
        one.failed_24h, one.calls_24h, one.errors_24h = row["failed"], row["calls"], row["errors"]
    pending = (
        Event.objects.pending()
        .filter(portal_id__in=ids)
        .order_by()
        .values("portal_id")
        .annotate(n=Count("id"))
    )
    for row in pending:
        figures[row["portal_id"]].pending = row["n"]
    for health in PortalHealth.objects.filter(portal_id__in=ids):
        figures[health.portal_id].health = health
    parts = client_parts()
    buckets = [(portal.member_id, _bucket(portal)) for portal in portals]
    limiter = parts.limiter
    try:
        # The shared client's limiter is one of these two; only they read a page of buckets at once.
        levels: list[float | None] = (
            list(limiter.levels(buckets))
            if isinstance(limiter, RedisLimiter | LocalLimiter)
            else [None] * len(portals)
        )
        ledgers = parts.ledger.entries([portal.member_id for portal in portals], "app")
    except Exception:  # noqa: BLE001 - Redis down: the list still shows what the database knows
        levels, ledgers = [None] * len(portals), [{} for _ in portals]
    for portal, (_key, params), level, entries in zip(portals, buckets, levels, ledgers, strict=True):
        one = figures[portal.pk]
        one.bucket_capacity, one.bucket_level = params.capacity, level
        one.operating = operating_by_method(entries, now=now.timestamp())
    return figures


def operating_by_method(entries: dict[str, Entry], *, now: float, top: int = 3) -> list[tuple[str, float]]:
    """Operating seconds in the current 10-minute window by method, most first (ledger entries)."""
    current = [(method, e.operating) for method, e in entries.items() if e.reset_at > now and e.operating]
    return sorted(current, key=lambda item: (-item[1], item[0]))[:top]


def portal_records(portal: Portal, limit: int = 20) -> list[LogEntry]:
    """The operator records of ``portal``: who did what, when, with what result."""
    content_type = ContentType.objects.get_for_model(Portal)
    return list(
        LogEntry.objects.filter(content_type=content_type, object_id=str(portal.pk))
        .select_related("user")
        .order_by("-action_time")[:limit]
    )


def token_health(portal: Portal, *, now: datetime, health: PortalHealth | None) -> dict[str, Any]:
    """Everything about the portal's tokens except the tokens."""
    issued = portal.refresh_token_issued_at
    keepalive = issued + timedelta(days=app_settings.dormant_refresh_days) if issued else None
    failing = bool(
        health
        and health.refresh_failed_at
        and (portal.last_refreshed_at is None or health.refresh_failed_at > portal.last_refreshed_at)
    )
    return {
        "has_access_token": bool(portal.access_token),
        "has_refresh_token": bool(portal.refresh_token),
        "has_application_token": bool(portal.application_token),
        "expires_at": portal.expires_at,
        "expired": bool(portal.expires_at and portal.expires_at <= now),
        "refresh_token_issued_at": issued,
        "refresh_token_age_days": (now - issued).total_seconds() / 86400 if issued else None,
        "keepalive_at": keepalive,
        "last_refreshed_at": portal.last_refreshed_at,
        "refresh_failing": failing,
        "refresh_error": health.refresh_error if failing and health else "",
        "owner_user_id": portal.user_id,
        "scope": portal.scope,
    }


def recent_events(portal: Portal, *, failed_only: bool = False) -> list[Event]:
    """The portal's latest events (or failed ones), newest first.

    Ids first, then the rows: asking for ids alone lets PostgreSQL answer from the (portal, -id)
    index without touching the table, where for whole rows it may walk the primary key backwards
    past every other portal's events (it assumes a portal's events are spread evenly by id).
    """
    rows = Event.objects.filter(portal=portal)
    if failed_only:
        rows = rows.failed()
    ids = list(rows.order_by("-id").values_list("id", flat=True)[:RECENT_EVENTS])
    return list(Event.objects.filter(pk__in=ids).order_by("-id"))


def portal_page(portal: Portal, *, period: Period, now: datetime) -> dict[str, Any]:
    figures = portal_figures([portal], now=now)[portal.pk]
    line = timeline(PortalRollup.objects.filter(portal=portal), period=period, now=now)
    errors = [
        {"at": datetime.fromtimestamp(at, tz=now.tzinfo), "error": text}
        for at, text in reversed((figures.health.recent_errors if figures.health else [])[-10:])
    ]
    return {
        "figures": figures,
        "tokens": token_health(portal, now=now, health=figures.health),
        "events": recent_events(portal),
        "failed_events": recent_events(portal, failed_only=True),
        "call_errors": errors,
        "charts": charts(line, period),
        "period": period,
        "periods": PERIODS,
        "records": portal_records(portal),
        "totals": {column: line.total(column) for column in COLUMNS},
    }
