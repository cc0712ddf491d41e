"""The app page and placement handlers, opened by the portal in its iframe by a frame POST."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ..bitrix.exceptions import Bitrix24InboundError
from ..models import Portal
from ..services.frames import Frame, FrameSession, portal_frame_authenticate, portal_restore_from_frame
from .framing import framed_by
from .refusals import refusal_page


def _open(request: HttpRequest) -> tuple[Frame, FrameSession] | HttpResponse:
    """The parsed and authenticated frame POST, or the refusal page to answer with."""
    try:
        frame = Frame.parse(query=request.GET, form=request.POST)
        session = portal_frame_authenticate(frame=frame)
    except Bitrix24InboundError as e:
        return refusal_page(request, e, kind="frame", member_id=request.POST.get("member_id", ""))
    return frame, session


def _render(
    request: HttpRequest, template: str, frame: Frame, session: FrameSession, **extra: object
) -> HttpResponse:
    portal = session.portal
    if portal.state != Portal.State.ACTIVE:
        portal = portal_restore_from_frame(frame=frame, session=session)
    context = {
        "portal": portal,
        "user_id": session.user_id,
        "is_admin": session.is_admin,
        "frame_token": session.signed(),
        "placement": frame.placement,
        "js_sdk_url": settings.BITRIX24_JS_SDK_URL,
        **extra,
    }
    return framed_by(render(request, template, context), portal)


@csrf_exempt  # the portal's cross-site frame POST: authenticated by its tokens instead
@xframe_options_exempt
@require_POST
def app_page(request: HttpRequest) -> HttpResponse:
    opened = _open(request)
    if isinstance(opened, HttpResponse):
        return opened
    return _render(request, "portals/app.html", *opened)


@csrf_exempt
@xframe_options_exempt
@require_POST
def placement(request: HttpRequest, name: str) -> HttpResponse:
    opened = _open(request)
    if isinstance(opened, HttpResponse):
        return opened
    frame, session = opened
    return _render(
        request,
        "portals/placement.html",
        frame,
        session,
        placement_name=name,
        placement_options=dict(frame.placement_options),
    )
