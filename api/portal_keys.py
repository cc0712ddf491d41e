"""The portal administrator's view of the portal's API keys, opened from the app page.

A key exposes the portal's CRM and its people's personal data outside Bitrix24's own rights, so
the portal's administrator sees every key that covers the portal, whoever made it, and can revoke
it or make one. The page lives in the portal's iframe (no cookies there): it is authenticated by
the app page's signed frame token (portals.services.frames), whose ``is_admin`` Bitrix24 confirmed
with ``user.admin`` when the frame opened. Only administrators get the page.
"""

from __future__ import annotations

from typing import Any

from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from portals.models import Portal
from portals.services.frames import frame_session_from_signed
from portals.views.framing import framed_by

from .errors import ApiError
from .models import ApiKey
from .services.keys import SCOPES, apikey_create, apikey_revoke

MAX_FORM_FIELD = 200


def keys_page_url(frame_token: str) -> str:
    """Where the app page links to (the token is the one it was rendered with)."""
    return f"{reverse('api-portal-keys')}?frame={frame_token}"


def _refuse(status: int, message: str) -> HttpResponse:
    response = HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    response["Content-Security-Policy"] = "frame-ancestors 'none'"
    return response


@csrf_exempt  # a cross-site form inside the portal's iframe: the signed frame token authenticates it
@xframe_options_exempt
@require_http_methods(["GET", "POST"])
def portal_keys(request: HttpRequest) -> HttpResponse:
    token = (request.POST.get("frame") if request.method == "POST" else request.GET.get("frame")) or ""
    try:
        frame = frame_session_from_signed(token[:1000])
    except signing.BadSignature:
        return _refuse(
            403, "This page opens from the app in your Bitrix24 (the link has expired: open the app again)."
        )
    if not frame.is_admin:
        return _refuse(403, "Only an administrator of the portal manages its API keys.")
    portal = Portal.objects.filter(pk=frame.portal_id).exclude(state=Portal.State.UNINSTALLED).first()
    if portal is None:
        return _refuse(404, "The app is not installed on this portal.")
    context: dict[str, Any] = {"portal": portal, "frame_token": token, "scopes": SCOPES}
    status = 200
    if request.method == "POST":
        try:
            context.update(_act(request, portal, frame.user_id))
        except ApiError as e:
            context["error"], status = e.message, e.status
    context["keys"] = ApiKey.objects.filter(portals=portal).order_by("-created_at")
    return framed_by(render(request, "api/keys.html", context, status=status), portal)


def _act(request: HttpRequest, portal: Portal, user_id: int | None) -> dict[str, Any]:
    action = request.POST.get("action")
    if action == "revoke":
        key = ApiKey.objects.filter(portals=portal, prefix=request.POST.get("prefix", "")[:16]).first()
        if key is None:
            raise ApiError("no such key")
        apikey_revoke(key=key, reason=f"revoked by the portal's administrator (user {user_id})")
        return {"done": f"Key {key.name} revoked."}
    if action == "create":
        days = request.POST.get("expires_days", "").strip()
        key, raw = apikey_create(
            name=request.POST.get("name", "")[:MAX_FORM_FIELD],
            portals=[portal],
            scopes=request.POST.getlist("scopes"),
            expires_days=float(days) if days.isdigit() else None,
            allow_ips=request.POST.get("allow_ips", "")[:MAX_FORM_FIELD].split(","),
            created_by=f"portal administrator (user {user_id})",
        )
        return {"created": key, "raw_key": raw}
    raise ApiError("unknown action")
