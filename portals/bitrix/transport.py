"""One POST to a portal → the parsed envelope, or our exception. The choke point.

Every HTTP failure of a REST call becomes a :mod:`exceptions` class here and nowhere else,
chained with ``from e``. Bodies are JSON (Bitrix24's recommended form for nested parameters and
the only form REST 3.0 accepts); the token travels in the body, never in a query string, so it
never reaches access logs. A 302 means the portal was renamed: ``credentials.moved()`` decides
whether to follow, then the same POST is repeated once to the new host.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from .credentials import Credentials
from .exceptions import (
    Bitrix24ConfigError,
    Bitrix24PortalMoved,
    Bitrix24ServerError,
    Bitrix24Timeout,
    Bitrix24TransportError,
)
from .http import thread_session, verify
from .responses import answer_payload

_REDIRECTS = (301, 302, 303, 307, 308)

_proxies: dict[tuple[str, str], dict[str, str]] = {}


def _proxies_for(url: str) -> dict[str, str]:
    """HTTP(S)_PROXY / NO_PROXY for this URL's scheme and host (requests' own rules), cached.

    REST sessions don't trust the environment: with ``trust_env`` requests re-reads every proxy
    variable, the no_proxy list and ~/.netrc on each request — about a millisecond of CPU per call,
    most of a call's client-side cost. Our requests carry their CA (``verify``) and credentials (in
    the body) explicitly, so the only environment setting that matters is the proxy, resolved here
    once per scheme and host; a change of proxy variables takes effect in a new process.
    """
    parts = urlsplit(url)
    key = (parts.scheme, parts.netloc)
    found = _proxies.get(key)
    if found is None:
        found = _proxies[key] = dict(requests.utils.get_environ_proxies(url))
    return found


@dataclass(frozen=True)
class TransportConfig:
    """Settings the Django layer passes in (this package never reads Django settings)."""

    ca_bundle: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 65.0


@dataclass
class Response:
    """A successful envelope: ``payload`` holds ``result``, ``time``, maybe ``next``/``total``."""

    payload: dict[str, Any]
    status: int
    latency: float
    replayed: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def result(self) -> Any:
        return self.payload.get("result")

    @property
    def time(self) -> dict[str, Any]:
        value = self.payload.get("time")
        return value if isinstance(value, dict) else {}


def method_url(endpoint: str, method: str, *, v3: bool = False) -> str:
    """``endpoint`` + method; REST 3.0 lives under ``/rest/api/`` (webhooks: ``/rest/api/<user>/<code>/``)."""
    if v3:
        scheme, _, rest = endpoint.partition("://")
        host, _, path = rest.partition("/")
        if not path.startswith("rest/"):
            raise Bitrix24ConfigError("REST 3.0 needs an endpoint under /rest/")
        endpoint = f"{scheme}://{host}/rest/api/{path[len('rest/') :]}"
    return endpoint + method


class Transport:
    """Sends REST calls; thread-safe (one requests.Session per thread, from :mod:`http`)."""

    def __init__(self, config: TransportConfig | None = None):
        self.config = config or TransportConfig()

    def post(
        self,
        credentials: Credentials,
        method: str,
        params: dict[str, Any] | list[Any] | None = None,
        *,
        v3: bool = False,
        idempotency_key: str | None = None,
        member_id: str | None = None,
        token: str | None = None,
    ) -> Response:
        """POST ``method`` with ``params``; returns the success envelope.

        ``token`` is the access token to send (the caller's read, so it knows which token a
        refusal was about); by default, and after following a rename, the credentials' current one.
        It travels as ``auth`` in the JSON object; a JSON array (REST 3.0's batch) has no place for
        it, so there it goes in an ``Authorization: Bearer`` header — never in the URL.

        Raises a Bitrix24ApiError subclass for an error envelope (code first, status second),
        Bitrix24TransportError/Bitrix24Timeout when no usable answer arrived (``sent`` tells
        whether the call may have run), Bitrix24PortalMoved when the portal moved and the
        credentials refused to follow.
        """
        for hop in range(2):
            if hop or token is None:
                token = credentials.access_token()
            headers = {"Content-Type": "application/json"}
            body: dict[str, Any] | list[Any]
            if isinstance(params, list):
                body = list(params)
                if token is not None:
                    headers["Authorization"] = f"Bearer {token}"
            else:
                body = dict(params or {})
                if token is not None:
                    body["auth"] = token
            url = method_url(credentials.endpoint(), method, v3=v3)
            if idempotency_key is not None:
                headers["Idempotency-Key"] = idempotency_key
            secret_hint = _secret_of(credentials.endpoint())
            started = time.monotonic()
            try:
                session = thread_session(ca_bundle=self.config.ca_bundle, trust_env=False)
                # Prepared here and sent with Session.send: Session.request would merge session
                # settings, cookies and hooks into every request (~10% of a call's client CPU)
                # for nothing — our headers are all known, and Bitrix24 REST sets no cookies.
                request = requests.PreparedRequest()
                request.prepare(
                    method="POST",
                    url=url,
                    headers={**session.headers, **headers},
                    data=json.dumps(body, separators=(",", ":"), default=str).encode(),
                )
                raw = session.send(
                    request,
                    timeout=(self.config.connect_timeout, self.config.read_timeout),
                    allow_redirects=False,
                    verify=verify(self.config.ca_bundle),
                    proxies=_proxies_for(url),
                    stream=False,
                    cert=None,
                )
            except requests.RequestException as e:
                raise transport_error(e, url) from _scrubbed(e, secret_hint)
            latency = time.monotonic() - started
            if raw.status_code in _REDIRECTS:
                new_domain = urlsplit(raw.headers.get("Location", "")).netloc
                if not new_domain:
                    raise Bitrix24ServerError(
                        "ERROR_UNEXPECTED_ANSWER", "redirect without a Location", status=raw.status_code
                    )
                if hop == 1:
                    raise Bitrix24PortalMoved(new_domain, method=method, member_id=member_id)
                credentials.moved(new_domain)  # raises if the new host isn't trusted
                continue
            return _parse(raw, method=method, latency=latency, member_id=member_id)
        raise AssertionError("unreachable")  # pragma: no cover


def _parse(raw: requests.Response, *, method: str, latency: float, member_id: str | None) -> Response:
    payload = answer_payload(raw, method=method, member_id=member_id)
    return Response(
        payload=payload,
        status=raw.status_code,
        latency=latency,
        replayed=raw.headers.get("Idempotent-Replayed", "").lower() == "true",
    )


def _secret_of(endpoint: str) -> str:
    """A webhook's secret path segment (``/rest/<user>/<secret>/``), or '' for OAuth endpoints."""
    segments = [s for s in urlsplit(endpoint).path.split("/") if s]
    return segments[2] if len(segments) >= 3 and segments[0] == "rest" else ""


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _scrubbed(e: Exception, secret: str) -> Exception:
    """The cause, with the webhook secret removed from its message (requests echoes the URL)."""
    if secret:
        e.args = tuple(_redact(str(a), secret) for a in e.args)
    return e


# getaddrinfo's answers that the name does not exist (NXDOMAIN, no address records): asking again
# gets the same answer. EAI_AGAIN (the resolver is unreachable or timed out) may heal: retried.
_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def transport_error(e: requests.RequestException, url: str) -> Bitrix24TransportError | Bitrix24ConfigError:
    """Classify a requests failure by whether the request may have reached the server.

    An untrusted certificate or a host name that doesn't exist is a Bitrix24ConfigError: neither
    heals by retrying, so the caller fails at once instead of backing off for seconds.
    The message names the host only: URLs carry webhook secrets, query strings refresh tokens.
    """
    host = urlsplit(url).netloc
    kind = type(e).__name__
    for cause in _causes(e):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return Bitrix24ConfigError(
                f"TLS: the certificate of {host} is not trusted ({cause.verify_message}); if your own "
                "CA signed it, set BITRIX24_CA_BUNDLE to that CA's PEM file"
            )
        if isinstance(cause, socket.gaierror) and cause.errno in _NO_SUCH_NAME:
            return Bitrix24ConfigError(f"DNS: the host {urlsplit(url).hostname!r} does not exist")
    if isinstance(e, requests.ConnectTimeout):
        return Bitrix24Timeout(f"{kind} connecting to {host}", sent=False)
    if isinstance(e, requests.Timeout):
        return Bitrix24Timeout(f"{kind}: no answer from {host} in time", sent=True)
    if isinstance(e, requests.exceptions.SSLError):
        return Bitrix24TransportError(f"TLS failure with {host}", sent=False)
    if isinstance(e, requests.ConnectionError):
        # A refused/unresolvable connection never carried the body; anything else (reset,
        # remote closed mid-answer) may have run the method.
        reason = e.args[0] if e.args else None
        inner = getattr(reason, "reason", reason)
        if isinstance(inner, urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError):
            return Bitrix24TransportError(f"cannot connect to {host}", sent=False)
        return Bitrix24TransportError(f"{kind}: connection to {host} lost", sent=True)
    return Bitrix24TransportError(f"{kind} talking to {host}", sent=True)


def _causes(e: BaseException) -> Iterator[BaseException]:
    """``e`` and what it wraps, each once: requests keeps urllib3's error in ``args[0]``, urllib3
    its cause in ``reason`` and ``__cause__`` (ssl.SSLCertVerificationError, socket.gaierror)."""
    seen: set[int] = set()
    todo: list[object] = [e]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        first = current.args[0] if current.args else None
        todo += [getattr(current, "reason", None), first, current.__cause__, current.__context__]
