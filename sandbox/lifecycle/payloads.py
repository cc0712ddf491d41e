"""The shapes a portal sends to the app: the frame POST (§1.2) and event bodies (§1.4, §7.2, §7.4).

Pure functions over two small value types, so the wire format is decided in one place and tests can
compare what the recording app received with what these builders say a portal sends.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

# Events whose auth block carries refresh_token (protocol §7.2: "only on events needing long-term
# access"; ONAPPUPDATE's doc page shows it too). Every other event gets the short block.
EVENTS_WITH_REFRESH_TOKEN = frozenset({"ONAPPINSTALL", "ONAPPUPDATE", "ONOFFLINEEVENT"})

# Events that carry no user token at all: the app's access is revoked (uninstall) or the event comes
# from the marketplace, not from a user (payment). They keep the context and application_token.
EVENTS_WITHOUT_USER = frozenset({"ONAPPUNINSTALL", "ONAPPPAYMENT"})


@dataclass(frozen=True)
class PortalIdentity:
    """What the portal says about itself and the app installation in every frame POST and event."""

    member_id: str
    domain: str  # "host:port" as the app sees it; it changes on rename, member_id never does
    client_endpoint: str
    server_endpoint: str
    application_token: str
    status: str = "F"
    scope: str = "crm,placement,user_brief"
    language_id: str = "en"
    https: bool = True

    def __repr__(self) -> str:  # application_token never shows up in logs or tracebacks
        return f"PortalIdentity(member_id={self.member_id!r}, domain={self.domain!r}, status={self.status!r})"


@dataclass(frozen=True)
class UserTokens:
    """One user's token pair, as minted by the sandbox's OAuth server."""

    access_token: str
    refresh_token: str
    expires: int  # absolute unix time
    expires_in: int
    user_id: int
    scope: str

    def __repr__(self) -> str:
        return f"UserTokens(user_id={self.user_id}, expires={self.expires})"


def auth_block(*, event: str, portal: PortalIdentity, tokens: UserTokens | None) -> dict[str, Any]:
    """The `auth[...]` block of an event, key order as in captured real payloads (protocol §2.4, §7.2).

    With tokens None (an action without a user, or an event that carries none) only the context keys
    and application_token are sent, as Bitrix24 does for robots and for ONAPPUNINSTALL.
    """
    block: dict[str, Any] = {}
    if tokens is not None and event not in EVENTS_WITHOUT_USER:
        block.update(
            access_token=tokens.access_token,
            expires=str(tokens.expires),
            expires_in=str(tokens.expires_in),
            scope=tokens.scope,
        )
    block.update(domain=portal.domain, server_endpoint=portal.server_endpoint)
    if tokens is not None and event not in EVENTS_WITHOUT_USER:
        block["status"] = portal.status
    block.update(client_endpoint=portal.client_endpoint, member_id=portal.member_id)
    if tokens is not None and event not in EVENTS_WITHOUT_USER:
        block["user_id"] = str(tokens.user_id)
        if event in EVENTS_WITH_REFRESH_TOKEN:
            block["refresh_token"] = tokens.refresh_token
    block["application_token"] = portal.application_token
    return block


def event_payload(
    *,
    event: str,
    handler_id: int,
    data: dict[str, Any],
    ts: int,
    portal: PortalIdentity,
    tokens: UserTokens | None,
) -> dict[str, Any]:
    """A whole event body (before form encoding): event, event_handler_id, data, ts, auth."""
    return {
        "event": event.upper(),
        "event_handler_id": str(handler_id),
        "data": data,
        "ts": str(ts),
        "auth": auth_block(event=event.upper(), portal=portal, tokens=tokens),
    }


@dataclass(frozen=True)
class FramePost:
    """The iframe load: query-string fields and form-body fields, split as §1.2 says."""

    query: dict[str, str]
    body: dict[str, str]

    def __repr__(self) -> str:
        return f"FramePost(query={self.query!r}, body_keys={sorted(self.body)!r})"


def new_app_sid() -> str:
    """A per-render session id (APP_SID); new on every render, never an authentication secret."""
    return secrets.token_hex(16)


def frame_post(
    *,
    portal: PortalIdentity,
    tokens: UserTokens,
    placement: str = "DEFAULT",
    placement_options: dict[str, Any] | None = None,
    app_sid: str | None = None,
) -> FramePost:
    """Build the frame POST for the app page, installer or a placement.

    PLACEMENT_OPTIONS is a JSON string and only sent for widgets (placement other than DEFAULT).
    """
    query = {
        "DOMAIN": portal.domain,
        "PROTOCOL": "1" if portal.https else "0",
        "LANG": portal.language_id,
        "APP_SID": app_sid or new_app_sid(),
    }
    body = {
        "AUTH_ID": tokens.access_token,
        "AUTH_EXPIRES": str(tokens.expires_in),
        "REFRESH_ID": tokens.refresh_token,
        "SERVER_ENDPOINT": portal.server_endpoint,
        "member_id": portal.member_id,
        "status": portal.status,
        "PLACEMENT": placement,
    }
    if placement != "DEFAULT":
        body["PLACEMENT_OPTIONS"] = json.dumps(placement_options or {}, separators=(",", ":"))
    body["APPLICATION_TOKEN"] = portal.application_token
    body["APPLICATION_SCOPE"] = portal.scope
    return FramePost(query=query, body=body)
