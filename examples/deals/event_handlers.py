"""Handlers of the example feature: what a CRM feature does with the deal events it registers for."""

from __future__ import annotations

import logging

from events.registry import on_event
from portals.bitrix.events import EventPayload
from portals.bitrix.exceptions import Bitrix24NotFound
from portals.models import Portal
from portals.services.client import client_for_portal

logger = logging.getLogger("examples.deals")


@on_event("ONCRMDEALADD", "ONCRMDEALUPDATE")
def deal_changed(*, portal: Portal, payload: EventPayload) -> None:
    """Events carry only the deal's id, so fetch the deal itself (its current state)."""
    deal_id = payload.object_id
    if not deal_id:
        return
    try:
        deal = client_for_portal(member_id=portal.member_id).call("crm.deal.get", {"id": deal_id})
    except Bitrix24NotFound:
        # Deleted since: the ONCRMDEALDELETE that follows says so.
        logger.info("deal.gone", extra={"member_id": portal.member_id, "deal_id": deal_id})
        return
    logger.info(
        "deal.changed",
        extra={
            "member_id": portal.member_id,
            "event": payload.event,
            "deal_id": deal_id,
            "stage": (deal or {}).get("STAGE_ID"),
        },
    )


@on_event("ONCRMDEALDELETE")
def deal_deleted(*, portal: Portal, payload: EventPayload) -> None:
    logger.info("deal.deleted", extra={"member_id": portal.member_id, "deal_id": payload.object_id})
