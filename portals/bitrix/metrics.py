"""Per-call metrics per portal: calls, errors by code, limiter wait, operating seconds, latency.

Always kept in process (``snapshot()``); with Redis also summed into one hash per portal so the
admin and a /metrics endpoint can read totals across every process (``redis_snapshot()``).
Increments reach Redis in one pipeline at most every ``flush_interval`` seconds (and on
``flush()``, ``redis_snapshot()`` and process exit) rather than one round trip per call: per-call
writes cost about as much client CPU as the call's own HTTP work, and totals a second old are
what a dashboard needs.

Prometheus gets the totals too, without a label per portal: the module's ``bitrix24_*`` counters
and histograms (prometheus-client; with ``PROMETHEUS_MULTIPROC_DIR`` set, every web and worker
process writes its own files there and :func:`exposition` sums them). Label values come from small
fixed sets, or are capped per process (:class:`BoundedLabel`): a method name or an error code a
portal made up can't grow the series without end. Gauges that are read at scrape time (the outbox
depth) are registered by the app that owns the data with :func:`register_gauge`.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
OTHER = "other"


class BoundedLabel:
    """A label's values as they come, up to ``limit`` distinct ones per process; then ``"other"``.

    Values are lower- or upper-cased and must match ``pattern`` (else ``"other"`` too), so only
    names that look like what they are reach Prometheus.
    """

    def __init__(self, limit: int, pattern: str, *, upper: bool = False) -> None:
        self.limit = limit
        self.pattern = re.compile(pattern)
        self.upper = upper
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        value = value.upper() if self.upper else value.lower()
        if value in self._seen:
            return value
        if not self.pattern.fullmatch(value):
            return OTHER
        with self._lock:
            if len(self._seen) >= self.limit:
                return OTHER
            self._seen.add(value)
        return value


# Bitrix24's REST methods number in the hundreds; an app calls a few dozen.
_method_label = BoundedLabel(200, r"[a-z][a-z0-9_.]{0,79}")
# Error codes come from the portal's answer: capped harder.
_code_label = BoundedLabel(40, r"[A-Z][A-Z0-9_]{0,63}", upper=True)

REST_CALLS = Counter(
    "bitrix24_rest_calls_total",
    "Answered REST requests by method and outcome (ok, or the error code).",
    ["method", "outcome"],
)
REST_LIMITED = Counter(
    "bitrix24_rest_limited_total",
    "REST requests Bitrix24 refused for its limits, by HTTP status (503: request rate, 429: operating time).",
    ["status"],
)
REST_RETRIES = Counter("bitrix24_rest_retries_total", "REST requests sent again, by cause.", ["cause"])
REST_LATENCY = Histogram(
    "bitrix24_rest_latency_seconds",
    "Seconds from sending a REST request to its answer.",
    buckets=LATENCY_BUCKETS,
)
REST_LIMITER_WAIT = Counter(
    "bitrix24_rest_limiter_wait_seconds_total",
    "Seconds REST calls waited for the portal's leaky bucket and operating-time pacing.",
)
REST_OPERATING = Counter(
    "bitrix24_rest_operating_seconds_total",
    "Operating seconds Bitrix24 reported spending on REST methods.",
    ["method"],
)
TOKEN_REFRESHES = Counter(
    "bitrix24_token_refreshes_total",
    "Refresh grants by outcome (refreshed, unanswered, or the refusal's exception).",
    ["outcome"],
)
EVENTS_RECEIVED = Counter(
    "bitrix24_events_received_total",
    "Authentic events the receiver answered 200, by outcome (accepted, duplicate, unhandled, ignored).",
    ["outcome"],
)
EVENTS_REFUSED = Counter(
    "bitrix24_events_refused_total", "Events the receiver refused (4xx), by reason.", ["reason"]
)
EVENTS_DISPATCHED = Counter(
    "bitrix24_events_dispatched_total",
    "Dispatch attempts by outcome (done, retry, failed, ignored).",
    ["outcome"],
)
EVENTS_DISPATCH_LAG = Histogram(
    "bitrix24_events_dispatch_lag_seconds",
    "Seconds from an event's ts to its dispatch attempt.",
    buckets=LAG_BUCKETS,
)
_REFRESH_OUTCOMES = BoundedLabel(20, r"[a-z][a-z0-9_]{0,63}")
_EVENT_REASONS = BoundedLabel(20, r"[a-z][a-z0-9_]{0,63}")


@functools.lru_cache(maxsize=256)  # a few exception names, on every refused event: no regex each time
def _snake(name: str) -> str:
    """``InvalidApplicationToken`` → ``invalid_application_token`` (exception names as labels)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# Observers of every figure with the portal (member_id) it belongs to: the operator console keeps
