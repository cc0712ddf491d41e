"""The OAuth server (authorization code, refresh grant, app.info) and the portal's consent page.

Tokens rotate on every refresh: the used refresh token dies, and a reused one gets
``invalid_grant`` and is counted. The access token issued with it lives on until its own expiry,
unless ``config.refresh_revokes_access`` asks for the old docs' rule (it dies at once; protocol
§2.6, §10.15; docs/sandbox.md says why the default is what it is). Errors use the OAuth body
``{"error", "error_description"}`` with the statuses the SDKs expect (protocol §2.8): an unknown
``client_id`` is ``wrong_client`` (HTTP 200), a known one with a wrong secret ``invalid_client``
(400), as the official Python SDK's integration tests observe on a real OAuth server.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import secrets
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from sandbox.extensions import portal_of, sandbox_of
from sandbox.registry import RestError
from sandbox.state import AuthCode, Sandbox
from sandbox.store import PLANS, AppInstall, Portal
from sandbox.wire import DropConnection, drop_connection, error_response, json_response, read_params


def _oauth_error(code: str, description: str, status: int = 400) -> RestError:
    return RestError(code, description, status)


def find_app(sandbox: Sandbox, client_id: str, client_secret: str | None) -> list[tuple[Portal, AppInstall]]:
    """Installations of ``client_id`` (with a matching secret when one is given).

    Raises wrong_client (HTTP 200) for a client_id the server doesn't know and invalid_client
    (400) for a wrong secret (compared in constant time).
    """
    found = [(p, p.apps[client_id]) for p in sandbox.portals if client_id in p.apps]
    if not found and client_id != sandbox.config.client_id:
        raise _oauth_error("wrong_client", "Wrong client", 200)
    secret = found[0][1].client_secret if found else sandbox.config.client_secret
    if client_secret is not None and not hmac.compare_digest(secret.encode(), client_secret.encode()):
        raise _oauth_error("invalid_client", "Invalid client")
    return found


async def token(request: Request) -> Response:
    sandbox = sandbox_of(request)
    now = sandbox.clock.time()
    counted = sandbox.counters.oauth_answers
    if sandbox.faults.active("oauth", "oauth_down", now):
        counted["SERVICE_UNAVAILABLE"] += 1
        return HTMLResponse("<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>", 503)
    await _oauth_latency(sandbox, now)
    try:
        params = await read_params(request)
        body = await _grant(request, sandbox, params)
    except RestError as error:
        counted[error.code] += 1
        return error_response(error)
    except DropConnection:
        counted["DROPPED"] += 1
        raise
    counted["OK"] += 1
    return json_response(body)


async def _oauth_latency(sandbox: Sandbox, now: float) -> None:
    """The ``oauth_latency`` fault: a slow OAuth server (the real one answers from another continent)."""
    slow = sandbox.faults.take("oauth", frozenset({"oauth_latency"}), now)
    if slow is not None:
        await asyncio.sleep(float(slow.params.get("delay", 0.2)))


async def _grant(request: Request, sandbox: Sandbox, params: dict[str, Any]) -> dict[str, Any]:
    grant_type = str(params.get("grant_type", ""))
    client_id = str(params.get("client_id", ""))
    client_secret = params.get("client_secret")
    if not grant_type or not client_id or client_secret is None:
        raise _oauth_error("invalid_request", "Request parameters are missing")
    find_app(sandbox, client_id, str(client_secret))
    now = sandbox.clock.time()
    if grant_type == "authorization_code":
        code = sandbox.codes.pop(str(params.get("code", "")), None)
        if code is None or now >= code.expires:
            raise _oauth_error("invalid_grant", "Invalid authorization code")
        if code.client_id != client_id:
            raise _oauth_error("wrong_client", "Wrong client", 200)
        portal = sandbox.by_member[code.member_id]
        app = _installed_app(portal, client_id)
        issued = sandbox.token_issue(portal, app, code.user_id, grant="authorization_code")
        return sandbox.token_response(issued, portal, app)
    if grant_type == "refresh_token":
        value = params.get("refresh_token")
        if not value:
            raise _oauth_error("invalid_request", 'No "refresh_token" parameter found')
        old = sandbox.refresh_tokens.get(str(value))
        if old is None:
            raise _oauth_error("invalid_grant", "Invalid refresh token")
        if old.client_id != client_id:
            raise _oauth_error("wrong_client", "Wrong client", 200)
        portal = sandbox.by_member[old.member_id]
        app = _installed_app(portal, client_id)
        if old.refresh_used:
            sandbox.counters.refresh_reuse[old.member_id] += 1
            raise _oauth_error("invalid_grant", "Refresh token has already been used")
        if now >= old.refresh_expires:
            raise _oauth_error("invalid_grant", "Refresh token has expired")
        old.refresh_used = True
        if sandbox.config.refresh_revokes_access:
            old.access_valid = False
        issued = sandbox.token_issue(portal, app, old.user_id, grant="refresh_token")
        if sandbox.faults.take(portal.member_id, frozenset({"oauth_lost"}), now):
            # The pair was rotated server-side; the client never hears about the new one.
            await drop_connection(request)
        return sandbox.token_response(issued, portal, app)
    raise _oauth_error("invalid_request", f"Unsupported grant_type {grant_type[:32]!r}")


def _installed_app(portal: Portal, client_id: str) -> AppInstall:
    app = portal.apps.get(client_id)
    if app is None or not app.present:
        raise _oauth_error("invalid_client", "Application not installed")
    if app.payment_expired:
        raise _oauth_error("PAYMENT_REQUIRED", "Payment required", 401)
    return app


def license_fields(portal: Portal) -> dict[str, str]:
    plan = PLANS[portal.plan]
    return {
        "LICENSE": f"en_{plan['license_family']}",
        "LICENSE_TYPE": plan["license_type"],
        "LICENSE_FAMILY": plan["license_family"],
    }


async def server_rest(request: Request) -> Response:
    """REST on the OAuth server: only ``app.info`` (the trusted source of status and payment)."""
    sandbox = sandbox_of(request)
    if sandbox.faults.active("oauth", "oauth_down", sandbox.clock.time()):
        return HTMLResponse("<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>", 503)
    await _oauth_latency(sandbox, sandbox.clock.time())
    name = request.path_params["path"].strip("/").lower().removesuffix(".json")
    if name != "app.info":
        return error_response(RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404))
    try:
        params = await read_params(request)
        value = params.get("auth")
        token_row = sandbox.tokens.get(str(value)) if value else None
        if not value:
            raise RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
        if token_row is None or not token_row.access_valid:
            raise RestError("invalid_token", "Unable to get application by token", 401)
        if sandbox.clock.time() >= token_row.expires:
            raise RestError("expired_token", "The access token provided has expired", 401)
        portal = sandbox.by_member[token_row.member_id]
        app = portal.apps[token_row.client_id]
    except RestError as error:
        return error_response(error)
    return json_response(
        {
            "result": {
                "client_id": app.client_id,
                "scope": ",".join(app.scope),
                "expires": int(token_row.expires),
                "install": {
                    "installed": app.present and app.installed,
                    "version": app.version,
                    "status": app.status,
                    "payment_expired": "Y" if app.payment_expired else "N",
                    "days": app.days,
                    "scope": ",".join(app.scope),
                    "domain": portal.domain,
                    "uri": f"https://{portal.domain}",
                    "client_endpoint": portal.client_endpoint,
                    "member_id": portal.member_id,
                    "member_type": "MASTER",
                    **license_fields(portal),
                },
                "user_id": token_row.user_id,
            }
        }
    )


CONSENT_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Authorization</title></head>
<body><h1>{title}</h1><p>The application requests access to this account ({domain}).</p>
<form method="post" action="/oauth/authorize/">
<input type="hidden" name="client_id" value="{client_id}"><input type="hidden" name="state" value="{state}">
<input type="hidden" name="user_id" value="{user_id}">
<button type="submit" name="consent" value="Y">Allow</button></form></body></html>"""


