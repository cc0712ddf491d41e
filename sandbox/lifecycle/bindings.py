"""What an app has registered on a portal: event handlers and widget placements (protocol §7.1, §8).

Plain state plus the REST semantics of event.bind / unbind / get and placement.bind / unbind / get.
Everything here belongs to one app installation: uninstalling (and, per the docs, updating) the app
drops it, which is why it lives in the installation's `extra` and not in the portal's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sandbox.lifecycle.errors import LifecycleError
from sandbox.lifecycle.offline import OfflineQueue

_CRM_ENTITIES = ("LEAD", "DEAL", "CONTACT", "COMPANY", "QUOTE", "INVOICE", "ACTIVITY", "PRODUCT")
_CRM_ACTIONS = ("ADD", "UPDATE", "DELETE")
KNOWN_EVENTS = frozenset(
    {f"ONCRM{entity}{action}" for entity in _CRM_ENTITIES for action in _CRM_ACTIONS}
    | {
        "ONAPPINSTALL",
        "ONAPPUNINSTALL",
        "ONAPPUPDATE",
        "ONAPPPAYMENT",
        "ONAPPTEST",
        "ONAPPMETHODCONFIRM",
        "ONOFFLINEEVENT",
        "ONUSERADD",
    }
)

# Widget placements the sandbox knows (enough for CRM apps; an unknown code gets ERROR_PLACEMENT_NOT_FOUND).
KNOWN_PLACEMENTS = frozenset(
    {
        f"CRM_{entity}_{where}"
        for entity in ("LEAD", "DEAL", "CONTACT", "COMPANY")
        for where in (
            "LIST_MENU",
            "LIST_TOOLBAR",
            "DETAIL_TAB",
            "DETAIL_TOOLBAR",
            "DETAIL_ACTIVITY",
            "ACTIVITY_TIMELINE_MENU",
        )
    }
    | {"LEFT_MENU", "REST_APP_URI", "PAGE_BACKGROUND_WORKER", "USER_PROFILE_MENU", "USER_PROFILE_TOOLBAR"}
)
_PLACEMENT_CODE = re.compile(r"^[A-Z0-9_]+$")

# The scope each placement is declared in ("Additional Scope" of RD api-reference/widgets/placements.md);
# None: a global placement, offered to every app.
PLACEMENT_SCOPES: dict[str, str | None] = {
    code: "crm" if code.startswith("CRM_") else "user" if code.startswith("USER_PROFILE_") else None
    for code in KNOWN_PLACEMENTS
}


def placement_list(params: Mapping[str, Any], *, granted: frozenset[str]) -> list[str]:
    """placement.list (RD api-reference/widgets/placement-list.md): ``SCOPE`` narrows to that
    scope's placements; else ``FULL`` lists every placement; else the app's scopes' and the global
    ones."""
    scope = _text(params, "SCOPE", "scope").lower()
    if scope:
        return sorted(code for code, owner in PLACEMENT_SCOPES.items() if owner == scope)
    if _text(params, "FULL", "full").lower() in ("1", "true", "y"):
        return sorted(PLACEMENT_SCOPES)
    return sorted(code for code, owner in PLACEMENT_SCOPES.items() if owner is None or owner in granted)


@dataclass
class EventHandler:
    """One event.bind registration."""

    id: int
    event: str
    handler: str  # "" for offline handlers
    auth_type: int  # user whose token the handler gets; 0 = the user who caused the event
    offline: bool
    bound_by: int  # the user who called event.bind (non-admins see only their own in event.get)
    auth_connector: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        """event.get's row: auth_type as a string, offline as 0/1, as Bitrix24 returns them."""
        return {
            "event": self.event,
            "handler": self.handler,
            "auth_type": str(self.auth_type),
            "offline": int(self.offline),
        }

    @property
    def min_timeout(self) -> float:
        """ONOFFLINEEVENT's options.minTimeout in seconds (default 1), the spacing between notifications."""
        try:
            return max(0.0, float(self.options.get("minTimeout", 1)))
        except (TypeError, ValueError):
            return 1.0


@dataclass
class Placement:
    """One placement.bind registration."""

    placement: str
    handler: str
    title: str = ""
    description: str = ""
    group_name: str = ""
    options: Any = field(default_factory=list)
    lang_all: dict[str, Any] = field(default_factory=dict)
    user_id: int = 0

    def as_row(self) -> dict[str, Any]:
        return {
            "placement": self.placement,
            "userId": self.user_id,
            "handler": self.handler,
            "options": self.options,
            "title": self.title,
            "description": self.description,
            "langAll": self.lang_all,
        }


