"""The mirror's event handlers: registering them is what binds the CRM events on every portal."""

from __future__ import annotations

from events.registry import PermanentEventError, on_event
from portals.bitrix.crm import to_int
from portals.bitrix.events import EventPayload
from portals.models import Portal

from .entities import BY_EVENT, ENTITIES
from .services.incremental import object_changed, object_deleted

_CHANGES = [event for e in ENTITIES.values() for event in e.events if not event.endswith("DELETE")]
_DELETES = [event for e in ENTITIES.values() for event in e.events if event.endswith("DELETE")]


def _object(payload: EventPayload) -> int:
    ident = to_int(payload.object_id)
    if ident is None or ident <= 0:
        raise PermanentEventError(f"{payload.event} without a usable object id")
    return ident


@on_event(*_CHANGES)
def crm_object_changed(*, portal: Portal, payload: EventPayload) -> None:
    object_changed(portal_id=portal.pk, entity=BY_EVENT[payload.event.upper()], bitrix_id=_object(payload))


@on_event(*_DELETES)
def crm_object_deleted(*, portal: Portal, payload: EventPayload) -> None:
    object_deleted(portal_id=portal.pk, entity=BY_EVENT[payload.event.upper()], bitrix_id=_object(payload))
