"""The shared client: one limiter, ledger and metrics per process, and a client for any credentials.

With REDIS_URL the leaky bucket, the operating ledger and the metrics live in Redis, so every
web process, Celery worker and management command shares one bucket per portal; without it
(single-process mode) they are in-process. Shared pieces are built once per process.

It knows nothing of stored portals (``portals.services.client`` builds their clients), so the
confirmation service can call Bitrix24 with a request's own token through it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.conf import settings

from bitrix_app.redis_client import redis_client
from portals.conf import app_settings

from ..bitrix.client import Bitrix24Client, RetryPolicy
from ..bitrix.credentials import Credentials
from ..bitrix.limiter import Limiter, LocalLimiter, RedisLimiter, plan_params
from ..bitrix.metrics import Metrics
from ..bitrix.operating import OperatingLedger
from ..bitrix.slots import LocalSlots, RedisSlots, Slots
from ..bitrix.transport import Transport, TransportConfig


@dataclass(frozen=True)
class SharedParts:
    """What every client of the process shares: per portal, one bucket, one ledger, one cap."""

    limiter: Limiter
    ledger: OperatingLedger
    metrics: Metrics
    slots: Slots


@functools.lru_cache(maxsize=4)
def _parts(redis_url: str, prefix: str) -> SharedParts:
    conn = redis_client(redis_url)
    headroom = app_settings.limiter_headroom
    limiter: Limiter = (
        RedisLimiter(conn, prefix=prefix, headroom=headroom) if conn else LocalLimiter(headroom=headroom)
    )
    ledger = OperatingLedger(
        limit=app_settings.operating_limit,
        headroom=app_settings.operating_headroom,
        redis=conn,
        prefix=prefix,
    )
    # A slot outlives the longest request (the read timeout) before a dead holder's comes back.
    slots: Slots = LocalSlots()
    if conn:
        slots = RedisSlots(conn, prefix=prefix, ttl=app_settings.read_timeout + 30)
    return SharedParts(limiter, ledger, Metrics(redis=conn, prefix=prefix), slots)


def client_parts() -> SharedParts:
    """The process-wide limiter, ledger, metrics and slots for the configured Redis (or none)."""
    return _parts(settings.REDIS_URL, settings.REDIS_KEY_PREFIX)


def client_for_credentials(*, credentials: Credentials, concurrency: int | None = None) -> Bitrix24Client:
    parts = client_parts()
    return Bitrix24Client(
        credentials,
        transport=Transport(
            TransportConfig(
                ca_bundle=app_settings.ca_bundle,
                connect_timeout=app_settings.connect_timeout,
                read_timeout=app_settings.read_timeout,
            )
        ),
        limiter=parts.limiter,
        ledger=parts.ledger,
        metrics=parts.metrics,
        slots=parts.slots,
        retry=RetryPolicy(
            rate_limit_attempts=app_settings.retry_rate_limit_attempts,
            transient_attempts=app_settings.retry_transient_attempts,
        ),
        bucket=plan_params(credentials.plan or app_settings.default_plan),
        concurrency=concurrency or app_settings.client_concurrency,
    )
