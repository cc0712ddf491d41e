"""Cached API answers (the JSON body and its ETag) and counts, valid for one data version.

An answer is stored for BITRIX24_API_CACHE_SECONDS together with the version of the portal's
entity it was read under (mirror.services.versions); a mirror write moves the version on, so the
next request misses and reads the mirror again: a cached answer is never staler than the mirror.
The version and the answer are read in one round trip (bitrix_app.shared_values: Redis, or the
process's cache in single-process mode). When the store fails, answers are built uncached.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bitrix_app.shared_values import shared_values
from mirror.services.versions import VersionUnavailable, mirror_version_with
from portals.conf import app_settings
from portals.refusals import ThrottledWarning

logger = logging.getLogger("api.cache")
_log_failure = ThrottledWarning(logger, "api.cache_unavailable", interval=60.0)

# A stored value: the version it was built under, this separator, then the payload.
_SEPARATOR = b"\n"


@dataclass(frozen=True)
class Lookup:
    """What the cache holds for the keys of one request: ``payloads[i]`` for ``keys[i]`` when it
    is of the current version, else None. ``keys`` is empty when the store can't be read (then
    nothing is stored either)."""

    keys: tuple[str, ...] = ()
    version: bytes = b""
    payloads: tuple[bytes | None, ...] = ()

    def payload(self, index: int = 0) -> bytes | None:
        return self.payloads[index] if self.payloads else None


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match against our (strong) ETag: a list, weak forms and * count (RFC 9110 13.1.2)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def answer_keys(*, portal_id: int, entity: str, request_keys: Sequence[str]) -> tuple[str, ...]:
    """Where the answers to ``request_keys`` (what identifies each: path, parameters) are kept."""
    return tuple(
        f"api:v1:{portal_id}:{entity}:{hashlib.sha256(k.encode()).hexdigest()[:40]}" for k in request_keys
    )


def lookup_of(keys: tuple[str, ...], version: bytes, stored: Sequence[bytes | None]) -> Lookup:
    """The Lookup of values read under ``version``: each kept only if it was stored under it."""
    payloads: list[bytes | None] = []
    for value in stored:
        stored_version, _, payload = (value or b"").partition(_SEPARATOR)
        payloads.append(payload if value is not None and stored_version == version else None)
    return Lookup(keys=keys, version=version, payloads=tuple(payloads))


def lookup(*, portal_id: int, entity: str, request_keys: Sequence[str]) -> Lookup:
    """The cached payloads for ``request_keys`` on the portal's entity, where they were stored
    under the entity's current version: one round trip. (API requests read them together with
    their limit instead: api.services.limits.admit.)"""
    keys = answer_keys(portal_id=portal_id, entity=entity, request_keys=request_keys)
    try:
        version, stored = mirror_version_with(portal_id=portal_id, entity=entity, keys=keys)
    except VersionUnavailable as e:
        unavailable(e)
        return Lookup()
    return lookup_of(keys, version, stored)


def unavailable(error: Exception) -> None:
    """Say (once a minute) that answers are served uncached because the store failed."""
    _log_failure.warn("lookup", error=f"{type(error).__name__}: {error}"[:200])


def store(found: Lookup, payloads: Mapping[int, bytes]) -> None:
    """Keep ``payloads[i]`` for ``found.keys[i]`` under the version read with them (if the data
    changed meanwhile, the next lookup sees a newer version and ignores them): one round trip."""
    if not found.keys or not payloads:
        return
    try:
        shared_values().set_many(
            {found.keys[i]: found.version + _SEPARATOR + payload for i, payload in payloads.items()},
            timeout=app_settings.api_cache_seconds,
        )
    except Exception as e:  # the store's own errors (redis, connection) vary by backend
        _log_failure.warn("store", error=type(e).__name__)
