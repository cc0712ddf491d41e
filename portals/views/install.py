"""The installer URL: the installer page's frame POST and the ONAPPINSTALL event."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ..bitrix.events import parse_event_body
from ..bitrix.exceptions import Bitrix24InboundError
from ..services.frames import Frame
from ..services.install import install_claim_from_event, portal_install
from .framing import framed_by
from .refusals import refusal_page

logger = logging.getLogger(__name__)


@csrf_exempt  # a cross-site POST from the portal (or its event queue): verified by the service
@xframe_options_exempt
@require_POST
def install(request: HttpRequest) -> HttpResponse:
    """Frame POST → verified install → a page that calls installFinish. ONAPPINSTALL → 200 "OK"."""
    if request.POST.get("event", "").upper() == "ONAPPINSTALL":
        return _install_event(request)
    member_id = request.POST.get("member_id", "")
    try:
        frame = Frame.parse(query=request.GET, form=request.POST)
        portal = portal_install(claim=frame.claim)
    except Bitrix24InboundError as e:
        return refusal_page(request, e, kind="install", member_id=member_id)
    context = {"portal": portal, "js_sdk_url": settings.BITRIX24_JS_SDK_URL}
    return framed_by(render(request, "portals/install.html", context), portal)


def _install_event(request: HttpRequest) -> HttpResponse:
    try:
        # The strict form parser of every event (UTF-8, bounded, ts and tokens required).
        payload = parse_event_body(request.body)
        portal_install(claim=install_claim_from_event({"auth": {**payload.auth, **payload.secrets}}))
    except Bitrix24InboundError as e:
        extra = {"cause": type(e).__name__, "reason": str(e), "remote": request.META.get("REMOTE_ADDR", "")}
        logger.warning("portal.install_refused", extra=extra)
        return HttpResponse("refused", status=e.http_status, content_type="text/plain")
    return HttpResponse("OK", content_type="text/plain")
