"""What the portal does *to* the app: install, installFinish, update, payment, rename, uninstall, and
event delivery after data changes. Services named <entity>_<action>, keyword-only; the portal page,
the control API and the CLI are thin callers of these.

Everything that touches the core's store goes through `sandbox.lifecycle.core`, the one adapter.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import requests

from sandbox.hooks import DataChange
from sandbox.lifecycle import core
from sandbox.lifecycle.bindings import AppRegistrations, EventHandler
from sandbox.lifecycle.delivery import USER_AGENT, Delivery
from sandbox.lifecycle.errors import ActionError
from sandbox.lifecycle.payloads import FramePost, UserTokens, event_payload, frame_post

if TYPE_CHECKING:
    from sandbox.state import Sandbox
    from sandbox.store import AppInstall, Portal

log = logging.getLogger("sandbox.lifecycle")


def registrations(app: AppInstall) -> AppRegistrations:
    """The app installation's handlers, placements and offline queue (created on first use)."""
    regs = app.extra.get("lifecycle")
    if regs is None:
        regs = app.extra["lifecycle"] = AppRegistrations()
    return regs


# --- the frame -------------------------------------------------------------------------------------


def frame_build(
    sb: Sandbox,
    *,
    portal: Portal,
    user_id: int | None = None,
    placement: str = "DEFAULT",
    placement_options: dict[str, Any] | None = None,
) -> FramePost:
    """Mint a token for the viewing user (the admin by default) and build the frame POST for one render."""
    app = core.app_for(sb, portal, require_present=True)
    tokens = core.mint(sb, portal=portal, user_id=user_id or portal.admin_user_id)
    return frame_post(
        portal=core.identity(sb, portal=portal, app=app),
        tokens=tokens,
        placement=placement,
        placement_options=placement_options,
    )


# --- delivery --------------------------------------------------------------------------------------


def _submit(
    sb: Sandbox,
    *,
    portal: Portal,
    app: AppInstall,
    event: str,
    url: str,
    handler_id: int,
    data: dict[str, Any],
    tokens: UserTokens | None,
    kind: str = "event",
) -> None:
    payload = event_payload(
        event=event,
        handler_id=handler_id,
        data=data,
        ts=int(core.now(sb)),
        portal=core.identity(sb, portal=portal, app=app),
        tokens=tokens,
    )
    core.runtime(sb).worker(portal.member_id).submit(
        Delivery(
            member_id=portal.member_id,
            event=event,
            url=url,
            payload=payload,
            handler_id=handler_id,
            kind=kind,
        )
    )


def _tokens_for(
    sb: Sandbox, *, portal: Portal, handler: EventHandler, acting_user: int | None
) -> UserTokens | None:
    """The token an event carries: the handler's auth_type user, else the acting user, else none."""
    user = handler.auth_type or acting_user
    if not user or user not in portal.users:
        return None
    return core.mint(sb, portal=portal, user_id=user)


def events_deliver(
    sb: Sandbox,
    *,
    portal: Portal,
    event: str,
    data: dict[str, Any],
    acting_user: int | None,
    app: AppInstall | None = None,
) -> int:
    """Queue `event` to every online handler bound to it; returns how many were queued.

    Nothing is sent for an app that is gone or not fully installed (installFinish not called yet), as
    Bitrix24 holds events back until then (RD installation-finish.md).
    """
    app = app or core.app_for(sb, portal)
    if app is None or not app.present or not app.installed:
        return 0
    regs = registrations(app)
    handlers = regs.handlers_for(event, offline=False)
    for handler in handlers:
        _submit(
            sb,
            portal=portal,
            app=app,
            event=event.upper(),
            url=handler.handler,
            handler_id=handler.id,
            data=data,
            tokens=_tokens_for(sb, portal=portal, handler=handler, acting_user=acting_user),
            kind="install" if handler.bound_by == 0 else "event",
        )
    return len(handlers)


def offline_notify(sb: Sandbox, *, portal: Portal, app: AppInstall) -> None:
    """ONOFFLINEEVENT to its online handlers, no more often than each handler's options.minTimeout.

    A change inside the quiet period schedules one notification for its end, so the app always hears
    about the last change without being flooded.
    """
    regs = registrations(app)
    loop = asyncio.get_running_loop()
    for handler in regs.handlers_for("ONOFFLINEEVENT", offline=False):
        last = regs.last_offline_notice.get(handler.id)
        wait = 0.0 if last is None else last + handler.min_timeout - loop.time()
        if wait <= 0:
            regs.last_offline_notice[handler.id] = loop.time()
            _send_offline_notice(sb, portal, app, handler)
        elif last is not None and last <= loop.time():
            # Mark the slot as taken now, so further changes inside the window don't schedule again.
            regs.last_offline_notice[handler.id] = last + handler.min_timeout
            loop.call_later(wait, _notify_one_later, sb, portal, app, handler.id)


