"""The lifecycle's one adapter to the sandbox core (sandbox.state.Sandbox and sandbox.store).

Every read or write of the core's world by the lifecycle goes through here, so the rest of the package
depends on a handful of named operations rather than on the core's internals.
"""

from __future__ import annotations

import secrets
import weakref
from typing import TYPE_CHECKING

from sandbox.lifecycle.errors import ActionError
from sandbox.lifecycle.payloads import PortalIdentity, UserTokens
from sandbox.lifecycle.runtime import AppUrls, LifecycleRuntime

if TYPE_CHECKING:
    from sandbox.state import Sandbox
    from sandbox.store import AppInstall, Portal

_runtimes: weakref.WeakKeyDictionary[Sandbox, LifecycleRuntime] = weakref.WeakKeyDictionary()


def _card(sb: Sandbox) -> AppUrls:
    # The OAuth redirect URI is the core's (its /oauth/authorize/ redirects there); the card mirrors it.
    return AppUrls.from_app_url(sb.config.app_url, oauth_redirect=sb.config.redirect_uri)


def runtime(sb: Sandbox) -> LifecycleRuntime:
    """The lifecycle state of this sandbox (created from config.app_url on first use)."""
    rt = _runtimes.get(sb)
    if rt is None:
        rt = _runtimes[sb] = LifecycleRuntime(urls=_card(sb), clock=sb.clock.time)
    rt.urls.oauth_redirect = sb.config.redirect_uri or rt.urls.oauth_redirect
    return rt


def urls_update(sb: Sandbox, changes: dict[str, str]) -> AppUrls:
    """Change the app card; a new oauth_redirect is handed to the core's OAuth authorize endpoint.
    Raises KeyError / ValueError for unknown keys or non-http(s) URLs."""
    rt = runtime(sb)
    rt.urls.update(changes)
    sb.config.redirect_uri = rt.urls.oauth_redirect
    return rt.urls


def runtime_reset(sb: Sandbox) -> LifecycleRuntime:
    """Forget deliveries and switches (workers stop); the app URLs and finish mode survive a reset,
    like the app card survives on Bitrix24."""
    old = _runtimes.get(sb)
    rt = LifecycleRuntime(urls=old.urls if old else _card(sb), clock=sb.clock.time)
    if old is not None:
        old.stop()
        rt.finish_mode = old.finish_mode
        rt.delivery_timeout = old.delivery_timeout
        rt.poster = old.poster
    _runtimes[sb] = rt
    return rt


def now(sb: Sandbox) -> float:
    return sb.clock.time()


def portal_find(sb: Sandbox, *, ref: str | int) -> Portal:
    """A portal by 1-based index, member_id or domain; raises ActionError if there is none."""
    text = str(ref).strip()
    if text.isdigit() and 1 <= int(text) <= len(sb.portals):
        return sb.portals[int(text) - 1]
    portal = sb.by_member.get(text) or sb.portal_by_host(text)
    if portal is None:
        raise ActionError(f"no portal {text!r}")
    return portal


def app_for(sb: Sandbox, portal: Portal, *, require_present: bool = False) -> AppInstall:
    """The sandbox app's installation on `portal`. With require_present an uninstalled app raises
    ActionError (the caller needs a live installation)."""
    app = portal.apps.get(sb.config.client_id)
    if require_present and (app is None or not app.present):
        raise ActionError("the app is not installed on this portal")
    return app  # type: ignore[return-value]


def app_install_begin(sb: Sandbox, *, portal: Portal) -> AppInstall:
    """(Re)install the app as "installer shown, installFinish pending", with a new application_token."""
    old = portal.apps.get(sb.config.client_id)
    return sb.app_install(
        portal,
        client_id=sb.config.client_id,
        client_secret=sb.config.client_secret,
        status=old.status if old else "F",
        scope=list(old.scope) if old else None,
        installed=False,
    )


def app_mark_installed(sb: Sandbox, *, portal: Portal, app: AppInstall) -> None:
    app.installed = True
    app.installed_at = sb.clock.time()


def app_set_version(sb: Sandbox, *, portal: Portal, app: AppInstall, version: int) -> None:
    """A new version brings a new application_token (RD on-app-update.md)."""
    app.version = version
    app.application_token = secrets.token_hex(16)


def app_set_payment(sb: Sandbox, *, portal: Portal, app: AppInstall, expired: bool, days: int | None) -> None:
    """The OAuth server answers PAYMENT_REQUIRED while payment_expired is set (the core's check)."""
    app.payment_expired = expired
    app.days = 0 if expired else days


def app_remove(sb: Sandbox, *, portal: Portal, app: AppInstall, clean: bool) -> None:
    sb.app_uninstall(portal, app.client_id, clean=clean)


def mint(sb: Sandbox, *, portal: Portal, user_id: int) -> UserTokens:
    """A fresh token pair for `user_id` in the sandbox app (what a frame render or an event carries)."""
    app = app_for(sb, portal, require_present=True)
    token = sb.token_issue(portal, app, user_id, grant="lifecycle")
    return UserTokens(
        access_token=token.access_token,
        refresh_token=token.refresh_token,
        expires=int(token.expires),
        expires_in=int(sb.config.access_lifetime),
        user_id=token.user_id,
        scope=",".join(token.scope),
    )


def identity(sb: Sandbox, *, portal: Portal, app: AppInstall) -> PortalIdentity:
    return PortalIdentity(
        member_id=portal.member_id,
        domain=portal.domain,
        client_endpoint=portal.client_endpoint,
        server_endpoint=sb.server_endpoint,
        application_token=app.application_token,
        status=app.status,
        scope=",".join(app.scope),
    )


async def rename(sb: Sandbox, *, portal: Portal) -> str:
    """The core's rename primitive: the portal moves to a new loopback address (the core picks it and
    binds listeners); the old host then answers 302 to the new one. Returns the old domain; raises
    ActionError when the server can't bind new listeners (in-process use)."""
    if sb.listeners is None:
        raise ActionError("renaming needs the server's listeners")
    return await sb.portal_rename(portal)
