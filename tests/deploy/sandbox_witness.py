"""The sandbox with one more control route, ``GET /_sandbox/witness/issued``: every secret it issued
since its last reset (access and refresh tokens, application tokens, client secrets, webhook
secrets), so a test can search the app's logs for each. Run as ``python -m tests.deploy.sandbox_witness``
(the sandbox's own command line)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox import extensions


async def issued(request: Request) -> JSONResponse:
    world: Any = extensions.sandbox_of(request)
    secrets: set[str] = {world.config.client_secret}
    for token in world.tokens.values():
        secrets |= {token.access_token, token.refresh_token}
    for portal in world.portals:
        for app in portal.apps.values():
            secrets |= {app.application_token, app.client_secret}
        for webhook in getattr(portal, "webhooks", {}).values():
            secrets.add(webhook.secret)
    return JSONResponse({"secrets": sorted(s for s in secrets if s)})


extensions.control_routes.append(Route("/witness/issued", issued, methods=["GET"]))

if __name__ == "__main__":
    from sandbox.server import main

    main()
