"""Cached API answers: the JSON body and its ETag, keyed by the mirror's data version.

An answer is stored for BITRIX24_API_CACHE_SECONDS under the version of the portal's entity it
was read from (mirror.services.versions); a mirror write moves the version on, so the next request
misses and reads the mirror again: a cached answer is never staler than the mirror. The cache is
the Django cache (Redis, or in-process in single-process mode); when it fails, answers are built
uncached.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.core.cache import cache

from mirror.services.versions import VersionUnavailable, mirror_version
from portals.conf import app_settings
from portals.refusals import ThrottledWarning

logger = logging.getLogger("api.cache")
_log_failure = ThrottledWarning(logger, "api.cache_unavailable", interval=60.0)


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match against our (strong) ETag: a list, weak forms and * count (RFC 9110 13.1.2)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def cache_key(*, portal_id: int, entity: str, request_key: str) -> str | None:
    """The key for one request's answer, or None when the versions can't be read (serve uncached)."""
    try:
        version = mirror_version(portal_id=portal_id, entity=entity)
    except VersionUnavailable as e:
        _log_failure.warn("version", error=str(e)[:200])
        return None
    digest = hashlib.sha256(request_key.encode()).hexdigest()[:40]
    return f"api:v1:{portal_id}:{entity}:{version}:{digest}"


def cached(key: str | None) -> Any:
    if key is None:
        return None
    try:
        return cache.get(key)
    except Exception as e:  # the backend's own errors (redis, connection) vary by backend
        _log_failure.warn("get", error=type(e).__name__)
        return None


def store(key: str | None, value: Any) -> None:
    if key is None:
        return
    try:
        cache.set(key, value, timeout=app_settings.api_cache_seconds)
    except Exception as e:
        _log_failure.warn("set", error=type(e).__name__)
