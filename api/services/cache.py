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
    """What the cache holds for one request: ``payload`` when it is of the current version.
    ``key`` is None when the store can't be read (then nothing is stored either)."""

    key: str | None
    version: bytes = b""
    payload: bytes | None = None


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match against our (strong) ETag: a list, weak forms and * count (RFC 9110 13.1.2)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def lookup(*, portal_id: int, entity: str, request_key: str) -> Lookup:
    """The cached payload for ``request_key`` (what identifies the request: path, parameters) on
    the portal's entity, if it was stored under the entity's current version."""
    digest = hashlib.sha256(request_key.encode()).hexdigest()[:40]
    key = f"api:v1:{portal_id}:{entity}:{digest}"
    try:
        version, (stored,) = mirror_version_with(portal_id=portal_id, entity=entity, keys=[key])
    except VersionUnavailable as e:
        _log_failure.warn("lookup", error=str(e)[:200])
        return Lookup(key=None)
    if stored is not None:
        stored_version, _, payload = stored.partition(_SEPARATOR)
        if stored_version == version:
            return Lookup(key=key, version=version, payload=payload)
    return Lookup(key=key, version=version)


def store(found: Lookup, payload: bytes) -> None:
    """Keep ``payload`` for the request ``found`` was looked up for, under the version read then
    (if the data changed meanwhile, the next lookup sees a newer version and ignores it)."""
    if found.key is None:
        return
    try:
        shared_values().set_many(
            {found.key: found.version + _SEPARATOR + payload}, timeout=app_settings.api_cache_seconds
        )
    except Exception as e:  # the store's own errors (redis, connection) vary by backend
        _log_failure.warn("store", error=type(e).__name__)
