"""REST calls made with a token that is not the portal's stored pair (an install's, a frame's).

Those tokens belong to the acting user: they serve this one request and are never written over
the stored pair, so they cannot be refreshed here (an expired one is simply refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..bitrix.exceptions import Bitrix24InvalidToken, Bitrix24PortalMoved, Bitrix24PortalUnavailable
from .shared_client import client_for_credentials


@dataclass(frozen=True)
class TokenCredentials:
    """Credentials for one access token on one portal (no refresh, no renames)."""

    token: str = field(repr=False)
    client_endpoint: str
    member_id: str
    plan_name: str = "standard"

    @property
    def bucket_key(self) -> str:
        return self.member_id

    @property
    def plan(self) -> str:
        return self.plan_name

    def endpoint(self) -> str:
        return self.client_endpoint

    def access_token(self) -> str | None:
        return self.token

    def refresh(self, stale_token: str | None) -> None:
        raise Bitrix24InvalidToken("expired_token", "a request's own token cannot be refreshed")

    def settle(self, stale_token: str) -> None:
        return None  # a request's own token: nothing rotates it here

    def moved(self, new_domain: str) -> None:

        raise Bitrix24PortalMoved(new_domain, member_id=self.member_id)

    def unavailable(self, error: Bitrix24PortalUnavailable) -> None:
        """A request's own token: the portal's state is the stored credentials' business."""


def rest_call(*, credentials: TokenCredentials, method: str, params: dict[str, Any] | None = None) -> Any:
    """One REST call through the shared client (the portal's bucket); returns ``result``."""

    return client_for_credentials(credentials=credentials, concurrency=1).call(method, params or {})
