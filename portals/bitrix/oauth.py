"""The Bitrix24 OAuth server: authorisation URL, code exchange, refresh grant, app.info.

This module is the choke point for every request to an OAuth server: each failure becomes an
exception of :mod:`.exceptions` here. It never talks to a portal, and it only ever sends
``client_secret`` or a refresh token to a server the caller validated against the allow-list
(:func:`oauth_server_for`), because a forged install could otherwise make the app hand its
secret to an attacker's "OAuth server".

The token endpoint is called with GET and query parameters, as Bitrix24 documents it and both
official SDKs do. The code flow uses requests-oauthlib (state, authorisation URL, token parsing);
the refresh grant is one GET through the shared session factory.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from oauthlib.oauth2 import OAuth2Error

from . import http
from .exceptions import Bitrix24ConfigError, Bitrix24ServerError, Bitrix24TransportError
from .responses import answer_payload
from .retry import Backoff
from .transport import transport_error
from .values import MAX_UNIX_TS, MIN_UNIX_TS, bounded_int

TOKEN_PATH = "oauth/token/"
AUTHORIZE_PATH = "oauth/authorize/"
REST_PATH = "rest/"

# Bounds on what a token answer may say, so a broken or hostile answer is refused here rather than
# overflowing a datetime or storing an expiry centuries away (a token that is never refreshed
# ahead). Bitrix24 issues access tokens for an hour; a day is far beyond any real lifetime.
MAX_TOKEN_LIFETIME = 86_400
# Bitrix24 user ids, as the Portal model stores them (a positive 32-bit integer column).
MAX_USER_ID = 2**31 - 1

# Between attempts to reach an OAuth server that refused the connection (nothing was sent, so
# repeating cannot spend a refresh token twice): short waits, spread across portals.
CONNECT_BACKOFF = Backoff(base=0.5, cap=8.0, jitter="full")


def normalise_base(url: str) -> str:
    """``https://host[:port]/`` for a URL: scheme and host lower-cased, path ending in '/'."""
    parts = urlsplit(url.strip())
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}"


def oauth_server_for(server_endpoint: str, allowed_servers: Iterable[str]) -> str:
    """The OAuth server base (``https://oauth.bitrix.info/``) for a ``server_endpoint``.

    ``server_endpoint`` must be exactly an allowed server followed by ``rest/``; anything else
    raises Bitrix24ConfigError (the caller turns it into a refused install).
    """
    endpoint = normalise_base(server_endpoint)
    for allowed in allowed_servers:
        base = normalise_base(allowed)
        if endpoint == base + REST_PATH:
            return base
    raise Bitrix24ConfigError(f"server_endpoint {urlsplit(endpoint).netloc!r} is not an allowed OAuth server")


@dataclass(frozen=True)
class TokenGrant:
    """A token response of the OAuth server (code exchange or refresh grant).

    ``expires_at`` is absolute, computed from ``expires_in`` on the caller's clock (the lifetime
    is never assumed): a skewed server clock then cannot make a fresh token look expired.
    """

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    expires_in: int
    scope: tuple[str, ...]
    member_id: str
    user_id: int | None
    status: str
    client_endpoint: str
    server_endpoint: str

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], *, now: datetime) -> TokenGrant:
        """Parse a token response.

        Raises Bitrix24ServerError (ERROR_UNEXPECTED_ANSWER) when the pair or the lifetime is
        missing, or a number is out of range: ``expires_in`` must be 1..MAX_TOKEN_LIFETIME seconds;
        an absolute ``expires`` (used only without ``expires_in``) at most MAX_TOKEN_LIFETIME from
        ``now`` (one already past gives 0: the token is refreshed before its first use);
        ``user_id`` 0..MAX_USER_ID.
        """
        access = str(payload.get("access_token") or "")
        refresh = str(payload.get("refresh_token") or "")
        if not access or not refresh:
            raise Bitrix24ServerError("ERROR_UNEXPECTED_ANSWER", "token response without a token pair")
        expires_in = _int_field(payload.get("expires_in"), "expires_in", low=1, high=MAX_TOKEN_LIFETIME)
        if expires_in is None:
            # Only the absolute form came back: use what is left of it on our clock.
            expires = _int_field(payload.get("expires"), "expires", low=MIN_UNIX_TS, high=MAX_UNIX_TS)
            if expires is None:
                raise Bitrix24ServerError("ERROR_UNEXPECTED_ANSWER", "token response without a lifetime")
            expires_in = max(0, expires - int(now.timestamp()))
            if expires_in > MAX_TOKEN_LIFETIME:
                raise Bitrix24ServerError(
                    "ERROR_UNEXPECTED_ANSWER", "token response with an out-of-range expires"
                )
        return cls(
            access_token=access,
            refresh_token=refresh,
            expires_at=now + timedelta(seconds=expires_in),
            expires_in=expires_in,
            scope=split_scope(payload.get("scope")),
            member_id=str(payload.get("member_id") or ""),
            user_id=_int_field(payload.get("user_id"), "user_id", low=0, high=MAX_USER_ID),
            status=str(payload.get("status") or ""),
            client_endpoint=str(payload.get("client_endpoint") or ""),
            server_endpoint=str(payload.get("server_endpoint") or ""),
        )


