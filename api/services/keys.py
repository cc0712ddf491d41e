"""API keys: made, rotated, revoked, and checked on every request.

The check runs per request, so a process keeps what it learned about a key for
BITRIX24_API_KEY_CACHE_SECONDS (by the key's digest, never the key): a revocation or an expiry
reaches every process within that time, and at once in the process that made it (a saved key
drops its entry, api.signals). Last use is written at most once a minute per key and process.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from bitrix_app.client_ip import allowed, parse_networks
from mirror.entities import BY_PLURAL
from portals.conf import app_settings
from portals.models import Portal

from ..errors import BadRequest, Forbidden, Unauthorized
from ..models import ApiKey

PREFIX = "b24k_"
_KEY = re.compile(r"b24k_([a-z2-7]{10})_([A-Za-z0-9_-]{32,64})")
SCOPES = tuple(f"{plural}:read" for plural in BY_PLURAL)
# Writing last_used_at on every request would put a write on every read.
LAST_USED_EVERY = 60.0


@dataclass(frozen=True)
class Principal:
    """Who a request's key lets it be: the key, its portals and scopes."""

    key_id: int
    prefix: str
    portal_ids: frozenset[int]
    scopes: frozenset[str]
    allow_ips: tuple[str, ...]
    expires_at: datetime | None

    def may_read(self, plural: str) -> bool:
        return f"{plural}:read" in self.scopes


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def scopes_check(scopes: Iterable[str]) -> list[str]:
    """The scopes, de-duplicated and in order; BadRequest naming the unknown ones."""
    wanted = [s.strip() for s in scopes if s.strip()]
    unknown = sorted(set(wanted) - set(SCOPES))
    if unknown:
        raise BadRequest(f"unknown scopes: {', '.join(unknown)} (known: {', '.join(SCOPES)})")
    return [s for s in SCOPES if s in wanted]


def cidrs_check(cidrs: Iterable[str]) -> list[str]:
    cidrs = [c.strip() for c in cidrs if c.strip()]
    try:
        return [str(network) for network in parse_networks(cidrs)]
    except ValueError as e:
        raise BadRequest(str(e)) from None


def apikey_create(
    *,
    name: str,
    portals: Sequence[Portal],
    scopes: Iterable[str] = SCOPES,
    expires_days: float | None = None,
    allow_ips: Iterable[str] = (),
    created_by: str = "",
) -> tuple[ApiKey, str]:
    """A new key and its plain text, which exists only in this return value (show it once).

    BadRequest for no name, no portal, unknown scopes, a bad CIDR or a non-positive expiry.
    """
    name = name.strip()
    if not name or len(name) > 100:
        raise BadRequest("a key needs a name of 1-100 characters")
    if not portals:
        raise BadRequest("a key needs at least one portal")
    checked_scopes = scopes_check(scopes)
    if not checked_scopes:
        raise BadRequest("a key needs at least one scope")
    if expires_days is not None and not 0 < expires_days <= 3650:
        raise BadRequest("expiry must be 1-3650 days")
    prefix = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(10))
    raw = f"{PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        key = ApiKey.objects.create(
            name=name,
            prefix=prefix,
            digest=digest(raw),
            scopes=checked_scopes,
            allow_ips=cidrs_check(allow_ips),
            expires_at=timezone.now() + timedelta(days=expires_days) if expires_days else None,
            created_by=created_by[:200],
        )
        key.portals.set(portals)
    return key, raw


def apikey_rotate(
    *, key: ApiKey, overlap_hours: float | None = None, created_by: str = ""
) -> tuple[ApiKey, str]:
    """A new key with the same portals, scopes, allow-list and lifetime; the old one keeps working
    for ``overlap_hours`` (BITRIX24_API_KEY_ROTATION_OVERLAP_HOURS) and then expires."""
    if not key.is_usable:
        raise BadRequest("only a usable key can be rotated")
    overlap = timedelta(
        hours=app_settings.api_key_rotation_overlap_hours if overlap_hours is None else overlap_hours
    )
    lifetime = (key.expires_at - key.created_at).total_seconds() / 86400 if key.expires_at else None
    with transaction.atomic():
        new, raw = apikey_create(
            name=key.name,
            portals=list(key.portals.all()),
            scopes=key.scopes,
            expires_days=lifetime,
            allow_ips=key.allow_ips,
            created_by=created_by or key.created_by,
        )
        end = timezone.now() + overlap
        key.expires_at = min(key.expires_at, end) if key.expires_at else end
        key.replaced_by = new
        key.save(update_fields=["expires_at", "replaced_by"])
    return new, raw


