"""The ASGI application: one callable for every listener, dispatching by the local address.

* ``/_sandbox/...`` on the control host (``config.host``, 127.0.0.1) → the control API;
* any other path on the control host → the OAuth server (``/oauth/token/``, ``/rest/app.info``);
* a portal's address → that portal (``/rest/...``, ``/oauth/authorize/``, extension routes),
  after checking that the Host header names that portal. A renamed portal's old host answers
  302 with ``Location`` on the new host for every path;
* plain http sent to the HTTPS port → 307 to the same address's http listener.

The portal is identified by the socket's local address (``scope["server"]``), as the real
service is by its host name, so per-portal limits and host checks behave as on the wire.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from sandbox import control, extensions, oauth
from sandbox.rest import rest_endpoint
from sandbox.rest_v3.endpoint import rest_v3_endpoint
from sandbox.state import Sandbox
from sandbox.wire import DropConnection


def _starlette(sandbox: Sandbox, routes: list[Any]) -> Starlette:
    app = Starlette(routes=routes)
    app.state.sandbox = sandbox
    return app


class SandboxApp:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.portal_app = _starlette(
            sandbox,
            [
                # REST 3.0 first: "/rest/{path}" would take "/rest/api/..." as a webhook path.
                Route("/rest/api/{path:path}", rest_v3_endpoint, methods=["GET", "POST"]),
                Route("/rest/{path:path}", rest_endpoint, methods=["GET", "POST"]),
                Route("/oauth/authorize/", oauth.authorize, methods=["GET", "POST"]),
                *extensions.portal_routes,
            ],
        )
        self.oauth_app = _starlette(
            sandbox,
            [
                Route("/oauth/token/", oauth.token, methods=["GET", "POST"]),
                Route("/rest/{path:path}", oauth.server_rest, methods=["GET", "POST"]),
                *extensions.oauth_routes,
            ],
        )
        self.control_app = _starlette(
            sandbox, [Mount("/_sandbox", routes=[*control.routes, *extensions.control_routes])]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        sandbox = self.sandbox
        local = scope["server"][0] if scope.get("server") else ""
        host = _header(scope, b"host")
        try:
            if (
                scope["scheme"] == "http"
                and scope.get("server")
                and scope["server"][1] == sandbox.config.port
            ):
                await _to_http_listener(scope, receive, send, http_port=sandbox.config.http_port)
                return
            if host in sandbox.renamed:
                moved = sandbox.renamed[host]
                new_host = moved.domain if scope["scheme"] == "https" else moved.http_domain
                query = scope.get("query_string", b"").decode("latin-1")
                location = f"{scope['scheme']}://{new_host}{scope['path']}" + (f"?{query}" if query else "")
                await RedirectResponse(location, status_code=302)(scope, receive, send)
                return
            if local == sandbox.config.host:
                if scope["path"].startswith("/_sandbox/") or scope["path"] == "/_sandbox":
                    await self.control_app(scope, receive, send)
                else:
                    await self.oauth_app(scope, receive, send)
                return
            portal = sandbox.by_address.get(local)
            if portal is None or host not in (portal.domain, portal.http_domain):
                await PlainTextResponse("Unknown portal host", status_code=404)(scope, receive, send)
                return
            scope["sandbox.portal"] = portal
            await self.portal_app(scope, receive, send)
        except DropConnection:
            return


async def _to_http_listener(scope: Scope, receive: Receive, send: Send, *, http_port: int) -> None:
    """Plain http that reached the HTTPS port (server.TlsOrPlainServer): 307 to the http listener of
    the address it came to, as a real portal sends http to https. Development apps send browsers
    here (the app's BITRIX24_ALLOW_HTTP), because browsers refuse the sandbox's CA."""
    query = scope.get("query_string", b"").decode("latin-1")
    location = f"http://{scope['server'][0]}:{http_port}{scope['path']}" + (f"?{query}" if query else "")
    await RedirectResponse(location, status_code=307)(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""