# per-portal rollups in the database from them. Called as observer(kind, member_id or None, fields,
# detail) on the caller's thread, so an observer must be quick and must not raise.
Observer = Callable[[str, str | None, dict[str, float], str], None]
_observers: list[Observer] = []


def observe(observer: Observer) -> None:
    """Call ``observer`` with every figure recorded in this process from now on."""
    if observer not in _observers:
        _observers.append(observer)


def _notify(kind: str, portal: str | None, fields: dict[str, float], detail: str = "") -> None:
    for observer in _observers:
        try:
            observer(kind, portal, fields, detail)
        except Exception:  # noqa: BLE001 - a figure lost is better than a call failed for it
            logger.warning("bitrix.metrics.observer_failed", extra={"kind": kind}, exc_info=True)


def token_refresh(outcome: str, *, portal: str | None = None) -> None:
    """One refresh grant's outcome: "refreshed", "unanswered" or the refusal's exception class name."""
    TOKEN_REFRESHES.labels(_REFRESH_OUTCOMES(_snake(outcome))).inc()
    _notify("refresh", portal, {}, _snake(outcome))


def event_received(outcome: str, *, portal: str | None = None) -> None:
    """The receiver answered an authentic event 200 with ``outcome``."""
    EVENTS_RECEIVED.labels(_EVENT_REASONS(outcome)).inc()
    _notify("received", portal, {}, outcome)


def event_refused(reason: str, *, portal: str | None = None) -> None:
    """The receiver refused an event; ``reason`` is the exception class name."""
    EVENTS_REFUSED.labels(_EVENT_REASONS(_snake(reason))).inc()
    _notify("refused", portal, {}, _snake(reason))


def event_dispatched(outcome: str, *, lag: float, portal: str | None = None) -> None:
    """One event's dispatch attempt ended with ``outcome``, ``lag`` seconds after its ts."""
    EVENTS_DISPATCHED.labels(_EVENT_REASONS(outcome)).inc()
    EVENTS_DISPATCH_LAG.observe(max(lag, 0.0))
    _notify("dispatched", portal, {"lag": max(lag, 0.0)}, outcome)


# Gauges computed when Prometheus scrapes (name → (help, reader)): state that lives in the database.
_gauges: dict[str, tuple[str, Callable[[], float]]] = {}


def register_gauge(name: str, documentation: str, read: Callable[[], float]) -> None:
    """Serve ``read()`` as the gauge ``name`` at every scrape (a later registration replaces it)."""
    _gauges[name] = (documentation, read)


class _ScrapeGauges(Collector):
    def collect(self) -> Iterator[Metric]:
        for name, (documentation, read) in list(_gauges.items()):
            try:
                value = float(read())
            except Exception:  # noqa: BLE001 - one unreadable gauge must not cost the whole scrape
                logger.warning("bitrix.metrics.gauge_failed", extra={"gauge": name}, exc_info=True)
                continue
            yield GaugeMetricFamily(name, documentation, value=value)


def exposition() -> tuple[bytes, str]:
    """The metrics page and its content type: every process's totals, plus the scrape-time gauges.

    With ``PROMETHEUS_MULTIPROC_DIR`` the counters are summed over the files every process of the
    machine wrote there (web and worker alike); without it, this process's own.
    """
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
        page = b""
    else:
        page = generate_latest(REGISTRY)
    registry.register(_ScrapeGauges())
    return page + generate_latest(registry), CONTENT_TYPE_LATEST


