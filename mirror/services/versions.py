"""The mirror's data version per (portal, entity): what the API's response cache is keyed by.

Every write to a portal's entity bumps its version after the commit, so a cached answer built
from the earlier data is never found again (it ages out). The version lives in the Django cache
(Redis in production, in-process in single-process mode); a version that is missing (first use,
evicted) is replaced by a new one, never by an old number, so a lost key can't revive stale
answers. Reads raise ``VersionUnavailable`` when the cache is down: callers serve uncached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from django.core.cache import cache

from portals.refusals import ThrottledWarning

logger = logging.getLogger("mirror.versions")
_log_failure = ThrottledWarning(logger, "mirror.version_bump_failed", interval=60.0)


class VersionUnavailable(Exception):
    """The cache that holds the versions failed."""


def _key(portal_id: int, entity: str) -> str:
    return f"mirror:version:{portal_id}:{entity}"


def mirror_version(*, portal_id: int, entity: str) -> str:
    """The current version of a portal's entity (an opaque string)."""
    key = _key(portal_id, entity)
    try:
        version = cache.get(key)
        if version is None:
            cache.add(key, time.time_ns(), timeout=None)
            version = cache.get(key)
    except Exception as e:  # the cache backend's own errors (redis, connection) vary by backend
        raise VersionUnavailable(f"{type(e).__name__}: {e}") from e
    return str(version)


def mirror_versions_bump(*, portal_id: int, entities: Iterable[str]) -> None:
    """New versions for ``entities`` of the portal (after their writes committed). A failure is
    logged once a minute: cached answers then live out their timeout (docs/api.md, "Cache")."""
    try:
        cache.set_many({_key(portal_id, entity): time.time_ns() for entity in entities}, timeout=None)
    except Exception as e:
        _log_failure.warn(type(e).__name__, error=type(e).__name__)
        logger.debug("mirror.version_bump_error", exc_info=e)
