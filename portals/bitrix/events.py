"""Inbound Bitrix24 events: parsing, verification and identity, free of Django.

Bitrix24 POSTs every event as ``application/x-www-form-urlencoded`` with PHP-style bracket keys
(``auth[member_id]``, ``data[FIELDS][ID]``), split by the one strict splitter of everything Bitrix24
sends (:func:`.inbound.split_form`). :func:`parse_event_body` turns such a body into an
:class:`EventPayload`; :func:`parse_offline_record` does the same for a record of
``event.offline.get``. The authenticity check is :func:`verify_application_token` (constant time);
:func:`check_event_age` refuses replays of captured online events.

Secrets (``access_token``, ``refresh_token``, ``application_token``) are kept apart from the rest of
the payload: :attr:`EventPayload.auth` never contains them, so a payload can be stored and logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from qs_codec import DecodeOptions, decode

from .exceptions import Bitrix24InboundError, InvalidApplicationToken, InvalidEventPayload
from .inbound import MAX_FIELDS, split_form
from .values import unix_ts

__all__ = [
    "LIFECYCLE_EVENTS",
    "SECRET_AUTH_KEYS",
    "EventPayload",
    "EventTooLarge",
    "StaleEvent",
    "check_event_age",
    "event_credentials",
    "parse_event_body",
    "parse_event_fields",
    "parse_offline_record",
    "token_digest",
    "verify_application_token",
]

# Auth keys that grant access or prove authenticity: never stored in clear, never logged.
SECRET_AUTH_KEYS = frozenset({"access_token", "refresh_token", "application_token"})

# Events about the installation itself: ordered per portal (one object), applied by their ts.
LIFECYCLE_EVENTS = frozenset({"ONAPPINSTALL", "ONAPPUPDATE", "ONAPPUNINSTALL", "ONAPPPAYMENT"})

_EVENT_NAME = re.compile(r"^[A-Z][A-Z0-9_]{1,99}$")
_MEMBER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# An object's id ends up in an index: bound its size and alphabet.
_OBJECT_ID = re.compile(r"^[A-Za-z0-9_:.-]{1,64}$")
# ONCRMDEALADD / ONCRMDEALUPDATE / ONCRMDEALDELETE all concern the same deal: drop the verb so the
# three share one ordering key.
_ACTION_SUFFIX = re.compile(r"(ADD|UPDATE|DELETE|SET|CHANGE|RESTORE|MOVE)$")

# Depth: nested custom fields (data[FIELDS_AFTER][UF_CRM_1][0][VALUE]) go deeper than qs's 5.
# Parameter limit: a bound on work per request, raised rather than silently truncated.
_AUTH_KEY = re.compile(r"^auth\[([A-Za-z0-9_]+)\]$")
_DECODE_OPTIONS = DecodeOptions(
    depth=20, list_limit=1000, parameter_limit=MAX_FIELDS, raise_on_limit_exceeded=True, strict_merge=False
)


class StaleEvent(Bitrix24InboundError):
    """An online event whose ts is far outside the accepted window: a replay, refused."""

    http_status = 403


class EventTooLarge(Bitrix24InboundError):
    """The body is larger than any real event: refused before it is read."""

    http_status = 413


@dataclass(frozen=True, slots=True)
class EventPayload:
    """One event as Bitrix24 sent it, secrets held apart.

    ``auth`` holds the non-secret context (domain, member_id, user_id, endpoints, scope, status);
    ``secrets`` the keys of :data:`SECRET_AUTH_KEYS` that were present. ``ts`` is when Bitrix24's
    queue sent the event (online) or recorded the change (offline); ``None`` only if it was absent.
    """

    event: str
    member_id: str
    data: dict[str, Any]
    auth: dict[str, Any]
    ts: datetime | None
    event_handler_id: str = ""
    offline: bool = False
    message_id: str = ""
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def application_token(self) -> str:
        return self.secrets.get("application_token", "")

    @property
    def is_lifecycle(self) -> bool:
        return self.event in LIFECYCLE_EVENTS

    @property
    def object_id(self) -> str:
        """The changed object's id or "" when the event names none.

        ``data[FIELDS][ID]`` for CRM events; task events send ``FIELDS_AFTER`` / ``FIELDS_BEFORE``.
        """
        for section in ("FIELDS", "FIELDS_AFTER", "FIELDS_BEFORE"):
            fields = self.data.get(section)
            value = fields.get("ID") if isinstance(fields, dict) else None
            if value is None or isinstance(value, dict | list):
                continue
            text = str(value)
            return text if _OBJECT_ID.match(text) else ""
        return ""

    @property
    def object_key(self) -> str:
        """What ordering is kept within: the portal itself for lifecycle events, else the object.

        ``ONCRMDEALUPDATE`` with deal 5 → ``ONCRMDEAL:5``; an event without an object id is ordered
        with the other events of its name.
        """
        if self.is_lifecycle:
            return "app"
        object_id = self.object_id
        if not object_id:
            return self.event
        return f"{_ACTION_SUFFIX.sub('', self.event) or self.event}:{object_id}"

    def idempotency_key(self) -> str:
        """A digest that is equal for two deliveries of one change and differs for two changes.

        It identifies the change: the event, the object, ts and all of ``data`` -- not only the object
        id -- so two changes of one deal within one second that differ in their data stay two events;
        an offline record is identified by its MESSAGE_ID as well. Not covered on purpose: whom it
        is delivered as and through which binding -- ``auth[user_id]`` (a binding's ``auth_type``
        picks the user whose token comes with it, so one change arrives once per binding, each as a
        different user), event_handler_id -- and the tokens. So two changes of one object in the same
        second with identical data are one change; nothing is lost, handlers fetch current state.
        """
        parts = {
            "event": self.event,
            "object": self.object_id,
            "ts": int(self.ts.timestamp()) if self.ts else None,
            "data": self.data,
            "offline": self.offline,
            "message": self.message_id,
        }
        canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def as_json(self) -> dict[str, Any]:
        """The storable (secret-free) form; :func:`payload_from_json` reads it back."""
        return {
            "event": self.event,
            "event_handler_id": self.event_handler_id,
            "data": self.data,
            "ts": int(self.ts.timestamp()) if self.ts else None,
            "auth": self.auth,
            "offline": self.offline,
            "message_id": self.message_id,
        }


def payload_from_json(stored: Mapping[str, Any], *, secrets: Mapping[str, str] | None = None) -> EventPayload:
    """Rebuild an :class:`EventPayload` from :meth:`EventPayload.as_json` output."""
    auth = dict(stored.get("auth") or {})
    ts = stored.get("ts")
    return EventPayload(
        event=str(stored["event"]),
        member_id=str(auth.get("member_id", "")),
        data=dict(stored.get("data") or {}),
        auth=auth,
        ts=datetime.fromtimestamp(int(ts), tz=UTC) if ts is not None else None,
        event_handler_id=str(stored.get("event_handler_id") or ""),
        offline=bool(stored.get("offline")),
        message_id=str(stored.get("message_id") or ""),
        secrets=dict(secrets or {}),
    )


def event_credentials(fields: Mapping[str, Any], *, require_ts: bool = True) -> tuple[str, str]:
    """``(member_id, application_token)`` from the flat fields, checked before anything is nested.

    Verification needs only these two values, so a forged event is refused without paying for the
    full parse. Raises :class:`InvalidEventPayload` when ``event``, ``ts`` or either value is
    missing or malformed.
    """
    event = fields.get("event")
    if not isinstance(event, str) or not _EVENT_NAME.match(event.upper()):
        raise InvalidEventPayload("missing or malformed 'event'")
    member_id = fields.get("auth[member_id]")
    if not isinstance(member_id, str) or not _MEMBER_ID.match(member_id):
        raise InvalidEventPayload("missing or malformed 'auth[member_id]'")
    token = fields.get("auth[application_token]")
    if not isinstance(token, str) or not token:
        raise InvalidEventPayload("missing 'auth[application_token]'")
    _parse_ts(fields.get("ts"), required=require_ts)
    return member_id, token


def parse_event_fields(fields: Mapping[str, Any], *, require_ts: bool = True) -> EventPayload:
    """Nest the flat fields PHP-style with qs-codec and build the :class:`EventPayload`.

    ``auth[<name>]`` keys are one level deep by protocol and need no nesting: they go straight into
    ``auth``, and qs-codec nests the rest (``data[...]``). Same result, a third of the parse time.
    """
    auth: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in fields.items():
        match = _AUTH_KEY.match(key)
        if match:
            auth[match.group(1)] = value
        else:
            rest[key] = value
    try:
        parsed = decode(rest, _DECODE_OPTIONS)
    except (ValueError, IndexError, TypeError) as e:
        raise InvalidEventPayload(f"malformed form body: {type(e).__name__}") from None
    if auth:
        nested = parsed.get("auth")
        parsed["auth"] = {**nested, **auth} if isinstance(nested, dict) else auth
    return _payload_from_mapping(parsed, require_ts=require_ts)


def parse_event_body(body: bytes, *, require_ts: bool = True) -> EventPayload:
    """Parse a form-encoded event POST.

    Raises :class:`InvalidEventPayload` (with a reason fit for the 400 answer, never a value) when
    the body is not UTF-8 form data, or lacks ``event``, ``auth[member_id]``,
    ``auth[application_token]`` or (with ``require_ts``) a numeric ``ts``.
    """
    fields = split_form(body, error=InvalidEventPayload)
    event_credentials(fields, require_ts=require_ts)
    return parse_event_fields(fields, require_ts=require_ts)


def _payload_from_mapping(parsed: Mapping[str, Any], *, require_ts: bool) -> EventPayload:
    event = parsed.get("event")
    if not isinstance(event, str) or not _EVENT_NAME.match(event.upper()):
        raise InvalidEventPayload("missing or malformed 'event'")
    auth_in = parsed.get("auth")
    if not isinstance(auth_in, dict):
        raise InvalidEventPayload("missing 'auth'")
    member_id = auth_in.get("member_id")
    if not isinstance(member_id, str) or not _MEMBER_ID.match(member_id):
        raise InvalidEventPayload("missing or malformed 'auth[member_id]'")
    token = auth_in.get("application_token")
    if not isinstance(token, str) or not token:
        raise InvalidEventPayload("missing 'auth[application_token]'")
    ts = _parse_ts(parsed.get("ts"), required=require_ts)
    data = parsed.get("data", {})
    if data in ("", None):
        data = {}
    if not isinstance(data, dict):
        # PHP serialises an empty array as nothing at all; a list here means data[0]=..., keep it.
        data = {"_": data}
    secrets = {k: str(v) for k, v in auth_in.items() if k in SECRET_AUTH_KEYS and isinstance(v, str)}
    auth = {k: v for k, v in auth_in.items() if k not in SECRET_AUTH_KEYS}
    handler_id = parsed.get("event_handler_id", "")
    return EventPayload(
        event=event.upper(),
        member_id=member_id,
        data=data,
        auth=auth,
        ts=ts,
        event_handler_id=handler_id if isinstance(handler_id, str) else "",
        secrets=secrets,
    )


def _parse_ts(value: Any, *, required: bool) -> datetime | None:
    if value in (None, ""):
        if required:
            raise InvalidEventPayload("missing 'ts'")
        return None
    # Range-checked before it becomes a datetime: ts=999999999999 would otherwise raise (year
    # 33658) before the token check, a 500 any sender could provoke.
    ts = unix_ts(value) if isinstance(value, str) else None
    if ts is None:
        raise InvalidEventPayload("malformed 'ts'")
    return ts


def parse_offline_record(record: Mapping[str, Any], *, member_id: str) -> EventPayload:
    """One record of ``event.offline.get`` (``ID, TIMESTAMP_X, EVENT_NAME, EVENT_DATA, MESSAGE_ID``).

    Offline records carry no auth (they were fetched with the app's own token), so ``member_id`` is
    the portal they were fetched from. Raises :class:`InvalidEventPayload` for a record without a
    name or id.
    """
    name = record.get("EVENT_NAME")
    if not isinstance(name, str) or not _EVENT_NAME.match(name.upper()):
        raise InvalidEventPayload("offline record without EVENT_NAME")
    message_id = str(record.get("MESSAGE_ID") or record.get("ID") or "")
    if not message_id:
        raise InvalidEventPayload("offline record without ID")
    data = record.get("EVENT_DATA") or {}
    if not isinstance(data, dict):
        data = {"_": data}
    if _holds_nul(data):  # PostgreSQL can't store NUL in jsonb (see inbound.split_form)
        raise InvalidEventPayload("offline record with a NUL character")
    additional = record.get("EVENT_ADDITIONAL") or {}
    auth: dict[str, Any] = {"member_id": member_id}
    if isinstance(additional, dict) and additional.get("user_id") is not None:
        auth["user_id"] = str(additional["user_id"])
    return EventPayload(
        event=name.upper(),
        member_id=member_id,
        data=data,
        auth=auth,
        ts=_parse_offline_timestamp(record.get("TIMESTAMP_X")),
        offline=True,
        message_id=message_id,
    )


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def _parse_offline_timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    # Bitrix24 formats TIMESTAMP_X with the portal's offset; a naive value is taken as UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def token_digest(token: str) -> bytes:
    """SHA-256 of an application token: what a cache keeps instead of the token itself."""
    return hashlib.sha256(token.encode()).digest()


def verify_application_token(*, expected_digest: bytes, received: str) -> None:
    """Raise :class:`InvalidApplicationToken` unless ``received`` hashes to ``expected_digest``.

    Compares digests with :func:`hmac.compare_digest`, so the time taken says nothing about how
    much of the token matched. An empty expected digest (no token stored) never matches.
    """
    if not expected_digest or not received:
        raise InvalidApplicationToken("application_token mismatch")
    if not hmac.compare_digest(expected_digest, token_digest(received)):
        raise InvalidApplicationToken("application_token mismatch")


def check_event_age(payload: EventPayload, *, now: datetime, window: timedelta) -> None:
    """Refuse an online event whose ts lies more than ``window`` before or after ``now``.

    Offline records are exempt: they may wait in the portal's queue for days.
    """
    if payload.offline or payload.ts is None:
        return
    if abs(now - payload.ts) > window:
        raise StaleEvent("event ts outside the accepted window")
