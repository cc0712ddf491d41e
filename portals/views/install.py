"""The installer URL: the installer page's frame POST, the ONAPPINSTALL event, and the page's status."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from django.core import signing
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from portals.conf import app_settings

from ..bitrix.events import event_credentials, parse_event_fields
from ..bitrix.exceptions import Bitrix24InboundError
from ..bitrix.inbound import split_form
from ..services.frames import Frame
from ..services.install import install_claim_from_event, portal_install
from ..services.setup import portal_setup_state
from .framing import framed_by
from .inbound import form_body, frame_fields
from .refusals import log_refusal, refusal_page

logger = logging.getLogger(__name__)

STATUS_SALT = "portals.install-status"
STATUS_MAX_AGE = 3600  # seconds an installer page may keep asking


@csrf_exempt  # a cross-site POST from the portal (or its event queue): verified by the service
@xframe_options_exempt
@require_POST
def install(request: HttpRequest) -> HttpResponse:
    """Frame POST → verified install → a page that calls installFinish. ONAPPINSTALL → 200 "OK"."""
    member_id = ""
    try:
        form = split_form(form_body(request), empty_ok=True)
        if str(form.get("event", "")).upper() == "ONAPPINSTALL":
            return _install_event(request, form)
        fields = frame_fields(request)
        member_id = fields.member_id
        portal = portal_install(claim=Frame.from_fields(fields).claim)
    except Bitrix24InboundError as e:
        return refusal_page(request, e, kind="install", member_id=member_id)
    # The page calls installFinish only once our events are bound (protocol §1.3: the one-off setup
    # first), asking install_status with this token; until then the portal delivers nothing anyway.
    installed_at = portal.installed_at.timestamp() if portal.installed_at else 0.0
    token = signing.dumps({"portal": portal.pk, "installed_at": installed_at}, salt=STATUS_SALT)
    context = {
        "portal": portal,
        "js_sdk_url": app_settings.js_sdk_url,
        "status_url": reverse("portals:install_status") + "?" + urlencode({"token": token}),
    }
    return framed_by(render(request, "portals/install.html", context), portal)


@require_GET
def install_status(request: HttpRequest) -> JsonResponse:
    """``{"state": "pending"|"done"|"failed"}``: whether the app's events are bound for the install
    the signed ``token`` (from the installer page) stands for. 403 for a bad or expired token."""
    try:
        claim = signing.loads(request.GET.get("token", ""), salt=STATUS_SALT, max_age=STATUS_MAX_AGE)
        state = portal_setup_state(portal_id=int(claim["portal"]), installed_at=float(claim["installed_at"]))
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return JsonResponse({"error": "bad or expired token"}, status=403)
    return JsonResponse({"state": state}, headers={"Cache-Control": "no-store"})


def _install_event(request: HttpRequest, form: dict[str, Any]) -> HttpResponse:
    try:
        # Parsed as every event is (ts and tokens required).
        event_credentials(form)
        payload = parse_event_fields(form)
        portal_install(claim=install_claim_from_event({"auth": {**payload.auth, **payload.secrets}}))
    except Bitrix24InboundError as e:
        log_refusal(request, e, kind="install")
        return HttpResponse("refused", status=e.http_status, content_type="text/plain")
    return HttpResponse("OK", content_type="text/plain")
