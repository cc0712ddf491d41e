"""Framing by exactly one portal: CSP frame-ancestors for its origin, no X-Frame-Options.

Only the views that Bitrix24 frames use this (installer, app page, placements); everything else
keeps the site-wide X-Frame-Options: DENY.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpResponse

from portals.conf import app_settings

from ..models import Portal


def portal_origin(portal: Portal) -> str:
    parts = urlsplit(portal.client_endpoint)
    return f"{parts.scheme or 'https'}://{portal.domain}"


def frame_ancestors(portal: Portal) -> list[str]:
    """The CSP sources allowed to frame the app for ``portal``: its own origin only.

    With BITRIX24_ALLOW_HTTP (development and the sandbox, never production) also plain http on any
    port of the portal's host: the sandbox shows its portal page on an http listener beside the
    https one, because browsers don't trust its self-signed CA.
    """
    sources = [portal_origin(portal)]
    if app_settings.allow_http:
        host = urlsplit(f"//{portal.domain}").hostname
        if host:
            sources.append(f"http://[{host}]:*" if ":" in host else f"http://{host}:*")
    return sources


def framed_by(response: HttpResponse, portal: Portal) -> HttpResponse:
    """Allow ``portal`` (and only it) to frame ``response``; pair with @xframe_options_exempt."""
    response["Content-Security-Policy"] = "frame-ancestors 'self' " + " ".join(frame_ancestors(portal))
    return response
