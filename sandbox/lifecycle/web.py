"""HTTP surfaces of the lifecycle: the portal page (on every portal host, under /portal/) and the
control API (under /_sandbox/lifecycle/). Thin: parse, call a service, render.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from sandbox.extensions import portal_of, sandbox_of
from sandbox.hooks import DataChange, notify
from sandbox.lifecycle import core, service
from sandbox.lifecycle.errors import ActionError
from sandbox.lifecycle.payloads import FramePost
from sandbox.registry import RestError
from sandbox.seed import bitrix_datetime
from sandbox.state import Sandbox
from sandbox.store import Portal
from sandbox.wire import read_params

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SHIM = PACKAGE_ROOT / "static" / "bx24.js"
templates = Jinja2Templates(directory=str(PACKAGE_ROOT / "templates"))


# --- shared -----------------------------------------------------------------------------------------


def app_state(sb: Sandbox, portal: Portal) -> str:
    """ "not installed" / "uninstalled" / "installing" (installFinish pending) / "installed"."""
    app = core.app_for(sb, portal)
    if app is None:
        return "not installed"
    if not app.present:
        return "uninstalled"
    return "installed" if app.installed else "installing"


def _context(request: Request, **extra: Any) -> dict[str, Any]:
    sb, portal = sandbox_of(request), portal_of(request)
    app = core.app_for(sb, portal)
    regs = service.registrations(app) if app is not None else None
    return {
        "request": request,
        "portal": portal,
        "app": app,
        "app_state": app_state(sb, portal),
        "urls": core.runtime(sb).urls,
        "base": "",
        "flash": request.query_params.get("flash", ""),
        "placements": regs.placements if regs and app.present else [],
        "handlers": regs.handlers if regs and app.present else [],
        "offline_count": len(regs.offline.records) if regs and app.present else 0,
        "sample_deal": next(portal.table("deal").ids(), 1),
        **extra,
    }


def _render_frame(
    request: Request, *, title: str, action: str, frame: FramePost, user_id: int, note: str = ""
) -> Response:
    sb, portal = sandbox_of(request), portal_of(request)
    action_url = f"{action}{'&' if '?' in action else '?'}{urlencode(frame.query)}"
    # What the BX24 shim gets from getInitData: the frame's auth and context (same values as the POST).
    init = {
        **frame.query,
        "AUTH_ID": frame.body["AUTH_ID"],
        "REFRESH_ID": frame.body["REFRESH_ID"],
        "AUTH_EXPIRES": frame.body["AUTH_EXPIRES"],
        "MEMBER_ID": frame.body["member_id"],
        "PLACEMENT": frame.body["PLACEMENT"],
        "PLACEMENT_OPTIONS": json.loads(frame.body.get("PLACEMENT_OPTIONS", "{}")),
        "INSTALL": app_state(sb, portal) == "installing",
        "IS_ADMIN": True,
        "LANG": frame.query["LANG"],
    }
    return templates.TemplateResponse(
        request,
        "lifecycle/frame.html",
        _context(
            request,
            title=title,
            note=note,
            action=action_url,
            body=frame.body,
            init=init,
            page_session=core.runtime(sb).page_session_new(member_id=portal.member_id, user_id=user_id),
            app_origin=_origin(action),
            frame_name=f"{frame.query['DOMAIN']}|{frame.query['PROTOCOL']}|{frame.query['APP_SID']}",
        ),
        headers={"Cache-Control": "no-store"},
    )


def _origin(url: str) -> str:
    """scheme://host[:port] of the framed URL: the only origin the page posts frame secrets to."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _back(message: str) -> Response:
    return RedirectResponse(f"/portal/?{urlencode({'flash': message})}", status_code=303)


# --- the portal page -----------------------------------------------------------------------------------


async def portal_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "lifecycle/portal.html", _context(request))


async def portal_root(request: Request) -> Response:
    return RedirectResponse("/portal/", status_code=302)


async def app_frame(request: Request) -> Response:
    """The app in its iframe: the installer while installFinish is pending, else the app page."""
    sb, portal = sandbox_of(request), portal_of(request)
    state = app_state(sb, portal)
    if state == "not installed":
        return _back("The app is not installed on this portal yet: press “Install the app”, then open it.")
    if state == "uninstalled":
        return _back("The app was uninstalled from this portal: press “Install the app” to install it again.")
    urls = core.runtime(sb).urls
    frame = service.frame_build(sb, portal=portal)
    if state == "installing" and urls.installer:
        return _render_frame(
            request,
            title="Installing the app",
            action=urls.installer,
            frame=frame,
            note="The portal shows the installer until the app calls BX24.installFinish().",
            user_id=portal.admin_user_id,
        )
    return _render_frame(
        request, title="The app", action=urls.app_page, frame=frame, user_id=portal.admin_user_id
    )


