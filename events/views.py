"""The one receiver of Bitrix24 events (all but ONAPPINSTALL, which goes to the install view)."""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from events.services.intake import event_receive
from portals.bitrix.events import EventTooLarge
from portals.bitrix.exceptions import Bitrix24InboundError, InvalidEventPayload

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
            _log_refusal(type(e).__name__, e.http_status, request.META.get("REMOTE_ADDR", ""))
            # Logged once above (and rate-limited); spare django.request its second line per refusal.
            response._has_been_logged = True  # type: ignore[attr-defined]
        return response
    return JsonResponse({"result": received.outcome.value, "id": received.event_id})


class _RefusalLog:
    """At most one log line per (reason, remote) every ``interval`` seconds, with the count.

    A forged flood must cost less than real traffic, including in log volume.
    """

    def __init__(self, interval: float = 10.0):
        self.interval = interval
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, reason: str, status: int, remote: str) -> None:
        now = time.monotonic()
        key = (reason, remote)
        with self._lock:
            last, suppressed = self._seen.get(key, (0.0, 0))
            if last and now - last < self.interval:
                self._seen[key] = (last, suppressed + 1)
                return
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[key] = (now, 0)
        logger.warning(
            "events.refused",
            extra={"status": status, "reason": reason, "remote": remote, "suppressed": suppressed},
        )


_log_refusal = _RefusalLog()


def _read_body(request: HttpRequest) -> bytes:
    """The raw body, after checking its declared size (a body declared too large is never read).

    A request without a usable Content-Length (a chunked body, which the server de-chunks) is read
    from the input stream directly, at most one byte past the limit: never refused for the missing
    header alone.
    """
    limit = settings.BITRIX24_EVENT_MAX_BYTES
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
    if length is None:
        body = request.META["wsgi.input"].read(limit + 1) if "wsgi.input" in request.META else b""
        if len(body) > limit:
            raise EventTooLarge(f"body larger than {limit} bytes")
    else:
        body = request.body if length > 0 else b""
    if not body:
        raise InvalidEventPayload("empty body")
    return body
