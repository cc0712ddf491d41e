"""Build Bitrix24 clients from Django settings: the one place the client meets the Django layer.

With REDIS_URL the leaky bucket, the operating ledger and the metrics live in Redis, so every
web process, Celery worker and management command shares one bucket per portal; without it
(single-process mode) they are in-process. Shared pieces are built once per process.
"""

from __future__ import annotations

import functools
import os
from urllib.parse import urlsplit

from django.conf import settings

from bitrix_app.redis_client import redis_client

from ..bitrix.client import Bitrix24Client, RetryPolicy
from ..bitrix.credentials import Credentials, WebhookCredentials
from ..bitrix.exceptions import Bitrix24ConfigError
from ..bitrix.limiter import Limiter, LocalLimiter, RedisLimiter, plan_params
from ..bitrix.metrics import Metrics
from ..bitrix.operating import OperatingLedger
from ..bitrix.transport import Transport, TransportConfig


@functools.lru_cache(maxsize=4)
def _parts(redis_url: str, prefix: str) -> tuple[Limiter, OperatingLedger, Metrics]:
    conn = redis_client(redis_url)
    headroom = settings.BITRIX24_LIMITER_HEADROOM
    limiter: Limiter = (
        RedisLimiter(conn, prefix=prefix, headroom=headroom) if conn else LocalLimiter(headroom=headroom)
    )
    ledger = OperatingLedger(
        limit=settings.BITRIX24_OPERATING_LIMIT,
        headroom=settings.BITRIX24_OPERATING_HEADROOM,
        redis=conn,
        prefix=prefix,
    )
    return limiter, ledger, Metrics(redis=conn, prefix=prefix)


def client_parts() -> tuple[Limiter, OperatingLedger, Metrics]:
    """The process-wide limiter, ledger and metrics for the configured Redis (or none)."""
    return _parts(settings.REDIS_URL, settings.REDIS_KEY_PREFIX)


def client_for_credentials(*, credentials: Credentials, concurrency: int | None = None) -> Bitrix24Client:
    limiter, ledger, metrics = client_parts()
    return Bitrix24Client(
        credentials,
        transport=Transport(
            TransportConfig(
                ca_bundle=settings.BITRIX24_CA_BUNDLE,
                connect_timeout=settings.BITRIX24_CONNECT_TIMEOUT,
                read_timeout=settings.BITRIX24_READ_TIMEOUT,
            )
        ),
        limiter=limiter,
        ledger=ledger,
        metrics=metrics,
        retry=RetryPolicy(
            rate_limit_attempts=settings.BITRIX24_RETRY_RATE_LIMIT_ATTEMPTS,
            transient_attempts=settings.BITRIX24_RETRY_TRANSIENT_ATTEMPTS,
        ),
        bucket=plan_params(credentials.plan or settings.BITRIX24_DEFAULT_PLAN),
        concurrency=concurrency or settings.BITRIX24_CLIENT_CONCURRENCY,
    )


def client_for_portal(*, member_id: str, concurrency: int | None = None) -> Bitrix24Client:
    """A client for an installed portal (its tokens, its plan, its bucket).

    Raises Portal.DoesNotExist for an unknown member_id.
    """
    from ..models import Portal
    from .credentials import PortalCredentials

    portal = Portal.objects.get(member_id=member_id)
    return client_for_credentials(credentials=PortalCredentials(portal.pk), concurrency=concurrency)


def webhook_url_from(*, url: str | None = None) -> str:
    """The webhook URL given, else BITRIX24_WEBHOOK_URL (environment or settings), else an error."""
    url = url or os.environ.get("BITRIX24_WEBHOOK_URL") or settings.BITRIX24_WEBHOOK_URL
    if not url:
        raise Bitrix24ConfigError("no webhook URL: pass --webhook or set BITRIX24_WEBHOOK_URL")
    return url


def client_for_webhook(*, url: str | None = None, concurrency: int | None = None) -> Bitrix24Client:
    """A client for an inbound webhook; shares its portal's bucket when the portal is installed here.

    The bucket is the portal's, not the webhook's: a webhook's domain that matches a stored
    portal uses that portal's member_id and plan, so app calls and webhook calls to one portal
    are limited together.
    """
    from ..models import Portal

    url = webhook_url_from(url=url)
    domain = urlsplit(url).netloc.lower()
    portal = Portal.objects.filter(domain__iexact=domain).only("member_id", "plan").first()
    credentials = WebhookCredentials(
        url,
        plan_name=portal.plan if portal else settings.BITRIX24_DEFAULT_PLAN,
        member_id=portal.member_id if portal else None,
    )
    return client_for_credentials(credentials=credentials, concurrency=concurrency)
