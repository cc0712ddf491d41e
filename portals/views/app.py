"""The app page and placement handlers, opened by the portal in its iframe by a frame POST.

The page speaks the portal's language (``LANG`` of the frame POST, unless the portal's
administrators chose one); what it shows besides the portal's state comes from the layers above
through the ``frame_page_context`` signal (the console: activity, what needs the user's action,
the settings form).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from portals.conf import app_settings

from ..bitrix.exceptions import Bitrix24Error, Bitrix24InboundError
from ..models import Portal
from ..services.frames import Frame, FrameSession, portal_frame_authenticate, portal_restore_from_frame
from ..services.rest import TokenCredentials, rest_call
from ..signals import frame_page_context
from .framing import framed_by
from .inbound import frame_fields
from .refusals import refusal_page

logger = logging.getLogger(__name__)

DEAL_TAB = "CRM_DEAL_DETAIL_TAB"
DEFAULT_DEAL_FIELDS = ("TITLE", "STAGE_ID", "OPPORTUNITY", "CURRENCY_ID")


def _open(request: HttpRequest) -> tuple[Frame, FrameSession] | HttpResponse:
    """The parsed and authenticated frame POST, or the refusal page to answer with."""
    member_id = ""
    try:
        fields = frame_fields(request)
        member_id = fields.member_id
        frame = Frame.from_fields(fields)
        session = portal_frame_authenticate(frame=frame)
    except Bitrix24InboundError as e:
        return refusal_page(request, e, kind="frame", member_id=member_id)
    return frame, session


def page_language(*choices: str) -> str:
    """The first of ``choices`` (a chosen language, the portal's LANG) the app speaks, else the default."""
    for choice in choices:
        try:
            return translation.get_supported_language_variant((choice or "").strip().lower()[:8])
        except LookupError:
            continue
    return str(settings.LANGUAGE_CODE)


def _render(
    request: HttpRequest,
    template: str,
    frame: Frame,
    session: FrameSession,
    more: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> HttpResponse:
    portal = session.portal
    if portal.state != Portal.State.ACTIVE:
        portal = portal_restore_from_frame(frame=frame, session=session)
    provided: dict[str, Any] = {}
    answers = frame_page_context.send(sender=Portal, portal=portal, frame=frame, session=session)
    for _receiver, answer in answers:
        if isinstance(answer, dict):
            provided.update(answer)
    language = page_language(str(provided.get("language") or ""), frame.lang)
    context = {
        **provided,
        "portal": portal,
        "user_id": session.user_id,
        "is_admin": session.is_admin,
        "frame_token": session.signed(),
        "placement": frame.placement,
        "js_sdk_url": app_settings.js_sdk_url,
        "lang": language,
    }
    with translation.override(language):
        if more is not None:
            context.update(more(context))
        response = render(request, template, context)
    response["Content-Language"] = language
    return framed_by(response, portal)


@csrf_exempt  # the portal's cross-site frame POST: authenticated by its tokens instead
@xframe_options_exempt
@require_POST
def app_page(request: HttpRequest) -> HttpResponse:
    opened = _open(request)
    if isinstance(opened, HttpResponse):
        return opened
    return _render(request, "portals/app.html", *opened)


def deal_rows(frame: Frame, session: FrameSession, context: dict[str, Any]) -> dict[str, Any]:
    """The deal a deal tab is opened on, asked with the user's own token (their access rights)."""
    raw_id = str(frame.placement_options.get("ID", ""))
    if frame.placement != DEAL_TAB or not raw_id.isdigit():
        return {}
    portal = session.portal
    credentials = TokenCredentials(
        token=frame.claim.access_token,
        client_endpoint=portal.client_endpoint,
        member_id=portal.member_id,
        plan_name=portal.plan,
    )
    try:
        deal = rest_call(credentials=credentials, method="crm.deal.get", params={"id": int(raw_id)})
    except Bitrix24Error as e:
        extra = {"member_id": portal.member_id, "error": type(e).__name__}
        logger.info("portal.deal_tab_failed", extra=extra)
        return {"deal_id": raw_id, "deal_error": getattr(e, "code", "") or type(e).__name__}
    labels = context.get("deal_field_labels") or {}
    fields = context.get("deal_fields") or DEFAULT_DEAL_FIELDS
    rows = [(labels.get(name, name), (deal or {}).get(name)) for name in fields]
    return {"deal_id": raw_id, "deal_rows": rows}


@csrf_exempt
@xframe_options_exempt
@require_POST
def placement(request: HttpRequest, name: str) -> HttpResponse:
    opened = _open(request)
    if isinstance(opened, HttpResponse):
        return opened
    frame, session = opened

    def more(context: dict[str, Any]) -> dict[str, Any]:
        return {
            "placement_name": name,
            "placement_options": dict(frame.placement_options),
            **deal_rows(frame, session, context),
        }

    return _render(request, "portals/placement.html", frame, session, more)