@dataclass(frozen=True)
class AppInfo:
    """What the OAuth server's app.info says about an access token (the trusted source).

    Fields the server did not send are empty; callers compare only what is present.
    """

    client_id: str
    member_id: str
    domain: str
    client_endpoint: str
    user_id: int | None
    status: str
    installed: bool | None
    scope: tuple[str, ...]
    payment_expired: bool | None
    license: str
    version: str = ""
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> AppInfo:
        """Read an app.info result; raises Bitrix24ServerError for a user_id that is no user id."""
        # The OAuth server nests the installation under "install"; the portal's app.info is flat.
        install = result.get("install") if isinstance(result.get("install"), Mapping) else {}
        assert isinstance(install, Mapping)

        def pick(*keys: str) -> Any:
            for source in (install, result):
                for key in keys:
                    if source.get(key) not in (None, ""):
                        return source[key]
            return None

        installed = pick("installed", "INSTALLED")
        payment = pick("PAYMENT_EXPIRED", "payment_expired")
        client_endpoint = str(pick("client_endpoint") or "")
        domain = str(pick("domain") or "") or urlsplit(client_endpoint).netloc
        return cls(
            client_id=str(pick("client_id", "CODE") or ""),
            member_id=str(pick("member_id") or ""),
            domain=domain.lower(),
            client_endpoint=client_endpoint,
            user_id=_int_field(pick("user_id"), "user_id", low=0, high=MAX_USER_ID),
            status=str(pick("status", "STATUS") or ""),
            installed=None if installed is None else _truthy(installed),
            scope=split_scope(pick("scope")),
            payment_expired=None if payment is None else _truthy(payment),
            license=str(pick("LICENSE", "license") or ""),
            version=str(pick("version", "VERSION") or ""),
            raw=dict(result),
        )