def apikey_revoke(*, key: ApiKey, reason: str) -> bool:
    """Revoke now; False when it was revoked already."""
    updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=reason[:200]
    )
    keys_cache_clear()
    return bool(updated)


def apikeys_revoke_for_portal(*, portal_id: int, reason: str) -> int:
    """Revoke every key that covers the portal (its uninstall): a key for several portals goes too,
    since it can no longer be trusted with only some of them."""
    count = ApiKey.objects.filter(portals__id=portal_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=reason[:200]
    )
    keys_cache_clear()
    return count


class _KeyCache:
    """digest → (Principal or None for revoked/expired/unknown, when learned), per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Principal | None, float]] = {}
        self._used: dict[int, float] = {}

    def get(self, key_digest: str, now: float) -> tuple[bool, Principal | None]:
        with self._lock:
            entry = self._entries.get(key_digest)
        if entry is None or now - entry[1] > app_settings.api_key_cache_seconds:
            return False, None
        return True, entry[0]

    def put(self, key_digest: str, principal: Principal | None, now: float) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key_digest] = (principal, now)

    def used_due(self, key_id: int, now: float) -> bool:
        with self._lock:
            if now - self._used.get(key_id, 0.0) < LAST_USED_EVERY:
                return False
            self._used[key_id] = now
            return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_cache = _KeyCache()


class _PortalCache:
    """member_id → portal id (None: unknown or uninstalled) per process, for the same time as the
    keys: a cached answer then needs no database query at all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[int | None, float]] = {}

    def portal_id(self, member_id: str) -> int | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(member_id)
        if entry is not None and now - entry[1] <= app_settings.api_key_cache_seconds:
            return entry[0]
        found = (
            Portal.objects.filter(member_id=member_id)
            .exclude(state=Portal.State.UNINSTALLED)
            .values_list("id", flat=True)
            .first()
        )
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[member_id] = (found, now)
        return found

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_portals = _PortalCache()


def portal_id_of(member_id: str) -> int | None:
    """The id of the installed portal ``member_id`` (None when unknown or uninstalled)."""
    return _portals.portal_id(member_id)


def keys_cache_clear() -> None:
    """Forget every key and portal this process learned (a key or a portal was saved here)."""
    _cache.clear()
    _portals.clear()


def _load(raw: str, key_digest: str) -> Principal | None:
    match = _KEY.fullmatch(raw)
    if match is None:
        return None
    row = ApiKey.objects.usable().filter(prefix=match.group(1)).first()
    if row is None or not hmac.compare_digest(row.digest, key_digest):
        return None
    return Principal(
        key_id=row.pk,
        prefix=row.prefix,
        portal_ids=frozenset(row.portals.values_list("id", flat=True)),
        scopes=frozenset(row.scopes),
        allow_ips=tuple(row.allow_ips),
        expires_at=row.expires_at,
    )


def apikey_authenticate(raw: str, *, ip: str) -> Principal:
    """The principal of a presented key. Unauthorized for a malformed, unknown, expired or revoked
    key (one message for all: the answer tells a prober nothing); Forbidden from an address outside
    the key's allow-list."""
    if not raw or len(raw) > 100 or not _KEY.fullmatch(raw):
        raise Unauthorized("missing or invalid API key")
    key_digest = digest(raw)
    now = time.monotonic()
    known, principal = _cache.get(key_digest, now)
    if not known:
        principal = _load(raw, key_digest)
        _cache.put(key_digest, principal, now)
    if principal is None or (principal.expires_at is not None and principal.expires_at <= timezone.now()):
        raise Unauthorized("missing or invalid API key")
    if principal.allow_ips and not allowed(ip, principal.allow_ips):
        raise Forbidden("this key may not be used from this address")
    if _cache.used_due(principal.key_id, now):
        ApiKey.objects.filter(pk=principal.key_id).update(
            last_used_at=timezone.now(), last_used_ip=ip or None
        )
    return principal