async def authorize(request: Request) -> Response:
    """``/oauth/authorize/`` on the portal: a consent page (GET), then a redirect with a code (POST).

    Failures show a page and never redirect, as Bitrix24 does. ``user_id`` (default: the admin)
    stands in for the logged-in user the real portal would know from its session.
    """
    sandbox = sandbox_of(request)
    portal = portal_of(request)
    params = await read_params(request)
    client_id = str(params.get("client_id", ""))
    state = str(params.get("state", ""))
    try:
        user_id = int(params.get("user_id", portal.admin_user_id))
    except (TypeError, ValueError):
        user_id = portal.admin_user_id
    app = portal.apps.get(client_id)
    if app is None or not app.present:
        return HTMLResponse("<html><body><h1>Error</h1><p>Application not installed</p></body></html>", 400)
    if user_id not in portal.users:
        return HTMLResponse("<html><body><h1>Error</h1><p>Unknown user</p></body></html>", 400)
    if request.method == "GET":
        page = CONSENT_PAGE.format(
            title="Authorization",
            domain=html.escape(portal.domain),
            client_id=html.escape(client_id),
            state=html.escape(state),
            user_id=user_id,
        )
        return HTMLResponse(page)
    code = secrets.token_hex(35)
    sandbox.codes[code] = AuthCode(
        code=code,
        member_id=portal.member_id,
        client_id=client_id,
        user_id=user_id,
        expires=sandbox.clock.time() + sandbox.config.code_lifetime,
    )
    query = urlencode(
        {
            "code": code,
            "state": state,
            "domain": portal.domain,
            "member_id": portal.member_id,
            "scope": ",".join(app.scope),
            "server_domain": sandbox.oauth_host,
        }
    )
    return RedirectResponse(f"{sandbox.config.redirect_uri}?{query}", status_code=302)
