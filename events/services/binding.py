"""The app's event bindings on each portal: bind at install, re-bind on update, reconcile.

The desired set is what the app handles: the lifecycle events it needs (:data:`LIFECYCLE_BINDINGS`)
plus every event an installed feature registered a handler for (``events.registry.on_event``), bound
online to our receiver. On portals that allow offline events, the handled events named in
``BITRIX24_OFFLINE_EVENTS`` are bound with ``event_type=offline`` instead, plus ONOFFLINEEVENT online,
which tells us the queue has records.
Bitrix24 drops an app's bindings when the app is updated, so ONAPPUPDATE re-binds, and a periodic
reconciliation against ``event.get`` repairs anything lost in between.

Bindings of our URLs are owned: the app binds with the portal's stored token, an administrator's,
and no ``auth_type`` (0: events come as the user who caused them). Any other binding pointing at
one of our views -- another ``auth_type``, an event we don't want, made by whoever held a token of
the app (every user who opens it gets one) -- delivers extra copies of events or events we never
asked for, so binding and reconciling remove it. One code path does both: :func:`_bindings_own`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from django.urls import Resolver404, resolve, reverse

from events.registry import handled_events
from portals.bitrix.exceptions import Bitrix24ApiError, Bitrix24Error
from portals.conf import app_settings
from portals.models import Portal
from portals.services.client import client_for_portal

logger = logging.getLogger("events")

_ALREADY_BOUND = "ERROR_HANDLER_ALREADY_EXIST"
# The app's own lifecycle, bound on every portal whatever features are installed: the uninstall,
# the update (Bitrix24 drops bindings on it, so it re-binds) and the payment (it carries no token: it
# makes the app re-check app.info, so a renewed payment restores a portal without an operator).
LIFECYCLE_BINDINGS = frozenset({"ONAPPUNINSTALL", "ONAPPUPDATE", "ONAPPPAYMENT"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Binding(NamedTuple):
    """One row of ``event.get``: what ``event.unbind`` needs to remove exactly that row."""

    event: str
    handler: str  # "" for an offline binding
    offline: bool
    auth_type: int = 0  # the user whose token the handler gets; 0 = the user who caused the event


@dataclass
class BindReport:
    bound: list[Binding] = field(default_factory=list)
    unbound: list[Binding] = field(default_factory=list)
    present: list[Binding] = field(default_factory=list)


class AdministratorTokenRequired(Bitrix24Error):
    """The portal's stored token is not an administrator's, so its bindings are left alone.

    ``event.get`` shows a non-administrator only the bindings they made, so any unbind decided on
    that view could be wrong, and ``event.bind`` would bind as that user. Retrying doesn't help:
    an administrator must re-authorise the app (open it, or the code flow).
    """

    retryable = False


def events_handler_url() -> str:
    """The public URL of the receiver, as Bitrix24 must call it."""
    return app_settings.app_url.rstrip("/") + reverse("events:receive")


def install_handler_url() -> str:
    """The public URL of the installation handler (the app card's ONAPPINSTALL handler)."""
    return app_settings.app_url.rstrip("/") + reverse("portals:install")


def _origin(url: str) -> tuple[str, str | None, int | None]:
    """(scheme, host, port) of ``url``, the port filled in from the scheme; ValueError for a bad port."""
    parts = urlsplit(url)  # lower-cases the scheme and the host
    return parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme)


def handler_is_ours(url: str) -> bool:
    """Whether Bitrix24 calling ``url`` would reach one of our views.

    True for the scheme, host and port of ``BITRIX24_APP_URL`` and a path under it that our URL
    configuration resolves (so the receiver, the install URL, and any other view of ours). Handlers
    of other URLs belong to someone else and are never unbound.
    """
    try:
        if _origin(url) != _origin(app_settings.app_url):
            return False
    except ValueError:  # a port that isn't a number: nothing can be delivered there
        return False
    prefix = urlsplit(app_settings.app_url).path.rstrip("/")
    path = unquote(urlsplit(url).path)  # the web server decodes %-escapes before routing
    if not path.startswith(prefix + "/"):
        return False
    try:
        resolve(path[len(prefix) :])
    except Resolver404:
        return False
    return True


def app_events_desired(*, portal: Portal) -> set[Binding]:
    handler = events_handler_url()
    # ONAPPINSTALL goes to the install handler, bound by the installation itself; ONOFFLINEEVENT only
    # where offline events are used.
    online = (LIFECYCLE_BINDINGS | handled_events()) - {"ONAPPINSTALL", "ONOFFLINEEVENT"}
    offline: set[str] = set()
    if portal.offline_events:
        offline = {name.upper() for name in app_settings.offline_events} & (online - LIFECYCLE_BINDINGS)
    wanted = {Binding(name, handler, False) for name in online - offline}
    if offline:
        wanted |= {Binding(name, "", True) for name in offline}
        wanted.add(Binding("ONOFFLINEEVENT", handler, False))
    return wanted


def _client(portal: Portal) -> Any:

    return client_for_portal(member_id=portal.member_id)


