"""The one place that hands out HTTP sessions for Bitrix24 (portals and OAuth servers).

Certificate verification is always on; BITRIX24_CA_BUNDLE adds a CA (the sandbox's) to trust.
Redirects are never followed automatically: a 302 from a portal means it was renamed, and the
caller decides whether the new host is trusted.
"""

from __future__ import annotations

import threading

import requests
from requests.adapters import HTTPAdapter

USER_AGENT = "bitrix24-portals/0.1 (+python-requests)"

_local = threading.local()


def make_session(*, ca_bundle: str = "", pool_size: int = 32) -> requests.Session:
    session = requests.Session()
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    # Callers pass allow_redirects=False on every request. max_redirects must stay above 0:
    # requests raises TooManyRedirects for max_redirects=0 even with allow_redirects=False
    # (it pre-computes the next hop), which would hide a renamed portal's 302.
    session.max_redirects = 1
    if ca_bundle:
        session.verify = ca_bundle
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
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
