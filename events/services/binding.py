"""The app's event bindings on each portal: bind at install, re-bind on update, reconcile.

Desired bindings come from settings: ``BITRIX24_EVENTS`` (online, to our receiver; ONAPPUNINSTALL is
always added) and, on portals that allow offline events, ``BITRIX24_OFFLINE_EVENTS`` (bound with
``event_type=offline``) plus ONOFFLINEEVENT online, which tells us the queue has records.
Bitrix24 drops an app's bindings when the app is updated, so ONAPPUPDATE re-binds, and a periodic
reconciliation against ``event.get`` repairs anything lost in between.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.conf import settings
from django.urls import reverse

from portals.bitrix.exceptions import Bitrix24ApiError, Bitrix24Error
from portals.models import Portal

logger = logging.getLogger("events")

_ALREADY_BOUND = "ERROR_HANDLER_ALREADY_EXIST"


class Binding(NamedTuple):
    event: str
    handler: str  # "" for an offline binding
    offline: bool


@dataclass
class BindReport:
    bound: list[Binding] = field(default_factory=list)
    unbound: list[Binding] = field(default_factory=list)
    present: list[Binding] = field(default_factory=list)


def events_handler_url() -> str:
    """The public URL of the receiver, as Bitrix24 must call it."""
    return settings.BITRIX24_APP_URL.rstrip("/") + reverse("events:receive")


def app_events_desired(*, portal: Portal) -> set[Binding]:
    handler = events_handler_url()
    online = {name.upper() for name in settings.BITRIX24_EVENTS} | {"ONAPPUNINSTALL"}
    online.discard("ONAPPINSTALL")  # delivered to the install handler, bound by the installation itself
    wanted = {Binding(name, handler, False) for name in online}
    if portal.offline_events and settings.BITRIX24_OFFLINE_EVENTS:
        wanted |= {Binding(name.upper(), "", True) for name in settings.BITRIX24_OFFLINE_EVENTS}
        wanted.add(Binding("ONOFFLINEEVENT", handler, False))
    return wanted


def _client(portal: Portal) -> Any:
    from portals.services.client import client_for_portal

    return client_for_portal(member_id=portal.member_id)


def _bind(client: Any, binding: Binding) -> bool:
    """event.bind; False when Bitrix24 says it is already there."""
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


def app_events_bind(*, portal_id: int) -> BindReport:
    """Bind every desired event on the portal (idempotent: existing bindings are left alone).

    Raises the client's exceptions (a portal that can't be reached is retried by the caller or the
    periodic reconciliation).
    """
    portal = Portal.objects.get(pk=portal_id)
    client = _client(portal)
    report = BindReport()
    for binding in sorted(app_events_desired(portal=portal)):
        (report.bound if _bind(client, binding) else report.present).append(binding)
    logger.info(
        "events.bind",
        extra={"member_id": portal.member_id, "bound": len(report.bound), "present": len(report.present)},
    )
    return report


def _current(client: Any) -> set[Binding]:
    rows = client.call("event.get", read=True) or []
    current = set()
    for row in rows:
        offline = str(row.get("offline", "0")) in ("1", "true", "True")
        current.add(
            Binding(
                str(row.get("event", "")).upper(), "" if offline else str(row.get("handler", "")), offline
            )
        )
    return current


def app_events_reconcile(*, portal_id: int) -> BindReport:
    """Make the portal's bindings equal the desired ones: bind the missing, unbind our stale ones.

    Only bindings pointing at our receiver (or offline ones) are ever unbound: handlers another
    integration registered under the same app are not ours to remove.
    """
    portal = Portal.objects.get(pk=portal_id)
    client = _client(portal)
    desired = app_events_desired(portal=portal)
    current = _current(client)
    report = BindReport(present=sorted(desired & current))
    for binding in sorted(desired - current):
        _bind(client, binding)
        report.bound.append(binding)
    ours = events_handler_url()
    for binding in sorted(current - desired):
        if binding.offline or binding.handler == ours:
            params: dict[str, Any] = {"event": binding.event, "handler": binding.handler}
            if binding.offline:
                params["event_type"] = "offline"
            client.call("event.unbind", params, read=False)
            report.unbound.append(binding)
    if report.bound or report.unbound:
        logger.warning(
            "events.reconcile.repaired",
            extra={"member_id": portal.member_id, "bound": len(report.bound), "unbound": len(report.unbound)},
        )
    return report


def app_events_reconcile_all() -> dict[str, str]:
    """Reconcile every active portal; one portal's failure doesn't stop the others."""
    results: dict[str, str] = {}
    for portal_id, member_id in Portal.objects.active().values_list("id", "member_id"):
        try:
            report = app_events_reconcile(portal_id=portal_id)
        except Bitrix24Error as e:
            results[member_id] = f"error: {type(e).__name__}"
            logger.warning(
                "events.reconcile.error", extra={"member_id": member_id, "error": type(e).__name__}
            )
            continue
        results[member_id] = f"bound {len(report.bound)}, unbound {len(report.unbound)}"
    return results
