"""Small HTTP helpers for the sandbox tests: every call goes over real HTTPS to the subprocess."""

from __future__ import annotations

from typing import Any

import requests

from sandbox.testing import SandboxServer


def webhook(sandbox: SandboxServer, portal: int = 1) -> str:
    return str(sandbox.portal(portal)["webhook_url"])


def hook_call(sandbox: SandboxServer, method: str, portal: int = 1, **params: Any) -> requests.Response:
    """POST a JSON body to the portal's inbound webhook."""
    return requests.post(webhook(sandbox, portal) + method, json=params, verify=sandbox.ca_bundle, timeout=30)


def issue(sandbox: SandboxServer, portal: int = 1, **extra: Any) -> dict[str, Any]:
    """A fresh OAuth pair for the installed app (control API)."""
    return dict(sandbox.control("oauth/issue", member_id=sandbox.portal(portal)["member_id"], **extra))


def app_call(
    sandbox: SandboxServer, method: str, token: str, portal: int = 1, **params: Any
) -> requests.Response:
    """POST a JSON body with ``auth`` to ``/rest/<method>`` of the portal."""
    url = sandbox.portal(portal)["client_endpoint"] + method
    return requests.post(url, json={"auth": token, **params}, verify=sandbox.ca_bundle, timeout=30)


def token_get(sandbox: SandboxServer, **params: Any) -> requests.Response:
    return requests.get(
        sandbox.state["oauth_server"] + "oauth/token/", params=params, verify=sandbox.ca_bundle, timeout=30
    )


def refresh(sandbox: SandboxServer, refresh_token: str) -> requests.Response:
    return token_get(
        sandbox,
        grant_type="refresh_token",
        client_id=sandbox.state["client_id"],
        client_secret=sandbox.state["client_secret"],
        refresh_token=refresh_token,
    )


def member(sandbox: SandboxServer, portal: int = 1) -> str:
    return str(sandbox.portal(portal)["member_id"])