@dataclass
class AppRegistrations:
    """Everything one app installation has registered on one portal."""

    handlers: list[EventHandler] = field(default_factory=list)
    placements: list[Placement] = field(default_factory=list)
    offline: OfflineQueue = field(default_factory=OfflineQueue)
    next_handler_id: int = 1
    last_offline_notice: dict[int, float] = field(default_factory=dict)  # handler id → loop time

    def handlers_for(self, event: str, *, offline: bool) -> list[EventHandler]:
        return [h for h in self.handlers if h.event == event.upper() and h.offline == offline]

    def forget_all(self) -> None:
        """What uninstall does: handlers, widgets and the offline queue go (RD app-uninstallation.md)."""
        self.handlers.clear()
        self.placements.clear()
        self.offline = OfflineQueue()
        self.last_offline_notice.clear()


def _text(params: Mapping[str, Any], *names: str) -> str:
    """First present parameter among `names` (Bitrix accepts both cases for most keys), stripped."""
    for name in names:
        value = params.get(name)
        if value not in (None, ""):
            return str(value).strip()
    return ""


def _check_url(url: str, *, code: str = "ERROR_WRONG_HANDLER_URL") -> None:
    """A handler must be an absolute http(s) URL. Loopback hosts are allowed here on purpose: real
    Bitrix24 refuses them, but the sandbox and the app share a machine (documented difference)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        if parts.scheme and parts.netloc:
            raise LifecycleError("ERROR_UNSUPPORTED_PROTOCOL", "Unsupported event handler protocol")
        raise LifecycleError(code, "Wrong handler URL")
    if not parts.netloc:
        raise LifecycleError(code, "Wrong handler URL")


def _options(raw: Any) -> dict[str, Any]:
    return dict(raw) if isinstance(raw, Mapping) else {}


def event_bind(regs: AppRegistrations, params: Mapping[str, Any], *, user_id: int, is_admin: bool) -> bool:
    """event.bind. Raises LifecycleError: ERROR_EVENT_NOT_FOUND (unknown event), ACCESS_DENIED 403
    (non-admin binding offline or another user's auth_type), ERROR_HANDLER_ALREADY_EXIST (duplicate),
    ERROR_WRONG_HANDLER_URL (online without a usable handler)."""
    event = _text(params, "event", "EVENT").upper()
    if event not in KNOWN_EVENTS:
        raise LifecycleError("ERROR_EVENT_NOT_FOUND", "Event not found")
    offline = _text(params, "event_type", "EVENT_TYPE").lower() == "offline"
    raw_auth_type = _text(params, "auth_type", "AUTH_TYPE")
    try:
        auth_type = int(raw_auth_type) if raw_auth_type else 0
    except ValueError:
        raise LifecycleError("INVALID_ARGUMENTS", "Wrong auth_type")
    if not is_admin:
        if offline:
            raise LifecycleError("ACCESS_DENIED", "Access denied! Admin permissions required", status=403)
        if auth_type and auth_type != user_id:
            raise LifecycleError("ACCESS_DENIED", "Access denied! Admin permissions required", status=403)
        auth_type = user_id  # a non-admin's handlers always act as that user
    handler = "" if offline else _text(params, "handler", "HANDLER")
    if not offline:
        _check_url(handler)
    connector = _text(params, "auth_connector", "AUTH_CONNECTOR") if offline else ""
    for existing in regs.handlers:
        if (
            existing.event,
            existing.handler,
            existing.auth_type,
            existing.offline,
            existing.auth_connector,
        ) == (
            event,
            handler,
            auth_type,
            offline,
            connector,
        ):
            raise LifecycleError("ERROR_HANDLER_ALREADY_EXIST", "Handler already exists!")
    regs.handlers.append(
        EventHandler(
            id=regs.next_handler_id,
            event=event,
            handler=handler,
            auth_type=auth_type,
            offline=offline,
            bound_by=user_id,
            auth_connector=connector,
            options=_options(params.get("options") or params.get("OPTIONS")),
        )
    )
    regs.next_handler_id += 1
    return True


def event_unbind(
    regs: AppRegistrations, params: Mapping[str, Any], *, user_id: int, is_admin: bool
) -> dict[str, int]:
    """event.unbind → {"count": N}; administrators only (ACCESS_DENIED 403 otherwise).

    As RD api-reference/events/event-unbind.md says: a parameter that isn't given doesn't narrow
    the match, so without ``auth_type`` the handlers of every auth_type go; ``auth_type=0`` or an
    empty value removes only the "acting user" handlers, another value only that user's.
    """
    if not is_admin:
        raise LifecycleError("ACCESS_DENIED", "Access denied! Admin permissions required", status=403)
    event = _text(params, "event", "EVENT").upper()
    if not event:
        raise LifecycleError("ERROR_EVENT_NOT_FOUND", "Event not found")
    offline = _text(params, "event_type", "EVENT_TYPE").lower() == "offline"
    handler = _text(params, "handler", "HANDLER")
    auth_type: int | None = None  # None: any
    if "auth_type" in params or "AUTH_TYPE" in params:
        raw_auth_type = _text(params, "auth_type", "AUTH_TYPE")
        auth_type = int(raw_auth_type) if raw_auth_type.isdigit() else 0
    keep, removed = [], 0
    for h in regs.handlers:
        matches = h.event == event and h.offline == offline and auth_type in (None, h.auth_type)
        if matches and not offline:
            matches = h.handler == handler
        if matches and offline and "auth_connector" in params:
            matches = h.auth_connector == _text(params, "auth_connector")
        if matches:
            removed += 1
            regs.last_offline_notice.pop(h.id, None)
        else:
            keep.append(h)
    regs.handlers = keep
    return {"count": removed}


def event_get(regs: AppRegistrations, *, user_id: int, is_admin: bool) -> list[dict[str, Any]]:
    """event.get: every handler of the app for admins; a non-admin sees only the handlers they bound."""
    return [h.as_row() for h in regs.handlers if is_admin or h.bound_by == user_id]


def _placement_code(params: Mapping[str, Any]) -> str:
    code = _text(params, "PLACEMENT", "placement").upper()
    if not code:
        raise LifecycleError("ERROR_ARGUMENT", "Argument 'PLACEMENT' is null or empty", argument="PLACEMENT")
    if not _PLACEMENT_CODE.match(code) or code not in KNOWN_PLACEMENTS:
        raise LifecycleError("ERROR_PLACEMENT_NOT_FOUND", "Placement not found")
    return code


def placement_bind(regs: AppRegistrations, params: Mapping[str, Any], *, is_admin: bool) -> bool:
    """placement.bind (admin only). Raises ERROR_ARGUMENT (with `argument`), ERROR_PLACEMENT_NOT_FOUND,
    ERROR_WRONG_HANDLER_URL / ERROR_UNSUPPORTED_PROTOCOL, ERROR_PLACEMENT_USER_MODE,
    ERROR_PLACEMENT_MAX_COUNT (a second PAGE_BACKGROUND_WORKER), ACCESS_DENIED 403 for non-admins."""
    if not is_admin:
        raise LifecycleError("ACCESS_DENIED", "Access denied! Admin permissions required", status=403)
    code = _placement_code(params)
    handler = _text(params, "HANDLER", "handler")
    if not handler:
        raise LifecycleError("ERROR_ARGUMENT", "Argument 'HANDLER' is null or empty", argument="HANDLER")
    _check_url(handler)
    raw_user = _text(params, "USER_ID", "user_id")
    user = int(raw_user) if raw_user.isdigit() else 0
    if user and code != "PAGE_BACKGROUND_WORKER":
        raise LifecycleError("ERROR_PLACEMENT_USER_MODE", "User mode is not available")
    if code == "PAGE_BACKGROUND_WORKER" and any(
        p.placement == code and p.user_id == user for p in regs.placements
    ):
        raise LifecycleError("ERROR_PLACEMENT_MAX_COUNT", "Placement max count exceeded")
    if any(p.placement == code and p.handler == handler and p.user_id == user for p in regs.placements):
        raise LifecycleError("ERROR_PLACEMENT_HANDLER_ALREADY_BINDED", "Handler already binded")
    lang_all = params.get("LANG_ALL") or params.get("lang_all") or {}
    regs.placements.append(
        Placement(
            placement=code,
            handler=handler,
            title=_text(params, "TITLE", "title"),
            description=_text(params, "DESCRIPTION", "description"),
            group_name=_text(params, "GROUP_NAME", "group_name"),
            options=params.get("OPTIONS") or params.get("options") or [],
            lang_all=dict(lang_all) if isinstance(lang_all, Mapping) else {},
            user_id=user,
        )
    )
    return True


def placement_unbind(regs: AppRegistrations, params: Mapping[str, Any], *, is_admin: bool) -> dict[str, int]:
    """placement.unbind → {"count": N}; without HANDLER every handler of that placement goes."""
    if not is_admin:
        raise LifecycleError("ACCESS_DENIED", "Access denied! Admin permissions required", status=403)
    code = _placement_code(params)
    handler = _text(params, "HANDLER", "handler")
    keep = [p for p in regs.placements if not (p.placement == code and (not handler or p.handler == handler))]
    removed = len(regs.placements) - len(keep)
    regs.placements = keep
    return {"count": removed}


def placement_get(regs: AppRegistrations, *, is_admin: bool) -> list[dict[str, Any]]:
    if not is_admin:
        raise LifecycleError("ACCESS_DENIED", "Access denied! Admin permissions required", status=403)
    return [p.as_row() for p in regs.placements]