def _notify_one_later(sb: Sandbox, portal: Portal, app: AppInstall, handler_id: int) -> None:
    regs = registrations(app)
    handler = next((h for h in regs.handlers if h.id == handler_id), None)
    if handler is None or not app.present or not app.installed:
        return
    _send_offline_notice(sb, portal, app, handler)


def _send_offline_notice(sb: Sandbox, portal: Portal, app: AppInstall, handler: EventHandler) -> None:
    """ONOFFLINEEVENT to one offline handler: "the queue has new records" (auth with refresh_token)."""
    _submit(
        sb,
        portal=portal,
        app=app,
        event="ONOFFLINEEVENT",
        url=handler.handler,
        handler_id=handler.id,
        data={},
        tokens=_tokens_for(sb, portal=portal, handler=handler, acting_user=portal.admin_user_id),
    )


def data_changed(sb: Sandbox, change: DataChange) -> None:
    """The data-change subscriber: online handlers get the event, offline handlers get a queue record.

    A change made by the app itself is not recorded for its offline handlers bound with an
    auth_connector (the loop breaker of RD offline-events.md); online handlers still get it, as on
    Bitrix24.
    """
    app = core.app_for(sb, change.portal)
    if app is None or not app.present or not app.installed:
        return
    data = {"FIELDS": {"ID": change.object_id}}
    events_deliver(
        sb, portal=change.portal, event=change.event, data=data, acting_user=change.user_id, app=app
    )
    regs = registrations(app)
    offline = regs.handlers_for(change.event, offline=True)
    if not offline:
        return
    own_change = change.client_id is not None and change.client_id == app.client_id
    if all(h.auth_connector and own_change for h in offline):
        return
    regs.offline.record(event=change.event, data=data, object_id=change.object_id, now=core.now(sb))
    offline_notify(sb, portal=change.portal, app=app)


# --- the lifecycle actions ---------------------------------------------------------------------------


def app_install_start(sb: Sandbox, *, portal: Portal) -> FramePost | None:
    """Start an install. With an installer URL the app is present but not installed until
    installFinish, and the installer's frame POST is returned. Without one (an app without UI) the
    app is installed at once, ONAPPINSTALL is sent, and None is returned (RD installation-callback).

    Installing over an installed app is a reinstall, as the portal's "Reinstall" does. A reinstall
    reuses the installation row (its options survive unless CLEAN was chosen, like on Bitrix24) but
    gets a new application_token and no handlers or placements.
    """
    app = core.app_install_begin(sb, portal=portal)
    registrations(app).forget_all()
    if not core.runtime(sb).urls.installer:
        app_install_finish(sb, portal=portal)
        return None
    return frame_build(sb, portal=portal)


def app_install_finish(sb: Sandbox, *, portal: Portal) -> bool:
    """installFinish: mark the app installed and send ONAPPINSTALL to the installation-event URL.

    Returns False (and sends nothing) if it was already installed: the JS call is idempotent.
    """
    app = core.app_for(sb, portal, require_present=True)
    if app.installed:
        return False
    core.app_mark_installed(sb, portal=portal, app=app)
    log.info("sandbox.lifecycle.install_finished", extra={"member_id": portal.member_id})
    regs = registrations(app)
    urls = core.runtime(sb).urls
    # The installation-event URL of the app card is a real handler on Bitrix24 (it has an id and shows
    # in event.get); registering it here gives ONAPPINSTALL its event_handler_id.
    install_handler = next((h for h in regs.handlers if h.event == "ONAPPINSTALL" and h.bound_by == 0), None)
    if install_handler is None:
        install_handler = EventHandler(
            id=regs.next_handler_id,
            event="ONAPPINSTALL",
            handler=urls.install_event,
            auth_type=0,
            offline=False,
            bound_by=0,
        )
        regs.next_handler_id += 1
        regs.handlers.insert(0, install_handler)
    data = {"VERSION": str(app.version), "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"}
    events_deliver(
        sb, portal=portal, event="ONAPPINSTALL", data=data, acting_user=portal.admin_user_id, app=app
    )
    return True


