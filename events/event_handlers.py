"""Built-in handlers: the app's lifecycle and offline notifications.

Lifecycle events are applied in the order they happened: an event older than the portal's current
installation (``ts < installed_at``) belongs to an earlier installation and changes nothing.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from events.models import Event
from events.registry import on_event
from events.services.binding import app_events_bind
from events.tasks import events_offline_drain
from portals.bitrix.events import EventPayload
from portals.models import Portal
from portals.services.lifecycle import portal_payment_changed, portal_uninstall

logger = logging.getLogger("events")


def _latest_moment(payload: EventPayload) -> datetime | None:
    """The latest instant the event can stand for: ``ts`` has whole seconds, installed_at doesn't.

    Without this, an uninstall in the same second as the install (ts 12:00:00 vs installed_at
    12:00:00.7) would look older than the install and be ignored.
    """
    return payload.ts + timedelta(microseconds=999_999) if payload.ts else None


def _from_earlier_installation(portal: Portal, payload: EventPayload) -> bool:
    moment = _latest_moment(payload)
    return bool(portal.installed_at and moment and moment < portal.installed_at)


@on_event("ONAPPUNINSTALL", atomic=False)
def app_uninstalled(*, portal: Portal, payload: EventPayload) -> None:

    clean = str(payload.data.get("CLEAN", "0")) in ("1", "Y", "true")
    # portal_uninstall ignores an event older than the current installation (a late uninstall),
    # and one Bitrix24 doesn't confirm (any user of the portal can forge it).
    if not portal_uninstall(portal=portal, clean=clean, event_ts=_latest_moment(payload)):
        _release_idempotency_key(portal, payload)


def _release_idempotency_key(portal: Portal, payload: EventPayload) -> None:
    """Let a later event with the same key be stored: a forged copy must not stand in for it.

    A forger who sends an event Bitrix24 is about to send (same event, data and second) would
    otherwise have the genuine one dropped as its duplicate.
    """
    Event.objects.filter(portal=portal, idempotency_key=payload.idempotency_key()).update(
        idempotency_key=f"released:{secrets.token_hex(24)}"
    )


@on_event("ONAPPUPDATE", atomic=False)
def app_updated(*, portal: Portal, payload: EventPayload) -> None:
    """Re-bind the app's events: Bitrix24 drops an app's bindings when the app is updated.

    The new application_token was stored by the receiver before it answered (see
    events.services.intake), so a late ONAPPUPDATE can never bring back an older token.
    """

    if _from_earlier_installation(portal, payload):
        logger.info("events.app_update.stale", extra={"member_id": portal.member_id})
        return
    app_events_bind(portal_id=portal.pk)


@on_event("ONAPPPAYMENT", atomic=False)
def app_payment(*, portal: Portal, payload: EventPayload) -> None:

    if _from_earlier_installation(portal, payload):
        return
    portal_payment_changed(portal=portal)


@on_event("ONOFFLINEEVENT", atomic=False)
def offline_queue_has_records(*, portal: Portal, payload: EventPayload) -> None:

    events_offline_drain.delay(portal.pk)
