"""Framing by exactly one portal: CSP frame-ancestors for its origin, no X-Frame-Options.

Only the views that Bitrix24 frames use this (installer, app page, placements); everything else
keeps the site-wide X-Frame-Options: DENY.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpResponse

from ..models import Portal


def portal_origin(portal: Portal) -> str:
    parts = urlsplit(portal.client_endpoint)
    return f"{parts.scheme or 'https'}://{portal.domain}"


def framed_by(response: HttpResponse, portal: Portal) -> HttpResponse:
    """Allow ``portal`` (and only it) to frame ``response``; pair with @xframe_options_exempt."""
    response["Content-Security-Policy"] = f"frame-ancestors 'self' {portal_origin(portal)}"
    return response
