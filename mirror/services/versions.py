"""The mirror's data version per (portal, entity): what the API's response cache is keyed by.

Every write to a portal's entity bumps its version after the commit, so a cached answer built
from the earlier data is never used again (it ages out). The version is a shared value
(bitrix_app.shared_values: Redis in production, the process's cache in single-process mode); a
version that is missing (first use, evicted) is replaced by a new one, never by an old number, so
a lost key can't revive stale answers. Reads raise ``VersionUnavailable`` when the store is down:
callers serve uncached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

from bitrix_app.shared_values import shared_values
from portals.refusals import ThrottledWarning

logger = logging.getLogger("mirror.versions")
_log_failure = ThrottledWarning(logger, "mirror.version_bump_failed", interval=60.0)


class VersionUnavailable(Exception):
    """The store that holds the versions failed."""


def mirror_version_key(portal_id: int, entity: str) -> str:
    """The shared value holding the version (api.services.limits reads it in its own script)."""
    return f"mirror:version:{portal_id}:{entity}"


def mirror_version_new() -> bytes:
    """A version never used before: what a bump writes, and what replaces a missing version."""
    return str(time.time_ns()).encode()


def mirror_version_with(
    *, portal_id: int, entity: str, keys: Sequence[str] = ()
) -> tuple[bytes, list[bytes | None]]:
    """The current version of a portal's entity (opaque bytes) and the shared values of ``keys``,
    read in one round trip (the API reads its cached answer with it)."""
    store = shared_values()
    try:
        version, *values = store.get_many([mirror_version_key(portal_id, entity), *keys])
        if version is None:
            store.add(mirror_version_key(portal_id, entity), mirror_version_new())
            version, *values = store.get_many([mirror_version_key(portal_id, entity), *keys])
    except Exception as e:  # the store's own errors (redis, connection) vary by backend
        raise VersionUnavailable(f"{type(e).__name__}: {e}") from e
    if version is None:  # evicted between the add and the read: nothing can be trusted to it
        raise VersionUnavailable("the version was evicted while it was read")
    return version, values


def mirror_version(*, portal_id: int, entity: str) -> str:
    """The current version of a portal's entity (an opaque string)."""
    return mirror_version_with(portal_id=portal_id, entity=entity)[0].decode()


def mirror_versions_bump(*, portal_id: int, entities: Iterable[str]) -> None:
    """New versions for ``entities`` of the portal (after their writes committed). A failure is
    logged once a minute: cached answers then live out their timeout (docs/api.md, "Cache")."""
    try:
        shared_values().set_many(
            {mirror_version_key(portal_id, entity): mirror_version_new() for entity in entities}, timeout=None
        )
    except Exception as e:
        _log_failure.warn(type(e).__name__, error=type(e).__name__)
        logger.debug("mirror.version_bump_error", exc_info=e)
