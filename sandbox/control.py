"""The control API under ``/_sandbox/`` (outside the Bitrix24 namespace): tests and benchmarks
drive the world through it. Every endpoint takes and returns JSON; shapes are in docs/sandbox.md."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import extensions
from sandbox.extensions import sandbox_of
from sandbox.faults import Fault
from sandbox.methods.im import notifications_of
from sandbox.seed import company_generator, contact_generator, deal_generator, lead_generator
from sandbox.state import ALL_SCOPES, Sandbox, new_client_id, new_client_secret, new_webhook_secret
from sandbox.store import PLANS, EntityTable, Portal, Webhook


class ControlError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def _json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise ControlError("body must be JSON")
    if not isinstance(data, dict):
        raise ControlError("body must be a JSON object")
    return data


def _portal(sandbox: Sandbox, data: dict[str, Any]) -> Portal:
    member_id = data.get("member_id")
    if member_id is None and "portal" in data:
        index = int(data["portal"])
        if not 1 <= index <= len(sandbox.portals):
            raise ControlError(f"no portal {index}", 404)
        return sandbox.portals[index - 1]
    portal = sandbox.by_member.get(str(member_id))
    if portal is None:
        raise ControlError("unknown member_id", 404)
    return portal


def endpoint(handler: Any) -> Any:
    async def wrapped(request: Request) -> Response:
        sandbox = sandbox_of(request)
        try:
            data = await _json(request) if request.method != "GET" else dict(request.query_params)
            result = handler(sandbox, data)
            if hasattr(result, "__await__"):
                result = await result
        except ControlError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        except (KeyError, ValueError, TypeError) as error:
            return JSONResponse({"error": f"bad request: {error}"}, status_code=400)
        return JSONResponse(result)

    return wrapped


def info(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "ready": True,
        "portals": len(sandbox.portals),
        "now": sandbox.clock.time(),
        "config": sandbox.config.as_dict(),
    }


def state(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    return sandbox.state(sandbox.ca_bundle)


def reset(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    sandbox.reset()
    for hook in extensions.on_reset:
        hook(sandbox)
    return {"reset": True}


def counters(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    return sandbox.counters.as_json(sandbox.bucket_levels())


def clock(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    if "offset" in data:
        sandbox.clock.offset = float(data["offset"])
    if "advance" in data:
        sandbox.clock.advance(float(data["advance"]))
    return {"offset": sandbox.clock.offset, "now": sandbox.clock.time()}


def config(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    try:
        sandbox.config.update(data)
    except KeyError as error:
        raise ControlError(f"not a runtime setting: {error.args[0]}")
    if "concurrency" in data:
        sandbox.semaphores.clear()
    return sandbox.config.as_dict()


def seed(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    """Replace the generated CRM rows of one portal (or all) with the given counts."""
    portals = [_portal(sandbox, data)] if ("member_id" in data or "portal" in data) else sandbox.portals
    counts = {}
    for portal in portals:
        users = list(portal.users)
        row_seed = int(data.get("seed", sandbox.config.seed)) * 1_000_003 + portal.index
        contacts = int(data.get("contacts", len(portal.table("contact"))))
        companies = int(data.get("companies", len(portal.table("company"))))
        generators = {
            "deal": deal_generator(row_seed, users, contacts, companies),
            "lead": lead_generator(row_seed, users),
            "contact": contact_generator(row_seed, users, companies),
            "company": company_generator(row_seed, users),
        }
        for entity, generator in generators.items():
            key = entity + "s" if entity != "company" else "companies"
            if key in data:
                portal.tables[entity] = EntityTable(generator, int(data[key]))
        counts[portal.member_id] = {e: len(t) for e, t in portal.tables.items()}
    return {"counts": counts}


def faults_add(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    """``{"member_id"|"portal"|"scope": "oauth", "kind", "count", "seconds", ...params}``."""
    scope = "oauth" if data.get("scope") == "oauth" else _portal(sandbox, data).member_id
    kind = str(data["kind"])
    params = {
        k: v for k, v in data.items() if k not in ("member_id", "portal", "scope", "kind", "count", "seconds")
    }
    count = int(data["count"]) if data.get("count") is not None else None
    until = sandbox.clock.time() + float(data["seconds"]) if data.get("seconds") is not None else None
    fault = Fault(kind=kind, count=count, until=until, params=params)
    sandbox.faults.add(scope, fault)
    if kind == "oauth_down" and params.get("mode", "refuse") == "refuse" and sandbox.listeners is not None:
        sandbox.listeners.oauth_down(until)
    return {"scope": scope, "fault": fault.as_json()}


def faults_clear(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    scope = None
    if data.get("scope") == "oauth":
        scope = "oauth"
    elif "member_id" in data or "portal" in data:
        scope = _portal(sandbox, data).member_id
    sandbox.faults.clear(scope)
    if scope in (None, "oauth") and sandbox.listeners is not None:
        sandbox.listeners.oauth_up()
    return {"cleared": scope or "all"}


def faults_list(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    return sandbox.faults.as_json(sandbox.clock.time())


def oauth_issue(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    """Mint a token pair as if the app had just been installed by ``user_id`` (default: admin)."""
    portal = _portal(sandbox, data)
    client_id = str(data.get("client_id") or sandbox.config.client_id)
    app = portal.apps.get(client_id)
    if app is None or not app.present:
        raise ControlError("app not installed on this portal", 409)
    user_id = int(data.get("user_id") or portal.admin_user_id)
    if user_id not in portal.users:
        raise ControlError("unknown user_id", 404)
    token = sandbox.token_issue(portal, app, user_id, grant="issue")
    return {**sandbox.token_response(token, portal, app), "application_token": app.application_token}


def _app(sandbox: Sandbox, portal: Portal, data: dict[str, Any]) -> str:
    return str(data.get("client_id") or sandbox.config.client_id)


def app_install(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    portal = _portal(sandbox, data)
    client_id = _app(sandbox, portal, data)
    old = portal.apps.get(client_id)
    secret = old.client_secret if old else sandbox.config.client_secret
    app = sandbox.app_install(
        portal,
        client_id=client_id,
        client_secret=secret,
        status=str(data.get("status", "F")),
        scope=data.get("scope"),
        installed=bool(data.get("installed", True)),
    )
    return _app_json(app)


def app_uninstall(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    portal = _portal(sandbox, data)
    app = sandbox.app_uninstall(portal, _app(sandbox, portal, data), clean=bool(data.get("clean", False)))
    if app is None:
        raise ControlError("app was never installed here", 404)
    return _app_json(app)


def app_payment(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    """``{"member_id", "expired": bool, "status": "P"|"T"|..., "days": int}``."""
    portal = _portal(sandbox, data)
    app = portal.apps.get(_app(sandbox, portal, data))
    if app is None:
        raise ControlError("app not installed", 404)
    app.payment_expired = bool(data.get("expired", not app.payment_expired))
    if "status" in data:
        app.status = str(data["status"])
    if "days" in data:
        app.days = int(data["days"]) if data["days"] is not None else None
    return _app_json(app)


def _app_json(app: Any) -> dict[str, Any]:
    return {
        "client_id": app.client_id,
        "present": app.present,
        "installed": app.installed,
        "status": app.status,
        "payment_expired": app.payment_expired,
        "scope": app.scope,
        "version": app.version,
    }


def local_app(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    """Register and install a local app (status L) on one portal; returns its credentials."""
    portal = _portal(sandbox, data)
    client_id = new_client_id("local")
    secret = new_client_secret()
    app = sandbox.app_install(
        portal, client_id=client_id, client_secret=secret, status="L", scope=data.get("scope")
    )
    return {**_app_json(app), "client_secret": secret}


def webhook(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    portal = _portal(sandbox, data)
    user_id = int(data.get("user_id") or portal.admin_user_id)
    if user_id not in portal.users:
        raise ControlError("unknown user_id", 404)
    secret = new_webhook_secret()
    scope = list(data.get("scope") or ALL_SCOPES)
    portal.webhooks[(user_id, secret)] = Webhook(user_id=user_id, secret=secret, scope=scope)
    return {"url": f"https://{portal.domain}/rest/{user_id}/{secret}/", "scope": scope}


def portal_delete(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    portal = _portal(sandbox, data)
    portal.deleted = bool(data.get("deleted", True))
    return {"member_id": portal.member_id, "deleted": portal.deleted}


def portal_plan(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    portal = _portal(sandbox, data)
    plan = str(data["plan"])
    if plan not in PLANS:
        raise ControlError(f"plan must be one of {sorted(PLANS)}")
    portal.plan = plan
    return {"member_id": portal.member_id, "plan": plan}


async def portal_rename(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    """Move a portal to a new host; the old host answers 302 to the new one for every path."""
    portal = _portal(sandbox, data)
    if sandbox.listeners is None:
        raise ControlError("renaming needs the server's listeners", 409)
    old_domain = await sandbox.portal_rename(portal)
    return {
        "member_id": portal.member_id,
        "domain": portal.domain,
        "client_endpoint": portal.client_endpoint,
        "old_domain": old_domain,
    }


def tokens_revoke(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    portal = _portal(sandbox, data)
    revoked = 0
    for token in list(sandbox.tokens.values()):
        if token.member_id == portal.member_id and token.access_valid:
            sandbox.token_revoke(token)
            revoked += 1
    return {"revoked": revoked}


def notifications(sandbox: Sandbox, data: dict[str, Any]) -> dict[str, Any]:
    """``{member_id | portal, user_id?}`` → the notifications apps sent (im.notify.system.add)."""
    notes = notifications_of(_portal(sandbox, data))
    if data.get("user_id"):
        notes = [n for n in notes if n["USER_ID"] == int(data["user_id"])]
    return {"notifications": notes}


routes = [
    Route("/", endpoint(info), methods=["GET"]),
    Route("/state", endpoint(state), methods=["GET"]),
    Route("/reset", endpoint(reset), methods=["POST"]),
    Route("/counters", endpoint(counters), methods=["GET"]),
    Route("/clock", endpoint(clock), methods=["GET", "POST"]),
    Route("/config", endpoint(config), methods=["POST"]),
    Route("/seed", endpoint(seed), methods=["POST"]),
    Route("/faults", endpoint(faults_add), methods=["POST"]),
    Route("/faults", endpoint(faults_list), methods=["GET"]),
    Route("/faults/clear", endpoint(faults_clear), methods=["POST"]),
    Route("/oauth/issue", endpoint(oauth_issue), methods=["POST"]),
    Route("/app/install", endpoint(app_install), methods=["POST"]),
    Route("/app/uninstall", endpoint(app_uninstall), methods=["POST"]),
    Route("/app/payment", endpoint(app_payment), methods=["POST"]),
    Route("/app/local", endpoint(local_app), methods=["POST"]),
    Route("/webhook", endpoint(webhook), methods=["POST"]),
    Route("/portal/delete", endpoint(portal_delete), methods=["POST"]),
    Route("/portal/plan", endpoint(portal_plan), methods=["POST"]),
    Route("/portal/rename", endpoint(portal_rename), methods=["POST"]),
    Route("/tokens/revoke", endpoint(tokens_revoke), methods=["POST"]),
    Route("/notifications", endpoint(notifications), methods=["GET"]),
]
