"""The one receiver of Bitrix24 events (all but ONAPPINSTALL, which goes to the install view)."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bitrix_app.client_ip import client_ip
from events.services.intake import event_receive
from portals.bitrix import metrics
from portals.bitrix.events import EventTooLarge
from portals.bitrix.exceptions import Bitrix24InboundError, InvalidEventPayload
from portals.conf import app_settings
from portals.refusals import RefusalLog

logger = logging.getLogger("events")

_FORM = "application/x-www-form-urlencoded"


@csrf_exempt  # Bitrix24 can't send a CSRF token; authenticity is the application_token check.
@require_POST
def receive(request: HttpRequest) -> HttpResponse:
    """Store the event and answer at once; its handlers run later in a worker.

    200 accepted (also duplicates, unhandled events and events of a portal that left);
    400 unparseable; 403 unknown portal, forged token or replayed (stale) event; 413 too large;
    405 not a POST.
    """
    try:
        body = _read_body(request)
        received = event_receive(body=body, now=timezone.now())
    except Bitrix24InboundError as e:
        response = JsonResponse({"error": type(e).__name__, "detail": str(e)}, status=e.http_status)
        if e.http_status >= 400:
            metrics.event_refused(type(e).__name__)
            _log_refusal(type(e).__name__, e.http_status, client_ip(request))
            # Logged once above (and rate-limited); spare django.request its second line per refusal.
            response._has_been_logged = True  # type: ignore[attr-defined]
        return response
    metrics.event_received(received.outcome.value, portal=received.member_id)
    return JsonResponse({"result": received.outcome.value, "id": received.event_id})


# One line per (reason, remote address) every 10 s, with the count suppressed in between: a forged
# flood costs little log volume.
_log_refusal = RefusalLog(logger, "events.refused")


def _read_body(request: HttpRequest) -> bytes:
    """The raw body, after checking its declared size (a body declared too large is never read).

    A request without a usable Content-Length (a chunked body, which the server de-chunks) is read
    from the input stream directly, at most one byte past the limit: never refused for the missing
    header alone.
    """
    limit = app_settings.event_max_bytes
    declared = request.META.get("CONTENT_LENGTH") or ""
    try:
        length: int | None = int(declared)
    except ValueError:
        length = None
    if length is not None and length > limit:
        raise EventTooLarge(f"body larger than {limit} bytes")
    content_type = request.META.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    if content_type and content_type != _FORM:
        raise InvalidEventPayload(f"expected {_FORM}")
    try:
        if length is None:
            body = request.META["wsgi.input"].read(limit + 1) if "wsgi.input" in request.META else b""
            if len(body) > limit:
                raise EventTooLarge(f"body larger than {limit} bytes")
        else:
            body = request.body if length > 0 else b""
    except OSError:
        # The sender went away mid-body (Django's UnreadablePostError is an OSError): a refusal
        # like any other, not a 500 with a traceback per dropped connection.
        raise InvalidEventPayload("body could not be read") from None
    if not body:
        raise InvalidEventPayload("empty body")
    return body