async def placement_frame(request: Request) -> Response:
    """A widget: the placement's handler URL with PLACEMENT and PLACEMENT_OPTIONS (from the query:
    every query parameter but `handler` becomes an option, e.g. ?ID=5 → {"ID":"5"})."""
    sb, portal = sandbox_of(request), portal_of(request)
    code = request.path_params["code"].upper()
    if app_state(sb, portal) != "installed":
        return _back("Widgets are hidden until the app calls installFinish.")
    regs = service.registrations(core.app_for(sb, portal))
    candidates = [p for p in regs.placements if p.placement == code]
    index = int(request.query_params.get("handler", "0") or 0)
    if not candidates or not 0 <= index < len(candidates):
        return _back(f"No handler bound to {code}.")
    placement = candidates[index]
    options = {k: v for k, v in request.query_params.items() if k != "handler"}
    frame = service.frame_build(sb, portal=portal, placement=code, placement_options=options)
    return _render_frame(
        request,
        title=placement.title or code,
        action=placement.handler,
        frame=frame,
        user_id=portal.admin_user_id,
    )


async def portal_action(request: Request) -> Response:
    """The portal page's buttons; each redirects back to the page with a message."""
    sb, portal = sandbox_of(request), portal_of(request)
    form = await read_params(request)
    action = request.path_params["action"]
    try:
        if action == "install":
            if service.app_install_start(sb, portal=portal) is None:
                return _back("Installed (an app without UI: no installer).")
            return RedirectResponse("/portal/app/", status_code=303)
        if action == "update":
            result = service.app_update(sb, portal=portal)
            return _back(
                f"Version {result['version']}; ONAPPUPDATE queued for {result['queued']} handler(s)."
            )
        if action in ("payment-end", "payment-renew"):
            result = service.app_payment(sb, portal=portal, expired=action == "payment-end")
            return _back(f"Payment {'ended' if result['payment_expired'] else 'renewed'}.")
        if action == "uninstall":
            result = service.app_uninstall(sb, portal=portal, clean=form.get("clean") == "1")
            return _back(f"Uninstalled; ONAPPUNINSTALL queued for {result['queued']} handler(s).")
        if action == "rename":
            await service.portal_rename(sb, portal=portal)
            return RedirectResponse(
                f"{request.url.scheme}://{_listener_host(request, portal)}/portal/", status_code=303
            )
        if action in ("deal-add", "deal-update", "deal-delete"):
            return _back(crm_touch(sb, portal=portal, action=action, form=form))
    except (ActionError, RestError, ValueError) as exc:
        return _back(str(exc))
    return Response("unknown action", status_code=404)


def _listener_host(request: Request, portal: Portal) -> str:
    """The renamed portal's host on the listener this request came through (https or http)."""
    return portal.http_domain if request.url.scheme == "http" else portal.domain


def crm_touch(sb: Sandbox, *, portal: Portal, action: str, form: dict[str, Any]) -> str:
    """A person's CRM edit on the portal page: store it and announce it through the core's data-change
    hook, acting as the portal's admin, exactly as a REST write would."""
    table = portal.table("deal")
    # Dates in the portal's form, as every other date the sandbox returns (ISO 8601 with the offset).
    now = bitrix_datetime(core.now(sb))
    user = str(portal.admin_user_id)
    if action == "deal-add":
        template = dict(table.get(next(table.ids(), 0)) or {})
        template.update(
            TITLE=str(form.get("title") or "Deal from the portal page"),
            STAGE_ID="NEW",
            DATE_CREATE=now,
            DATE_MODIFY=now,
            MOVED_TIME=now,
            LAST_ACTIVITY_TIME=now,
            CREATED_BY_ID=user,
            MODIFY_BY_ID=user,
        )
        row_id = table.insert(template)
        event = "ONCRMDEALADD"
    else:
        try:
            row_id = int(str(form.get("id", "")).strip())
        except ValueError:
            raise ActionError("a deal ID is required")
        row = table.get(row_id)
        if row is None:
            raise ActionError(f"no deal {row_id}")
        if action == "deal-update":
            table.put(row_id, {**row, "DATE_MODIFY": now, "MODIFY_BY_ID": user})
            event = "ONCRMDEALUPDATE"
        else:
            table.delete(row_id)
            event = "ONCRMDEALDELETE"
    notify(DataChange(portal=portal, event=event, object_id=row_id, user_id=portal.admin_user_id))
    return f"{event} for deal {row_id}."


