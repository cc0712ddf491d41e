"""The answer to a refused frame, install or re-authorisation: a page, never framable by strangers.

A refusal page may be opened inside a portal's iframe (a user who isn't an administrator opening
the installer), so it may be framed by the portal the request names, and by nobody else: a
request naming no known portal gets the site-wide X-Frame-Options: DENY.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from bitrix_app.client_ip import client_ip

from ..bitrix.exceptions import AdministratorRequired, Bitrix24InboundError
from ..models import Portal
from ..refusals import RefusalLog
from ..services.endpoints import normalise_member_id
from .framing import framed_by

logger = logging.getLogger(__name__)
# One line per (cause, remote address) every 10 s per kind, with the count suppressed in between.
_logs = {kind: RefusalLog(logger, f"portal.{kind}_refused") for kind in ("install", "frame", "oauth")}


def log_refusal(request: HttpRequest, error: Bitrix24InboundError, *, kind: str) -> None:
    """Log a refused install, frame or OAuth request (rate-limited), with its detail."""
    remote = client_ip(request)
    _logs[kind](type(error).__name__, error.http_status, remote, context={"detail": str(error)})


def refusal_page(
    request: HttpRequest, error: Bitrix24InboundError, *, kind: str, member_id: str = ""
) -> HttpResponse:
    """Log the refusal (rate-limited) and answer ``error.http_status`` with an explanation.

    ``kind`` is what was refused: "install", "frame" or "oauth"; ``member_id`` the portal the
    request names (unverified: it only decides which origin may frame this static page).
    """
    reason = "admin" if isinstance(error, AdministratorRequired) else kind
    extra = {
        "cause": type(error).__name__,
        "reason": str(error),
        "remote": client_ip(request),
    }
    logger.warning(f"portal.{kind}_refused", extra=extra)
    response = render(request, "portals/refused.html", {"reason": reason}, status=error.http_status)
    member_id = normalise_member_id(member_id)
    portal = Portal.objects.filter(member_id=member_id).first() if member_id else None
    if portal is not None and portal.state != Portal.State.UNINSTALLED:
        return framed_by(response, portal)
    response["X-Frame-Options"] = "DENY"
    response["Content-Security-Policy"] = "frame-ancestors 'none'"
    return response