def _bind(client: Any, binding: Binding) -> bool:
    """event.bind, without auth_type (0); False when Bitrix24 says it is already there."""
    params: dict[str, Any] = {"event": binding.event}
    if binding.offline:
        params["event_type"] = "offline"
    else:
        params["handler"] = binding.handler
    if binding.event == "ONOFFLINEEVENT":
        params["options"] = {"minTimeout": 1}
    try:
        client.call("event.bind", params, read=False)
    except Bitrix24ApiError as e:
        if (e.code or "").upper() == _ALREADY_BOUND:
            return False
        raise
    return True


def _unbind(client: Any, binding: Binding) -> None:
    """event.unbind of exactly this binding.

    auth_type is always passed: per RD api-reference/events/event-unbind.md, ``auth_type=0``
    removes only the handlers that act as the event's user, and another value only that user's.
    """
    params: dict[str, Any] = {
        "event": binding.event,
        "handler": binding.handler,
        "auth_type": binding.auth_type,
    }
    if binding.offline:
        params["event_type"] = "offline"
    client.call("event.unbind", params, read=False)


def _current(client: Any) -> set[Binding]:
    rows = client.call("event.get", read=True) or []
    current = set()
    for row in rows:
        offline = str(row.get("offline", "0")) in ("1", "true", "True")
        current.add(
            Binding(
                event=str(row.get("event", "")).upper(),
                handler="" if offline else str(row.get("handler", "")),
                offline=offline,
                auth_type=int(row.get("auth_type") or 0),  # Bitrix24 sends it as a string
            )
        )
    return current


def _bindings_own(portal: Portal) -> BindReport:
    """Make the portal's bindings of our URLs exactly the desired ones (the one code path).

    Checks first that the stored token is an administrator's (``user.admin``), else raises
    AdministratorTokenRequired before anything is bound or unbound. Then binds the missing
    desired bindings and unbinds every other binding of our URLs, and every offline binding, that
    isn't desired. Kept besides the desired ones: the app card's ONAPPINSTALL handler (the install
    URL, auth_type 0), which Bitrix24 registers itself at install.
    """
    client = _client(portal)
    if client.call("user.admin", read=True) is not True:
        logger.warning("events.reconcile.not_admin", extra={"member_id": portal.member_id})
        raise AdministratorTokenRequired(f"the stored token of {portal.member_id} is not an administrator's")
    desired = app_events_desired(portal=portal)
    kept = desired | {Binding("ONAPPINSTALL", install_handler_url(), False)}
    current = _current(client)
    report = BindReport(present=sorted(desired & current))
    for binding in sorted(desired - current):
        (report.bound if _bind(client, binding) else report.present).append(binding)
    for binding in sorted(current - kept):
        if binding.offline or handler_is_ours(binding.handler):
            _unbind(client, binding)
            report.unbound.append(binding)
    return report


def app_events_bind(*, portal_id: int) -> BindReport:
    """Bind every desired event and remove the bindings of our URLs the app didn't make.

    Called after an install and on ONAPPUPDATE; idempotent (``ERROR_HANDLER_ALREADY_EXIST`` counts
    as present). Raises AdministratorTokenRequired when the stored token isn't an administrator's,
    and the client's exceptions (a portal that can't be reached is retried by the caller or the
    periodic reconciliation).
    """
    portal = Portal.objects.get(pk=portal_id)
    report = _bindings_own(portal)
    logger.info(
        "events.bind",
        extra={
            "member_id": portal.member_id,
            "bound": len(report.bound),
            "present": len(report.present),
            "unbound": len(report.unbound),
        },
    )
    return report


def app_events_reconcile(*, portal_id: int) -> BindReport:
    """Make the portal's bindings of our URLs equal the desired ones, against ``event.get``.

    Binds the missing, unbinds every other binding of our URLs whatever its auth_type (and stale
    offline ones); handlers of other URLs are left alone. Raises AdministratorTokenRequired,
    unbinding nothing, when the stored token isn't an administrator's.
    """
    portal = Portal.objects.get(pk=portal_id)
    report = _bindings_own(portal)
    if report.bound or report.unbound:
        logger.warning(
            "events.reconcile.repaired",
            extra={"member_id": portal.member_id, "bound": len(report.bound), "unbound": len(report.unbound)},
        )
    return report


def app_events_reconcile_all() -> dict[str, str]:
    """Reconcile every active portal; one portal's failure doesn't stop the others.

    Returns member_id → outcome: "bound N, unbound M", "not reconciled: the stored token is not an
    administrator's", or "error: <exception>".
    """
    results: dict[str, str] = {}
    for portal_id, member_id in Portal.objects.active().values_list("id", "member_id"):
        try:
            report = app_events_reconcile(portal_id=portal_id)
        except AdministratorTokenRequired:
            results[member_id] = "not reconciled: the stored token is not an administrator's"
            continue  # logged as events.reconcile.not_admin
        except Bitrix24Error as e:
            results[member_id] = f"error: {type(e).__name__}"
            logger.warning(
                "events.reconcile.error", extra={"member_id": member_id, "error": type(e).__name__}
            )
            continue
        results[member_id] = f"bound {len(report.bound)}, unbound {len(report.unbound)}"
    return results
