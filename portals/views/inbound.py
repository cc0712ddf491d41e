"""What a request carries, as bytes, for the one strict parser (``portals.bitrix.inbound``).

Views never read Bitrix24's fields through ``request.GET``/``request.POST``: Django's parsers
replace undecodable bytes instead of refusing them, and keep the last of repeated keys.
"""

from __future__ import annotations

from django.core.handlers.wsgi import WSGIRequest, get_bytes_from_wsgi
from django.http import HttpRequest

from ..bitrix.exceptions import MalformedRequest
from ..bitrix.inbound import FrameFields, OAuthCallback, parse_frame, parse_oauth_callback

FORM = "application/x-www-form-urlencoded"


def query_bytes(request: HttpRequest) -> bytes:
    """The query string as the client sent it.

    A WSGI server hands it over as latin-1 text (PEP 3333), which gives the bytes back; Django's ASGI
    handler has already decoded it as UTF-8.
    """
    if isinstance(request, WSGIRequest):
        return get_bytes_from_wsgi(request.META, "QUERY_STRING", "")
    return str(request.META.get("QUERY_STRING", "")).encode()


def form_body(request: HttpRequest) -> bytes:
    """The body of a form POST; raises MalformedRequest (400) for any other kind of body.

    Bitrix24 submits frames and events as plain HTML forms, never as multipart.
    """
    body = request.body
    if body and request.content_type not in ("", FORM):
        raise MalformedRequest(f"expected {FORM}")
    return body


def frame_fields(request: HttpRequest) -> FrameFields:
    """The frame POST's fields; raises MalformedRequest (400)."""
    return parse_frame(query=query_bytes(request), body=form_body(request))


def oauth_callback_fields(request: HttpRequest) -> OAuthCallback:
    """The code flow's callback; raises MalformedRequest (400)."""
    return parse_oauth_callback(query_bytes(request))