class Metrics:
    def __init__(
        self,
        *,
        redis: Any = None,
        prefix: str = "",
        flush_interval: float = 1.0,
        clock: Any = time.monotonic,
    ):
        self.redis = redis
        self.prefix = prefix
        self.flush_interval = flush_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._data: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._pending: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._flushed_at = clock()
        if redis is not None:
            _live.add(self)

    def _key(self, bucket_key: str) -> str:
        return f"{self.prefix}b24:metrics:{bucket_key}"

    def _add(self, bucket_key: str, fields: dict[str, float], detail: str = "") -> None:
        _notify("rest", bucket_key, fields, detail)
        due = False
        with self._lock:
            data = self._data[bucket_key]
            for name, value in fields.items():
                data[name] += value
            if self.redis is not None:
                pending = self._pending[bucket_key]
                for name, value in fields.items():
                    pending[name] += value
                due = self.clock() - self._flushed_at >= self.flush_interval
        if due:
            self.flush()

    def flush(self) -> None:
        """Send the increments gathered since the last flush to Redis (one pipeline)."""
        if self.redis is None:
            return
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, defaultdict(lambda: defaultdict(float))
                self._flushed_at = self.clock()
            if not pending:
                return
            pipe = self.redis.pipeline(transaction=False)
            for bucket_key, fields in pending.items():
                for name, value in fields.items():
                    pipe.hincrbyfloat(self._key(bucket_key), name, value)
            try:
                pipe.execute()
            except Exception:
                # Redis unavailable: keep the increments for the next flush rather than lose them.
                with self._lock:
                    for bucket_key, fields in pending.items():
                        for name, value in fields.items():
                            self._pending[bucket_key][name] += value
                raise

    def call(
        self, bucket_key: str, method: str, *, latency: float, wait: float, operating: float = 0.0
    ) -> None:
        """One HTTP request answered (a batch counts once here; its sub-calls feed ``operating``)."""
        bucket = next((f"{b}" for b in LATENCY_BUCKETS if latency <= b), "inf")
        fields = {
            "calls": 1.0,
            "latency_seconds": latency,
            f"latency_le:{bucket}": 1.0,
            "limiter_wait_seconds": wait,
        }
        if operating:
            fields[f"operating_seconds:{method.lower()}"] = operating
            REST_OPERATING.labels(_method_label(method)).inc(operating)
        self._add(bucket_key, fields)
        REST_CALLS.labels(_method_label(method), "ok").inc()
        REST_LATENCY.observe(latency)
        if wait:
            REST_LIMITER_WAIT.inc(wait)

    def operating(self, bucket_key: str, method: str, seconds: float) -> None:
        if seconds:
            self._add(bucket_key, {f"operating_seconds:{method.lower()}": seconds})
            REST_OPERATING.labels(_method_label(method)).inc(seconds)

    def error(self, bucket_key: str, code: str, *, method: str = "", status: int | None = None) -> None:
        """A request (or a batch's sub-call) answered with an error or not answered at all.

        ``code``: Bitrix24's error code, or the exception's class name when there was no answer.
        """
        fields = {f"errors:{code or 'UNKNOWN'}": 1.0}
        if status in (429, 503):
            fields[f"limited:{status}"] = 1.0
        self._add(bucket_key, fields, f"{code or 'UNKNOWN'} {method}".strip())
        REST_CALLS.labels(_method_label(method) if method else OTHER, _code_label(code or "UNKNOWN")).inc()
        if status in (429, 503):
            REST_LIMITED.labels(str(status)).inc()

    def retry(self, bucket_key: str, cause: str) -> None:
        """``cause``: one of the client's fixed retry causes (never request data)."""
        self._add(bucket_key, {f"retries:{cause}": 1.0})
        REST_RETRIES.labels(cause).inc()

    def snapshot(self) -> dict[str, dict[str, float]]:
        """This process's totals: {bucket_key: {metric: value}}."""
        with self._lock:
            return {key: dict(values) for key, values in self._data.items()}

    def redis_snapshot(self, bucket_key: str) -> dict[str, float]:
        """Totals across all processes sharing the Redis (empty without Redis)."""
        if self.redis is None:
            return {}
        self.flush()
        raw = self.redis.hgetall(self._key(bucket_key))
        return {k.decode() if isinstance(k, bytes) else k: float(v) for k, v in raw.items()}


# Metrics objects with Redis, flushed once more when the process exits (weakly held: a dropped
# client's metrics are flushed by nobody, which is why flush() is also called on close()).
_live: weakref.WeakSet[Metrics] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for metrics in list(_live):
        try:
            metrics.flush()
        except Exception:  # noqa: BLE001 - exiting: a lost second of counters is not worth a traceback
            logger.warning("bitrix.metrics.flush_failed_at_exit")
