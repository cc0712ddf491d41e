"""Health, readiness and metrics for orchestrators and Prometheus; a request id for every log line.

* ``GET /healthz``: 200 while the process answers. Nothing else is checked: a liveness probe that
  failed with the database would restart every web process when only the database is down.
* ``GET /readyz``: 200 when the database answers, the migrations are applied, and Redis and the
  Celery broker answer (not checked in single-process mode, which has neither); 503 with the
  failing checks named otherwise. A load balancer stops sending requests while it fails.
* ``GET /metrics``: Prometheus' text format (portals.bitrix.metrics.exposition), only to clients
  in ``METRICS_ALLOWED_IPS`` (loopback by default), judged by :func:`bitrix_app.client_ip.client_ip`.

:class:`ProbesMiddleware` answers these first in ``MIDDLEWARE``, ahead of SecurityMiddleware and
host validation: probes come from an orchestrator or a scraper by address (Host is the container's
IP, the scheme plain http), which ``ALLOWED_HOSTS`` and the https redirect would refuse.
:class:`RequestScopeMiddleware` gives every other request a log scope with its request id.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse

from bitrix_app.celery import app as celery_app
from bitrix_app.client_ip import allowed, client_ip, from_trusted_proxy
from bitrix_app.logs import log_scope
from bitrix_app.redis_client import redis_client
from portals.bitrix.metrics import exposition
from portals.refusals import RefusalLog

logger = logging.getLogger("bitrix_app.probes")
# A dependency that is down fails every probe (every few seconds): one line per check a minute.
_log_not_ready = RefusalLog(logger, "probe.not_ready", interval=60.0)
# Applied migrations stay applied for the life of the process: the graph is loaded once.
_migrations_applied = False

Check = Callable[[], str]


def _database() -> str:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _migrations() -> str:
    global _migrations_applied
    if not _migrations_applied:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            raise RuntimeError(f"{len(pending)} migrations not applied")
        _migrations_applied = True
    return "ok"


def _redis() -> str:
    client = redis_client()
    if client is None:
        return "skipped: single-process mode"
    client.ping()
    return "ok"


def _broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "skipped: single-process mode"
    with celery_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=5)
    return "ok"


CHECKS: dict[str, Check] = {
    "database": _database,
    "migrations": _migrations,
    "redis": _redis,
    "broker": _broker,
}


def readiness() -> tuple[bool, dict[str, str]]:
    """(ready, {check: "ok" | "skipped: …" | "failed: <reason>"}) for every dependency."""
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as e:  # noqa: BLE001 - any failure of a dependency is "not ready"
            # The exception's class and only a RuntimeError's own text: a driver's message may
            # carry a connection URL with its password.
            reason = str(e) if type(e) is RuntimeError else type(e).__name__
            results[name] = f"failed: {reason}"
            _log_not_ready(name, 503, "", context={"error": reason})
    return all(not r.startswith("failed") for r in results.values()), results


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def readyz(request: HttpRequest) -> HttpResponse:
    ready, checks = readiness()
    return JsonResponse({"ready": ready, "checks": checks}, status=200 if ready else 503)


def metrics(request: HttpRequest) -> HttpResponse:
    address = client_ip(request)
    if not allowed(address, settings.METRICS_ALLOWED_IPS):
        return HttpResponse(
            "metrics are served only to addresses in METRICS_ALLOWED_IPS\n",
            status=403,
            content_type="text/plain",
        )
    page, content_type = exposition()
    return HttpResponse(page, content_type=content_type)


PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/metrics": metrics,
}


class ProbesMiddleware:
    """Answers the probe paths (GET and HEAD only) before any other middleware runs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = HttpResponse("only GET and HEAD\n", status=405, content_type="text/plain")
            response["Allow"] = "GET, HEAD"
            return response
        return probe(request)


# nginx's $request_id is 32 hex digits; other proxies use UUIDs. Anything else is replaced.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def request_id(request: HttpRequest) -> str:
    """The trusted proxy's X-Request-ID (so nginx's and our lines match), else a new one."""
    given = request.META.get("HTTP_X_REQUEST_ID", "")
    if given and from_trusted_proxy(request) and _REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestScopeMiddleware:
    """Every line logged while a request is served carries its ``request_id``; so does the answer."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = request_id(request)
        with log_scope(request_id=rid):
            response = self.get_response(request)
        response["X-Request-ID"] = rid
        return response
