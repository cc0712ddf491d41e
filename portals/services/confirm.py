"""Does Bitrix24 itself vouch for what a request claims? The one place that answers.

Nothing a request says about who sent it is trusted (protocol §9). Every user who opens the app
receives, in the frame POST, their own access and refresh tokens and the portal's application
token, so a well-formed install, frame or event proves at most "someone on this portal". What
may change a portal's credentials, application token or bindings is decided here, by asking
Bitrix24:

* :func:`token_identify`: the OAuth server's ``app.info`` says which portal, app and user an
  access token belongs to (the endpoints are validated first, so the question goes only to an
  allow-listed server and the answer is about the claimed portal);
* :func:`user_is_admin`: the portal's ``user.admin`` answers, for that token, whether its user
  administers the portal (RD api-reference/common/users/user-admin.md). Installing, reinstalling,
  re-authorising and changing the application token are administrator actions;
* :func:`refresh_token_prove`: a refresh token is accepted only by exchanging it. It is
  single-use, so the exchange is also the rotation: the new pair is what gets stored.

Each raises :class:`InvalidInstallRequest` (answered 403) with a reason that is safe to log, and
none of them writes anything: storing is the caller's business, after every proof has passed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field

from django.core.cache import cache

from portals.conf import app_settings

from ..bitrix.exceptions import (
    AdministratorRequired,
    Bitrix24ConfigError,
    Bitrix24Error,
    InvalidInstallRequest,
)
from ..bitrix.oauth import AppInfo, TokenGrant
from ..models import LocalApplication
from .endpoints import endpoints_check, normalise_domain
from .oauth import Clock, oauth_server
from .rest import TokenCredentials, rest_call

logger = logging.getLogger(__name__)

# What app.info and user.admin said about a token is remembered this long, by the token's digest
# (never the token), so reloading the app page or opening several placements doesn't ask again.
CONFIRMED_TOKEN_TTL = 300


def tokens_equal(stored: str, received: str) -> bool:
    """Constant-time comparison of two secrets (application tokens, access tokens).

    Digests are compared, so neither the time taken nor the lengths say how much matched. An
    empty value never matches: a portal without a stored token accepts none.
    """
    if not stored or not received:
        return False
    return hmac.compare_digest(_digest(stored), _digest(received))


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Identity:
    """An access token Bitrix24 vouched for: its portal, app and user, and the checked endpoints."""

    access_token: str = field(repr=False)
    info: AppInfo
    member_id: str
    client_endpoint: str
    server_endpoint: str
    local_app: LocalApplication | None

    @property
    def user_id(self) -> int | None:
        return self.info.user_id

    def is_admin(self) -> bool:
        """:func:`user_is_admin` for this token."""
        return user_is_admin(
            access_token=self.access_token, client_endpoint=self.client_endpoint, member_id=self.member_id
        )

    def admin_require(self, *, action: str) -> None:
        """:func:`admin_require` for this token."""
        admin_require(
            access_token=self.access_token,
            client_endpoint=self.client_endpoint,
            member_id=self.member_id,
            action=action,
        )


def token_identify(
    *,
    access_token: str,
    member_id: str,
    domain: str,
    client_endpoint: str,
    server_endpoint: str,
    clock: Clock | None = None,
) -> Identity:
    """Who ``access_token`` belongs to, confirmed by the OAuth server, or InvalidInstallRequest.

    1. the endpoints: https (or BITRIX24_ALLOW_HTTP), the client endpoint on ``domain`` itself,
       the server endpoint of an allow-listed OAuth server;
    2. app.info on that server accepts the token and names ``member_id`` (and ``domain`` and the
       client endpoint, where it reports them);
    3. the token was issued to this app: the marketplace client_id or a registered local app.
    """
    member_id = (member_id or "").lower()
    if not member_id or not access_token:
        raise InvalidInstallRequest("no member_id or access token")
    try:
        client_endpoint, server_endpoint = endpoints_check(
            domain=domain, client_endpoint=client_endpoint, server_endpoint=server_endpoint
        )
    except Bitrix24ConfigError as e:
        raise InvalidInstallRequest(f"endpoints refused: {e}") from e
    info = _app_info(access_token=access_token, server_endpoint=server_endpoint, clock=clock)
    if info.member_id.lower() != member_id:
        raise InvalidInstallRequest("app.info names another member_id")
    if info.domain and normalise_domain(info.domain) != normalise_domain(domain):
        raise InvalidInstallRequest("app.info names another domain")
    if info.client_endpoint and info.client_endpoint.rstrip("/") != client_endpoint.rstrip("/"):
        raise InvalidInstallRequest("app.info names another client_endpoint")
    local_app = None
    if info.client_id and info.client_id != app_settings.client_id:
        local_app = LocalApplication.objects.filter(client_id=info.client_id).first()
        if local_app is None:
            raise InvalidInstallRequest("the token belongs to an application not registered here")
    return Identity(
        access_token=access_token,
        info=info,
        member_id=member_id,
        client_endpoint=client_endpoint,
        server_endpoint=server_endpoint,
        local_app=local_app,
    )


def _app_info(*, access_token: str, server_endpoint: str, clock: Clock | None) -> AppInfo:
    key = "portals:confirmed:app-info:" + _digest(access_token).hex()
    cached = cache.get(key)
    if isinstance(cached, dict):
        return AppInfo.from_result(cached)
    try:
        info = oauth_server(server_endpoint=server_endpoint, clock=clock).app_info(access_token)
    except Bitrix24Error as e:
        raise InvalidInstallRequest(f"token not confirmed by the OAuth server: {type(e).__name__}") from e
    cache.set(key, dict(info.raw), CONFIRMED_TOKEN_TTL)
    return info


def user_is_admin(*, access_token: str, client_endpoint: str, member_id: str) -> bool:
    """Whether the token's user administers the portal, as the portal's ``user.admin`` says.

    Asked with the user's own token (any user may call it, no scope needed) at a client endpoint
    the caller validated. Raises InvalidInstallRequest when the portal gives no usable answer:
    whether someone is an administrator is never guessed.
    """
    key = "portals:confirmed:admin:" + _digest(access_token).hex()
    cached = cache.get(key)
    if isinstance(cached, bool):
        return cached
    credentials = TokenCredentials(token=access_token, client_endpoint=client_endpoint, member_id=member_id)
    try:
        result = rest_call(credentials=credentials, method="user.admin")
    except Bitrix24Error as e:
        raise InvalidInstallRequest(f"user.admin gave no answer: {type(e).__name__}") from e
    if not isinstance(result, bool):
        raise InvalidInstallRequest("user.admin answered something other than true or false")
    cache.set(key, result, CONFIRMED_TOKEN_TTL)
    return result


def admin_require(*, access_token: str, client_endpoint: str, member_id: str, action: str) -> None:
    """Raise AdministratorRequired unless the token's user administers the portal."""
    if not user_is_admin(access_token=access_token, client_endpoint=client_endpoint, member_id=member_id):
        raise AdministratorRequired(f"{action} needs an administrator of the portal")


def refresh_token_prove(*, identity: Identity, refresh_token: str, clock: Clock | None = None) -> TokenGrant:
    """Exchange ``refresh_token`` at the identity's OAuth server; the grant is the pair to store.

    The refresh token proves itself only by working, and since it is single-use the exchange is
    also its rotation. Raises InvalidInstallRequest when the server refuses it (spent, forged, of
    another app) or names another portal. The exchange is made with the registration the token
    was issued to (a local app's own pair, or the marketplace one).
    """
    if not refresh_token:
        raise InvalidInstallRequest("no refresh token")
    local = identity.local_app
    server = oauth_server(
        server_endpoint=identity.server_endpoint,
        client_id=local.client_id if local else "",
        client_secret=local.client_secret if local else "",
        clock=clock,
    )
    try:
        grant = server.refresh(refresh_token)
    except Bitrix24Error as e:
        raise InvalidInstallRequest(f"refresh token did not prove itself: {type(e).__name__}") from e
    if grant.member_id and grant.member_id.lower() != identity.member_id:
        raise InvalidInstallRequest("the refresh token belongs to another portal")
    return grant
