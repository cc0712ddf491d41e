"""Re-authorisation by the OAuth code flow: start (staff or the app page) and callback."""

from __future__ import annotations

import logging

from django.contrib.admin.views.decorators import staff_member_required
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from ..bitrix.exceptions import (
    AdministratorRequired,
    Bitrix24ConfigError,
    InvalidInstallRequest,
    MalformedRequest,
)
from ..models import Portal
from ..services.frames import frame_session_from_signed
from ..services.reauth import portal_reauth_complete, portal_reauth_start
from .inbound import oauth_callback_fields
from .refusals import refusal_page

logger = logging.getLogger(__name__)


@require_GET
def oauth_start(request: HttpRequest) -> HttpResponse:
    """Redirect to the portal's /oauth/authorize/.

    Who may start it: a signed-in staff member (``?portal=<member_id>``, from the admin) or the
    app page itself (``?frame=<signed token>``, issued to an authenticated frame of a portal
    administrator). Either way only an administrator of the portal can complete it: the callback
    checks the user the code was issued to.
    """
    frame_token = request.GET.get("frame", "")
    if frame_token:
        try:
            frame = frame_session_from_signed(frame_token)
        except signing.BadSignature:
            return refusal_page(request, InvalidInstallRequest("bad or expired frame token"), kind="oauth")
        if not frame.is_admin:
            error = AdministratorRequired("re-authorisation needs an administrator of the portal")
            return refusal_page(request, error, kind="oauth")
        portal = get_object_or_404(Portal, pk=frame.portal_id)
        return _redirect(portal)
    return _staff_start(request)


@staff_member_required
def _staff_start(request: HttpRequest) -> HttpResponse:
    portal = get_object_or_404(Portal, member_id=request.GET.get("portal", ""))
    return _redirect(portal)


def _redirect(portal: Portal) -> HttpResponse:
    try:
        return HttpResponseRedirect(portal_reauth_start(portal=portal))
    except Bitrix24ConfigError:
        logger.warning("portal.reauth_misconfigured", extra={"member_id": portal.member_id})
        message = "This portal's OAuth server is not allowed."
        return HttpResponse(message, status=409, content_type="text/plain")


@require_GET
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """Bitrix24 redirects here with code, state, domain, member_id, scope, server_domain."""
    member_id = ""
    try:
        callback = oauth_callback_fields(request)
        member_id = callback.member_id
        portal = portal_reauth_complete(
            state=callback.state, code=callback.code, member_id=callback.member_id
        )
    except (InvalidInstallRequest, MalformedRequest) as e:
        return refusal_page(request, e, kind="oauth", member_id=member_id)
    return render(request, "portals/reauthorised.html", {"portal": portal})