async def app_install_headless(sb: Sandbox, *, portal: Portal, finish: str | None = None) -> dict[str, Any]:
    """An install without a browser: POST the frame POST to the installer URL, as the iframe would.

    With `finish` "auto" (default from the runtime) a 2xx answer from the installer counts as
    installFinish (there is no browser to run the JS); with "explicit" the caller calls installFinish
    itself. Returns {"installer_status", "installed"}; raises ActionError if the installer can't be
    reached. The frame secrets go only to the registered installer URL.
    """
    mode = finish or core.runtime(sb).finish_mode
    if mode not in ("auto", "explicit"):
        raise ActionError(f"finish must be 'auto' or 'explicit', not {mode!r}")
    frame = app_install_start(sb, portal=portal)
    if frame is None:  # no UI: nothing to POST, already installed
        return {"installer_status": None, "installed": True}
    url = core.runtime(sb).urls.installer
    try:
        status = await asyncio.to_thread(_post_frame, url, frame, core.runtime(sb).delivery_timeout)
    except requests.RequestException as exc:
        raise ActionError(f"installer unreachable: {type(exc).__name__}") from exc
    installed = False
    if mode == "auto" and 200 <= status < 300:
        installed = app_install_finish(sb, portal=portal)
    return {"installer_status": status, "installed": installed}


def _post_frame(url: str, frame: FramePost, timeout: float) -> int:
    response = requests.post(
        url,
        params=frame.query,
        data=frame.body,
        headers={"User-Agent": USER_AGENT},
        timeout=timeout,
        allow_redirects=False,
    )
    response.close()
    return response.status_code


def app_update(sb: Sandbox, *, portal: Portal, version: int | None = None) -> dict[str, Any]:
    """A new app version: new application_token, ONAPPUPDATE (VERSION, PREVIOUS_VERSION) to bound handlers.

    Handlers stay bound (the docs also say updates drop them; the sandbox keeps them so ONAPPUPDATE can
    reach the app — a documented difference). Raises ActionError unless installed.
    """
    app = core.app_for(sb, portal, require_present=True)
    if not app.installed:
        raise ActionError("the app is not fully installed")
    previous = app.version
    core.app_set_version(sb, portal=portal, app=app, version=version if version is not None else previous + 1)
    log.info("sandbox.lifecycle.updated", extra={"member_id": portal.member_id, "version": app.version})
    data = {"VERSION": str(app.version), "PREVIOUS_VERSION": str(previous), "LANGUAGE_ID": "en"}
    queued = events_deliver(
        sb, portal=portal, event="ONAPPUPDATE", data=data, acting_user=portal.admin_user_id, app=app
    )
    return {"version": app.version, "previous_version": previous, "queued": queued}


def app_payment(sb: Sandbox, *, portal: Portal, expired: bool, days: int | None = None) -> dict[str, Any]:
    """End (expired=True) or renew the paid period: the OAuth server answers PAYMENT_REQUIRED while it is
    over; ONAPPPAYMENT goes to bound handlers either way."""
    app = core.app_for(sb, portal, require_present=True)
    core.app_set_payment(sb, portal=portal, app=app, expired=expired, days=days)
    data = {
        "CODE": app.code,
        "VERSION": str(app.version),
        "STATUS": app.status,
        "PAYMENT_EXPIRED": "Y" if expired else "N",
        "DAYS": str(0 if expired else (days if days is not None else 30)),
        "LANGUAGE_ID": "en",
    }
    queued = events_deliver(sb, portal=portal, event="ONAPPPAYMENT", data=data, acting_user=None, app=app)
    return {"payment_expired": expired, "queued": queued}


async def portal_rename(sb: Sandbox, *, portal: Portal) -> dict[str, Any]:
    """Rename the portal: the old host answers 302 to the new one; later frames and events carry the
    new domain (member_id stays)."""
    old = await core.rename(sb, portal=portal)
    return {"old_domain": old, "domain": portal.domain}


def app_uninstall(sb: Sandbox, *, portal: Portal, clean: bool) -> dict[str, Any]:
    """Uninstall: ONAPPUNINSTALL (data[CLEAN] 1/0) to bound handlers, then revoke every token and drop
    handlers, placements and the offline queue. Raises ActionError if the app isn't there."""
    app = core.app_for(sb, portal, require_present=True)
    queued = 0
    if app.installed:
        data = {"LANGUAGE_ID": "en", "CLEAN": "1" if clean else "0"}
        queued = events_deliver(
            sb, portal=portal, event="ONAPPUNINSTALL", data=data, acting_user=None, app=app
        )
    core.app_remove(sb, portal=portal, app=app, clean=clean)
    log.info("sandbox.lifecycle.uninstalled", extra={"member_id": portal.member_id, "clean": clean})
    registrations(app).forget_all()
    return {"queued": queued, "clean": clean}
