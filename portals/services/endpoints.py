"""Validation of the endpoints an install (or a rename) claims, before anything is trusted."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from portals.conf import app_settings

from ..bitrix.exceptions import Bitrix24ConfigError
from ..bitrix.oauth import oauth_server_for

# member_id is 32 hex characters in every sample; letters, digits and a few separators are allowed.
_MEMBER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def normalise_member_id(member_id: object) -> str:
    """A claimed member_id lower-cased, or "" when it can't be one (the claim is then refused)."""
    text = str(member_id or "")
    return text.lower() if _MEMBER_ID.match(text) else ""


def allowed_schemes() -> tuple[str, ...]:
    return ("https", "http") if app_settings.allow_http else ("https",)


def normalise_domain(domain: str) -> str:
    """``host[:port]`` lower-cased, without scheme, path or a trailing dot."""
    domain = (domain or "").strip().lower()
    if "://" in domain:
        domain = urlsplit(domain).netloc
    return domain.split("/", 1)[0].rstrip(".")


def client_endpoint_for(domain: str, *, https: bool = True) -> str:
    return f"{'https' if https else 'http'}://{normalise_domain(domain)}/rest/"


def endpoints_check(*, domain: str, client_endpoint: str, server_endpoint: str) -> tuple[str, str]:
    """The normalised (client_endpoint, server_endpoint) of a claim, or Bitrix24ConfigError.

    Rules (protocol §9, forged installs): both https (http only with BITRIX24_ALLOW_HTTP); the
    client endpoint is ``<scheme>://<domain>/rest/`` of the claimed domain itself; the server
    endpoint belongs to an allow-listed OAuth server.
    """
    domain = normalise_domain(domain)
    if not domain:
        raise Bitrix24ConfigError("no portal domain")
    client = urlsplit(client_endpoint or "")
    if client.scheme not in allowed_schemes():
        raise Bitrix24ConfigError("client_endpoint must use https")
    if normalise_domain(client.netloc) != domain:
        raise Bitrix24ConfigError("client_endpoint host does not match the portal domain")
    if client.path.rstrip("/") != "/rest" or client.query or client.fragment or client.username:
        raise Bitrix24ConfigError("client_endpoint must be <portal>/rest/")
    if urlsplit(server_endpoint or "").scheme not in allowed_schemes():
        raise Bitrix24ConfigError("server_endpoint must use https")
    base = oauth_server_for(server_endpoint, app_settings.oauth_servers)
    return f"{client.scheme}://{domain}/rest/", base + "rest/"
