"""The one door for what Bitrix24 sends us: every form body and query string is split here, strictly.

What arrives, and what parses it:

- an event POST (and ONAPPINSTALL): :func:`split_form`, then :mod:`.events` builds the payload;
- a frame POST, the portal opening the app in its iframe (the installer, the app page, a
  placement; protocol §1.2): :func:`parse_frame` → :class:`FrameFields`;
- the OAuth code flow's redirect back to us (protocol §2): :func:`parse_oauth_callback` →
  :class:`OAuthCallback`.

Strict means: UTF-8 or refused, a bounded number of fields, no NUL, a field Bitrix24 sends once sent
once. Everything refused raises :class:`MalformedRequest` (400) with a reason fit for the answer,
never a value. Nothing here decides whether the request is genuine: that is the confirmation
service's job (``portals.services.confirm``). Free of Django, like the rest of the package.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from .exceptions import MalformedRequest

__all__ = [
    "MAX_FIELDS",
    "FrameFields",
    "MalformedRequest",
    "OAuthCallback",
    "parse_frame",
    "parse_oauth_callback",
    "split_form",
]

# A bound on work per request: an event with every custom field stays far below it.
MAX_FIELDS = 2000


def split_form(
    body: bytes, *, empty_ok: bool = False, error: type[MalformedRequest] = MalformedRequest
) -> dict[str, Any]:
    """The flat fields of a form body or query string, bracket keys not nested (``{"auth[member_id]": ...}``).

    The standard library's parser does the percent-decoding (fast, strict about UTF-8, bounded in
    field count); a key sent more than once keeps all its values as a list, as qs-codec expects.
    Raises ``error`` (a :class:`MalformedRequest`), so each caller's refusals keep their own name.
    """
    if not body.strip():
        if empty_ok:
            return {}
        raise error("empty body")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except UnicodeDecodeError:
        raise error("not UTF-8") from None
    except ValueError:
        raise error(f"malformed form: more than {MAX_FIELDS} fields") from None
    # No text a Bitrix24 object holds contains NUL, and PostgreSQL can't store one in jsonb: refused
    # here, it can't fail the INSERT it would share with other events (group commit).
    if "%00" in text or "\x00" in text:
        raise error("NUL character in the body")
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if key in fields:
            previous = fields[key]
            fields[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[key] = value
    return fields


def _single(fields: Mapping[str, Any], name: str, *, where: str) -> str:
    value = fields.get(name, "")
    if isinstance(value, list):
        raise MalformedRequest(f"{name!r} sent more than once in the {where}")
    return str(value)


@dataclass(frozen=True)
class FrameFields:
    """A frame POST: DOMAIN, PROTOCOL and LANG in the query string, the rest in the body (§1.2).

    What it claims (portal, user, tokens) is not trusted: the services confirm it with Bitrix24.
    """

    member_id: str
    domain: str
    https: bool
    server_endpoint: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    application_token: str = field(repr=False)
    placement: str
    placement_options: Mapping[str, Any]
    lang: str


def parse_frame(*, query: bytes, body: bytes) -> FrameFields:
    """The fields of a frame POST; raises :class:`MalformedRequest`.

    A body without fields is a frame that claims nothing (the services refuse it as no portal's).
    """
    query_fields = split_form(query, empty_ok=True)
    form = split_form(body, empty_ok=True)

    def claimed(name: str) -> str:
        # DOMAIN and PROTOCOL come in the query string; old installers put them in the body.
        return _single(query_fields, name, where="query") or _single(form, name, where="body")

    options_raw = _single(form, "PLACEMENT_OPTIONS", where="body")
    try:
        options = json.loads(options_raw) if options_raw else {}
    except ValueError:
        raise MalformedRequest("PLACEMENT_OPTIONS is not JSON") from None
    if not isinstance(options, dict):
        raise MalformedRequest("PLACEMENT_OPTIONS is not a JSON object")
    return FrameFields(
        member_id=_single(form, "member_id", where="body"),
        domain=claimed("DOMAIN"),
        https=(claimed("PROTOCOL") or "1") != "0",
        server_endpoint=_single(form, "SERVER_ENDPOINT", where="body"),
        access_token=_single(form, "AUTH_ID", where="body"),
        refresh_token=_single(form, "REFRESH_ID", where="body"),
        application_token=_single(form, "APPLICATION_TOKEN", where="body"),
        placement=_single(form, "PLACEMENT", where="body") or "DEFAULT",
        placement_options=options,
        lang=(claimed("LANG") or "en")[:8],
    )


@dataclass(frozen=True)
class OAuthCallback:
    """The code flow's redirect back to us: ``code``, ``state`` and the portal it names (§2)."""

    code: str = field(repr=False)
    state: str = field(repr=False)
    member_id: str
    domain: str


def parse_oauth_callback(query: bytes) -> OAuthCallback:
    """The callback's query string; raises :class:`MalformedRequest` without a code and a state."""
    fields = split_form(query, empty_ok=True)
    callback = OAuthCallback(
        code=_single(fields, "code", where="query"),
        state=_single(fields, "state", where="query"),
        member_id=_single(fields, "member_id", where="query"),
        domain=_single(fields, "domain", where="query"),
    )
    if not callback.code or not callback.state:
        raise MalformedRequest("the authorisation answer carries no code and state")
    return callback