async def deliveries_json(request: Request) -> Response:
    sb, portal = sandbox_of(request), portal_of(request)
    return JSONResponse({"deliveries": core.runtime(sb).log.select(member_id=portal.member_id)[-200:]})


def _frame_user(request: Request, payload: dict[str, Any]) -> int | None:
    """The user whose frame the caller is the parent page of, else None. Proof: the page session
    rendered with the frame (``session``), or the frame's own access token (``auth``) while it lives."""
    sb, portal = sandbox_of(request), portal_of(request)
    session = core.runtime(sb).page_session(str(payload.get("session") or ""), member_id=portal.member_id)
    if session is not None:
        return session.user_id
    value = str(payload.get("auth") or "")
    token = sb.tokens.get(value)
    if token is None or token.member_id != portal.member_id or not token.access_valid:
        return None
    if token.client_id != sb.config.client_id or not hmac.compare_digest(token.access_token, value):
        return None
    return int(token.user_id)


async def bx24_install_finish(request: Request) -> Response:
    sb, portal = sandbox_of(request), portal_of(request)
    payload = await read_params(request)
    if _frame_user(request, payload) is None:
        return JSONResponse({"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}, 401)
    try:
        finished = service.app_install_finish(sb, portal=portal)
    except ActionError as exc:
        return JSONResponse({"error": "NOT_INSTALLED", "error_description": str(exc)}, 409)
    return JSONResponse({"result": True, "finished_now": finished})


async def bx24_refresh_auth(request: Request) -> Response:
    sb, portal = sandbox_of(request), portal_of(request)
    payload = await read_params(request)
    user_id = _frame_user(request, payload)
    if user_id is None:
        return JSONResponse({"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}, 401)
    fresh = core.mint(sb, portal=portal, user_id=user_id)
    return JSONResponse(
        {"AUTH_ID": fresh.access_token, "REFRESH_ID": fresh.refresh_token, "AUTH_EXPIRES": fresh.expires_in}
    )


async def bx24_js(request: Request) -> Response:
    return FileResponse(SHIM, media_type="application/javascript", headers={"Cache-Control": "no-cache"})


# --- control API -----------------------------------------------------------------------------------------


def _error(exc: Exception, status: int = 409) -> JSONResponse:
    return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=status)


async def _json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body:
        return dict(request.query_params)
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("a JSON object is expected")
    return data


def _portal(sb: Sandbox, data: dict[str, Any]) -> Portal:
    ref = data.get("portal", data.get("member_id", 1))
    return core.portal_find(sb, ref=ref)


async def control_settings(request: Request) -> Response:
    """GET: the app registration URLs and switches; POST: change them with {"urls": {...},
    "finish_mode": "auto"|"explicit", "delivery_timeout": s, "offline_extended": {portal: bool}}."""
    sb = sandbox_of(request)
    rt = core.runtime(sb)
    if request.method == "POST":
        try:
            data = await _json(request)
            core.urls_update(sb, data.get("urls") or {})
            if "finish_mode" in data:
                if data["finish_mode"] not in ("auto", "explicit"):
                    raise ValueError("finish_mode must be auto or explicit")
                rt.finish_mode = data["finish_mode"]
            if "delivery_timeout" in data:
                rt.delivery_timeout = max(0.1, float(data["delivery_timeout"]))
            for ref, flag in (data.get("offline_extended") or {}).items():
                rt.offline_extended[core.portal_find(sb, ref=ref).member_id] = bool(flag)
        except (KeyError, ValueError, ActionError) as exc:
            return _error(exc, 400)
    return JSONResponse(rt.settings())


async def control_action(request: Request) -> Response:
    """POST lifecycle/<action> {"portal": index|member_id|domain, ...}: the portal page's actions for
    programs. Unknown portal or a state that forbids the action → 409 with a reason."""
    sb = sandbox_of(request)
    action = request.path_params["action"]
    try:
        data = await _json(request)
        portal = _portal(sb, data)
        if action == "install":
            result = await service.app_install_headless(sb, portal=portal, finish=data.get("finish"))
        elif action == "install-start":
            frame = service.app_install_start(sb, portal=portal)
            result = (
                {"url": core.runtime(sb).urls.installer, "query": frame.query, "body": frame.body}
                if frame is not None
                else {"url": None}
            )
        elif action == "install-finish":
            result = {"installed": True, "finished_now": service.app_install_finish(sb, portal=portal)}
        elif action == "update":
            version = data.get("version")
            result = service.app_update(
                sb, portal=portal, version=int(version) if version is not None else None
            )
        elif action == "payment":
            days = data.get("days")
            result = service.app_payment(
                sb,
                portal=portal,
                expired=bool(data.get("expired", True)),
                days=int(days) if days is not None else None,
            )
        elif action == "rename":
            result = await service.portal_rename(sb, portal=portal)
        elif action == "uninstall":
            result = service.app_uninstall(sb, portal=portal, clean=bool(data.get("clean", False)))
        elif action == "frame":
            frame = service.frame_build(
                sb,
                portal=portal,
                placement=str(data.get("placement") or "DEFAULT").upper(),
                placement_options=data.get("options"),
                user_id=int(data["user_id"]) if data.get("user_id") else None,
            )
            urls = core.runtime(sb).urls
            placement = str(data.get("placement") or "DEFAULT").upper()
            url = urls.app_page if placement == "DEFAULT" else urls.placement_url(placement)
            result = {"url": url, "query": frame.query, "body": frame.body}
        elif action == "crm":
            result = {"message": crm_touch(sb, portal=portal, action=str(data.get("action")), form=data)}
        else:
            return JSONResponse({"error": "unknown action"}, status_code=404)
    except (ActionError, RestError) as exc:
        return _error(exc)
    except (ValueError, KeyError, TypeError) as exc:
        return _error(exc, 400)
    return JSONResponse({"portal": portal.member_id, "state": app_state(sb, portal), **result})


async def control_deliveries(request: Request) -> Response:
    """GET lifecycle/deliveries[?portal=&event=]: the delivery log (no bodies) and counters."""
    sb = sandbox_of(request)
    rt = core.runtime(sb)
    member_id = None
    if request.query_params.get("portal"):
        try:
            member_id = core.portal_find(sb, ref=request.query_params["portal"]).member_id
        except ActionError as exc:
            return _error(exc, 404)
    return JSONResponse(
        {
            "deliveries": rt.log.select(member_id=member_id, event=request.query_params.get("event")),
            "counters": dict(rt.log.counters),
            "pending": {m: w.queue.qsize() for m, w in rt.workers.items() if w.queue.qsize()},
        }
    )


async def control_wait(request: Request) -> Response:
    """POST lifecycle/deliveries/wait {"timeout": s}: return once every queued delivery was attempted
    (200) or the timeout passed (504). Tests use it instead of polling."""
    sb = sandbox_of(request)
    data = await _json(request)
    timeout = min(60.0, float(data.get("timeout", 10)))
    try:
        await asyncio.wait_for(core.runtime(sb).idle(), timeout)
    except TimeoutError:
        return JSONResponse({"idle": False}, status_code=504)
    return JSONResponse({"idle": True})


async def control_registrations(request: Request) -> Response:
    """GET lifecycle/registrations?portal=: the app's handlers, placements and offline queue on a portal."""
    sb = sandbox_of(request)
    try:
        portal = core.portal_find(sb, ref=request.query_params.get("portal", "1"))
    except ActionError as exc:
        return _error(exc, 404)
    app = core.app_for(sb, portal)
    regs = service.registrations(app) if app is not None else None
    return JSONResponse(
        {
            "portal": portal.member_id,
            "state": app_state(sb, portal),
            "handlers": [{"id": h.id, **h.as_row(), "options": h.options} for h in regs.handlers]
            if regs
            else [],
            "placements": [p.as_row() for p in regs.placements] if regs else [],
            "offline": [r.as_list_row() for r in regs.offline.records] if regs else [],
        }
    )


PORTAL_ROUTES = [
    Route("/", portal_root, methods=["GET"]),
    Route("/portal/", portal_page, methods=["GET"]),
    Route("/portal/app/", app_frame, methods=["GET"]),
    Route("/portal/placement/{code}/", placement_frame, methods=["GET"]),
    Route("/portal/actions/{action}", portal_action, methods=["POST"]),
    Route("/portal/deliveries.json", deliveries_json, methods=["GET"]),
    Route("/portal/bx24/install-finish", bx24_install_finish, methods=["POST"]),
    Route("/portal/bx24/refresh-auth", bx24_refresh_auth, methods=["POST"]),
    Route("/portal/static/bx24.js", bx24_js, methods=["GET"]),
]

CONTROL_ROUTES = [
    Route("/lifecycle", control_settings, methods=["GET", "POST"]),
    Route("/lifecycle/deliveries", control_deliveries, methods=["GET"]),
    Route("/lifecycle/deliveries/wait", control_wait, methods=["POST"]),
    Route("/lifecycle/registrations", control_registrations, methods=["GET"]),
    Route("/lifecycle/bx24.js", bx24_js, methods=["GET"]),
    Route("/lifecycle/{action}", control_action, methods=["POST"]),
]
