"""Clients for an installed portal (its stored, refreshing credentials) and for an inbound webhook.

Both run through the shared client (:mod:`.shared_client`): one bucket per portal.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.db import DatabaseError

from bitrix_app.logs import bind
from portals.conf import app_settings

from ..bitrix.client import Bitrix24Client
from ..bitrix.credentials import WebhookCredentials
from ..bitrix.exceptions import Bitrix24ConfigError
from ..models import Portal
from .credentials import PortalCredentials
from .shared_client import client_for_credentials


def client_for_portal(*, member_id: str, concurrency: int | None = None) -> Bitrix24Client:
    """A client for an installed portal (its tokens, its plan, its bucket).

    Raises Portal.DoesNotExist for an unknown member_id.
    """

    portal = Portal.objects.get(member_id=member_id)
    bind(member_id=member_id)  # the lines logged by the rest of this request or task name the portal
    return client_for_credentials(credentials=PortalCredentials(portal.pk), concurrency=concurrency)


def webhook_url_from(*, url: str | None = None) -> str:
    """The webhook URL given, else BITRIX24_WEBHOOK_URL (environment or settings), else an error."""
    url = url or os.environ.get("BITRIX24_WEBHOOK_URL") or app_settings.webhook_url
    if not url:
        raise Bitrix24ConfigError("no webhook URL: pass --webhook or set BITRIX24_WEBHOOK_URL")
    return url


def client_for_webhook(*, url: str | None = None, concurrency: int | None = None) -> Bitrix24Client:
    """A client for an inbound webhook; shares its portal's bucket when the portal is installed here.

    The bucket is the portal's, not the webhook's: a webhook's domain that matches a stored
    portal uses that portal's member_id and plan, so app calls and webhook calls to one portal
    are limited together. Raises Bitrix24ConfigError for a webhook that isn't https (http only
    with BITRIX24_ALLOW_HTTP): its secret is in the URL and would travel in clear.
    """
    url = webhook_url_from(url=url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and app_settings.allow_http):
        # The URL is not repeated: it holds the webhook's secret.
        raise Bitrix24ConfigError(
            "the webhook URL must start with https:// (http only with BITRIX24_ALLOW_HTTP=1)"
        )
    try:
        portal = Portal.objects.filter(domain__iexact=parts.netloc.lower()).only("member_id", "plan").first()
    except DatabaseError:
        # No database, or not migrated yet: it only tells whether the webhook's portal is
        # installed here (to share its bucket with the app). A webhook works without it.
        portal = None
    credentials = WebhookCredentials(
        url,
        plan_name=portal.plan if portal else app_settings.default_plan,
        member_id=portal.member_id if portal else None,
    )
    return client_for_credentials(credentials=credentials, concurrency=concurrency)
