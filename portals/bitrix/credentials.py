"""How a call authenticates: a portal's OAuth tokens or an inbound webhook.

The client only sees this protocol; the Django-backed implementation for installed portals
(single-flight refresh, encrypted store) lives in portals.services.credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from .exceptions import (
    Bitrix24ConfigError,
    Bitrix24InvalidToken,
    Bitrix24PortalMoved,
    Bitrix24PortalUnavailable,
)


class Credentials(Protocol):
    """What the client needs to call one portal.

    ``bucket_key`` names the portal's rate-limit bucket: the member_id when known, else the
    domain, so every credential of one portal shares one bucket.
    """

    @property
    def bucket_key(self) -> str: ...

    @property
    def plan(self) -> str:
        """ "standard" or "enterprise": picks the portal's leaky-bucket parameters."""
        ...

    def endpoint(self) -> str:
        """Base URL for REST calls, ending in '/': https://<portal>/rest/ or the webhook URL."""
        ...

    def access_token(self) -> str | None:
        """The token to send as ``auth``, or None for a webhook (its secret is in the URL)."""
        ...

    def refresh(self, stale_token: str | None) -> None:
        """Make a fresh token available after ``stale_token`` was refused as expired.

        Single-flight: when another process already replaced ``stale_token``, this only reloads.
        Raises Bitrix24InvalidGrant / Bitrix24PortalUnavailable when the portal can't be refreshed.
        """
        ...

    def settle(self, stale_token: str) -> None:
        """``stale_token`` was refused as invalid: wait for a rotation in progress elsewhere (never
        start one), so that :meth:`access_token` then gives what is stored. No-op where tokens
        don't rotate."""
        ...

    def moved(self, new_domain: str) -> None:
        """The portal answered 302 to ``new_domain`` (renamed); verify and follow it or raise."""
        ...

    def unavailable(self, error: Bitrix24PortalUnavailable) -> None:
        """Bitrix24 refused a call for the portal itself (PORTAL_DELETED, NOT_INSTALLED,
        PAYMENT_REQUIRED); record it where the credentials are kept. The client then raises it."""
        ...


@dataclass(frozen=True)
class WebhookCredentials:
    """An inbound webhook, https://<portal>/rest/<user_id>/<secret>/ — for single-portal use."""

    url: str
    plan_name: str = "standard"
    member_id: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        segments = [s for s in parts.path.split("/") if s]
        if parts.scheme not in ("https", "http") or len(segments) < 3 or segments[0] != "rest":
            raise Bitrix24ConfigError("webhook URL must look like https://<portal>/rest/<user_id>/<secret>/")

    @property
    def domain(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def bucket_key(self) -> str:
        return self.member_id or self.domain

    @property
    def plan(self) -> str:
        return self.plan_name

    def endpoint(self) -> str:
        parts = urlsplit(self.url)
        segments = [s for s in parts.path.split("/") if s][:3]
        return f"{parts.scheme}://{parts.netloc}/{'/'.join(segments)}/"

    def access_token(self) -> str | None:
        return None

    def refresh(self, stale_token: str | None) -> None:

        raise Bitrix24InvalidToken("expired_token", "webhook credentials cannot be refreshed")

    def settle(self, stale_token: str) -> None:
        return None

    def moved(self, new_domain: str) -> None:

        raise Bitrix24PortalMoved(new_domain)

    def unavailable(self, error: Bitrix24PortalUnavailable) -> None:
        """Nothing is stored for a webhook: the caller sees the raised error."""

    def __repr__(self) -> str:  # the secret is part of the URL: never print it
        return f"WebhookCredentials(domain={self.domain!r})"
