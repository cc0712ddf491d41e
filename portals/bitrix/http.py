"""The one place that hands out HTTP sessions for Bitrix24 (portals and OAuth servers).

Every session made here has the same guarantees: our User-Agent, JSON accepted, no retries inside
requests (our retries are split by cause), BITRIX24_CA_BUNDLE trusted on top of the system's CAs
(certificate verification is always on), and redirects never followed: a 3xx comes back to the
caller as it is. A 302 from a portal means it was renamed, and the caller decides whether the new
host is trusted; an OAuth server's redirect would carry the client secret to another host.
"""

from __future__ import annotations

import threading
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests_oauthlib import OAuth2Session

USER_AGENT = "bitrix24-portals/0.1 (+python-requests)"

_local = threading.local()


class _NoRedirects:
    """Never follow a redirect, whatever ``allow_redirects`` a caller (or a library) passes.

    requests follows what ``get_redirect_target`` names; naming nothing returns every 3xx to the
    caller. (``max_redirects = 0`` would not do: requests raises TooManyRedirects for it even
    with ``allow_redirects=False``, hiding a renamed portal's 302.)
    """

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


class Session(_NoRedirects, requests.Session):
    """requests.Session that never follows redirects."""


class OAuthSession(_NoRedirects, OAuth2Session):
    """requests-oauthlib's session (state, authorisation URL, token parsing), never following redirects."""


def verify(ca_bundle: str) -> str | bool:
    """The ``verify`` argument for every request: the extra CA bundle, else the system's CAs.

    Passed per request, not only set on the session: requests lets REQUESTS_CA_BUNDLE from the
    environment override a session's own ``verify``, which would silently drop the extra CA.
    """
    return ca_bundle or True


def _configure(session: requests.Session, *, ca_bundle: str, pool_size: int) -> None:
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    session.verify = verify(ca_bundle)
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def make_session(*, ca_bundle: str = "", pool_size: int = 32) -> requests.Session:
    session = Session()
    _configure(session, ca_bundle=ca_bundle, pool_size=pool_size)
    return session


def oauth_session(client_id: str, *, ca_bundle: str = "", **kwargs: Any) -> OAuth2Session:
    """An OAuth2Session for the code flow (``kwargs``: OAuth2Session's, e.g. ``state``).

    One per exchange and closed by the caller: it holds the flow's state.
    """
    session = OAuthSession(client_id, **kwargs)
    _configure(session, ca_bundle=ca_bundle, pool_size=1)
    return session


def thread_session(*, ca_bundle: str = "", trust_env: bool = True) -> requests.Session:
    """A session per thread, CA bundle and ``trust_env`` (requests.Session is not thread-safe to share).

    ``trust_env=False``: requests no longer re-reads proxy variables, no_proxy and ~/.netrc on every
    request; the caller then passes the proxies itself (the REST transport does).
    """
    sessions: dict[tuple[str, bool], requests.Session] = getattr(_local, "sessions", None) or {}
    _local.sessions = sessions
    key = (ca_bundle, trust_env)
    if key not in sessions:
        session = sessions[key] = make_session(ca_bundle=ca_bundle)
        session.trust_env = trust_env
    return sessions[key]