def split_scope(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        items = [str(v) for v in value]
    else:
        items = str(value or "").replace(" ", ",").split(",")
    return tuple(sorted({item.strip() for item in items if item.strip()}))


def _int_field(value: Any, name: str, *, low: int, high: int) -> int | None:
    """A number of an OAuth server's answer: None when absent, raises when present but unusable.

    Unusable (not an integer, or outside ``low..high``) is an answer we can't act on, so it is
    Bitrix24ServerError rather than "absent": a garbled user_id must not pass as "not sent".
    """
    if value is None or value == "":
        return None
    number = bounded_int(value, low=low, high=high)
    if number is None:
        raise Bitrix24ServerError("ERROR_UNEXPECTED_ANSWER", f"answer with an unusable {name}")
    return number


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().upper() in {"Y", "1", "TRUE", "YES"}


@dataclass(frozen=True)
class OAuthConfig:
    client_id: str
    client_secret: str = field(repr=False)
    ca_bundle: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.client_id or not self.client_secret:
            raise Bitrix24ConfigError("the app's client_id and client_secret are required for OAuth")

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


class OAuthServer:
    """One allow-listed OAuth server, used with one app registration (client_id/secret).

    ``now`` is the clock used to turn ``expires_in`` into ``expires_at``.
    """

    def __init__(self, base: str, config: OAuthConfig, *, now: Callable[[], datetime] | None = None):
        self.base = normalise_base(base)
        self.config = config
        self._now = now or (lambda: datetime.now(UTC))

    def __repr__(self) -> str:
        return f"OAuthServer({urlsplit(self.base).netloc!r}, client_id={self.config.client_id!r})"

    @property
    def token_url(self) -> str:
        return self.base + TOKEN_PATH

    @property
    def rest_url(self) -> str:
        return self.base + REST_PATH

    # --- the authorisation-code flow -----------------------------------------------------------

    def authorization_url(self, *, portal_domain: str, state: str | None = None, https: bool = True) -> str:
        """The portal's /oauth/authorize/ URL for this app; the redirect URI is the app's setting."""
        state = state or secrets.token_urlsafe(24)
        if not https:  # development portals only (BITRIX24_ALLOW_HTTP); oauthlib refuses http
            query = urlencode({"response_type": "code", "client_id": self.config.client_id, "state": state})
            return f"http://{portal_domain}/{AUTHORIZE_PATH}?{query}"
        with http.oauth_session(self.config.client_id, state=state) as session:
            url, _state = session.authorization_url(f"https://{portal_domain}/{AUTHORIZE_PATH}")
        return str(url)

    def exchange_code(self, code: str) -> TokenGrant:
        """Trade an authorisation code (valid 30 s) for a token pair.

        Raises Bitrix24InvalidGrant for a spent or unknown code, Bitrix24TransportError when the
        server could not be reached, Bitrix24ApiError subclasses for other error envelopes.
        """
        session = http.oauth_session(self.config.client_id, ca_bundle=self.config.ca_bundle)
        session.register_compliance_hook("access_token_response", self._raise_for_error)
        try:
            token = session.fetch_token(
                self.token_url,
                code=code,
                method="GET",
                include_client_id=True,
                client_secret=self.config.client_secret,
                timeout=self.config.timeout,
                verify=http.verify(self.config.ca_bundle),
            )
        except requests.RequestException as e:
            # Not chained: requests' message holds the URL, whose query carries the secret and code.
            raise transport_error(e, self.token_url) from None
        except (OAuth2Error, ValueError, Warning) as e:  # oauthlib refused the body (not JSON, no token)
            reason = f"unusable token response: {type(e).__name__}"
            raise Bitrix24ServerError("ERROR_UNEXPECTED_ANSWER", reason)
        finally:
            session.close()
        return TokenGrant.from_payload(token, now=self._now())

    # --- the refresh grant and app.info --------------------------------------------------------

    def refresh(self, refresh_token: str) -> TokenGrant:
        """Exchange a refresh token for a new pair (the old refresh token is spent by this).

        Raises Bitrix24TransportError(sent=False) when nothing reached the server,
        Bitrix24Timeout / Bitrix24ServerError when the outcome is unknown, Bitrix24InvalidGrant when
        the refresh token is spent or revoked, Bitrix24PaymentRequired, Bitrix24PortalUnavailable,
        Bitrix24InvalidClient for the other permanent refusals.
        """
        params = {
            "grant_type": "refresh_token",
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            "refresh_token": refresh_token,
        }
        payload = self._request("GET", self.token_url, params)
        return TokenGrant.from_payload(payload, now=self._now())

    def app_info(self, access_token: str) -> AppInfo:
        """app.info on the OAuth server for ``access_token``: which app, portal and user it belongs to."""
        try:
            payload = self._request("POST", self.rest_url + "app.info", {"auth": access_token})
        except Bitrix24TransportError:
            # A read: safe to repeat once (a pooled keep-alive connection the server had closed
            # fails this way without the request ever being processed).
            payload = self._request("POST", self.rest_url + "app.info", {"auth": access_token})
        result = payload.get("result")
        if not isinstance(result, Mapping):
            raise Bitrix24ServerError("ERROR_UNEXPECTED_ANSWER", "app.info answered without a result")
        return AppInfo.from_result(result)

    # --- plumbing ------------------------------------------------------------------------------

    def _request(self, method: str, url: str, params: dict[str, str]) -> dict[str, Any]:
        """GET with query parameters (the token endpoint, as documented) or POST with a form body.

        Failures are not chained to requests' exception: its message repeats the URL, and the
        token endpoint's query carries client_secret and the refresh token.
        """
        session = http.thread_session(ca_bundle=self.config.ca_bundle)
        location = {"params": params} if method == "GET" else {"data": params}
        try:
            response = session.request(
                method,
                url,
                timeout=self.config.timeout,
                allow_redirects=False,
                verify=http.verify(self.config.ca_bundle),
                **location,  # type: ignore[arg-type]
            )
        except requests.RequestException as e:
            raise transport_error(e, url) from None
        return parse_response(response)

    @staticmethod
    def _raise_for_error(response: requests.Response) -> requests.Response:
        parse_response(response)
        return response


def parse_response(response: requests.Response) -> dict[str, Any]:
    """The JSON body of a successful answer, or the matching exception (code first, status second).

    ``wrong_client`` arrives with HTTP 200: the code, not the status, decides. A 4xx without a code
    is Bitrix24ApiError, never an auth verdict (see :func:`responses.answer_payload`).
    """
    return answer_payload(response, method="oauth", status_decides=False)
