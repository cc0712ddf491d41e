"""The per-process cache behind the receiver's authenticity check.

Every event costs one Portal lookup without it. Entries keep the token's SHA-256 digest, never the
token, and live ``BITRIX24_EVENT_TOKEN_CACHE_SECONDS``. A token that doesn't match a cached entry is
re-checked against the database, but at most once per ``BITRIX24_EVENT_TOKEN_RECHECK_SECONDS`` per
member_id: a reinstall or an ONAPPUPDATE that changed the token is picked up at once, while a flood
of forged events never reaches the database.

Saving a Portal drops its entry in this process at once, and in every other process (web
processes on other machines included) within a second: the save publishes the member_id on the
coordination's change feed (``events.signals``), and each cache reads the feed before it answers,
at most every :data:`FEED_INTERVAL`. A new token is accepted at once anyway (a mismatch re-reads
the row); the feed is what makes a replaced token refused everywhere. With Redis down the feed
can't be read, and an entry's lifetime bounds how long a replaced token is still accepted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis

from portals.bitrix.events import token_digest, verify_application_token
from portals.bitrix.exceptions import InvalidApplicationToken, UnknownPortal
from portals.conf import app_settings
from portals.models import Portal
from portals.services.coordination import coordination

# The change feed of portals whose application token (or state) changed.
TOKEN_FEED = "portal-tokens"
# How often a cache reads the feed: a replaced token is refused everywhere within about this long.
FEED_INTERVAL = 0.5


@dataclass(frozen=True, slots=True)
class PortalEntry:
    """What the receiver needs to know about a portal; ``portal_id`` None means "no such portal"."""

    portal_id: int | None
    digest: bytes
    state: str
    installed_at: datetime | None
    loaded_at: float
    disabled: bool = False


class PortalTokenCache:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._entries: dict[str, PortalEntry] = {}
        self._lock = threading.Lock()
        self._feed_cursor: int | None = None
        self._feed_read_at = -FEED_INTERVAL

    def verify(self, *, member_id: str, application_token: str) -> PortalEntry:
        """The portal's entry if ``application_token`` is its token.

        Raises :class:`UnknownPortal` or :class:`InvalidApplicationToken` (both answered 403).
        """
        now = self._clock()
        if now - self._feed_read_at >= FEED_INTERVAL:
            self._follow_feed(now)
        entry = self._entries.get(member_id)
        if entry is None or now - entry.loaded_at > app_settings.event_token_cache_seconds:
            entry = self._load(member_id, now)
        try:
            return self._check(entry, application_token)
        except (UnknownPortal, InvalidApplicationToken):
            if now - entry.loaded_at < app_settings.event_token_recheck_seconds:
                raise
        return self._check(self._load(member_id, now), application_token)

    def _follow_feed(self, now: float) -> None:
        """Drop the entries other processes changed since the last read of the feed."""
        self._feed_read_at = now
        try:
            feed = coordination().changes_since(TOKEN_FEED, self._feed_cursor)
        except redis.RedisError:
            return  # entries expire meanwhile (BITRIX24_EVENT_TOKEN_CACHE_SECONDS)
        with self._lock:
            if not feed.complete:
                self._entries.clear()
            for member_id in feed.keys:
                self._entries.pop(member_id, None)
            self._feed_cursor = feed.cursor

    def invalidate(self, member_id: str) -> None:
        with self._lock:
            self._entries.pop(member_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    @staticmethod
    def _check(entry: PortalEntry, application_token: str) -> PortalEntry:
        if entry.portal_id is None:
            raise UnknownPortal("unknown member_id")
        verify_application_token(expected_digest=entry.digest, received=application_token)
        return entry

    def _load(self, member_id: str, now: float) -> PortalEntry:
        row = (
            Portal.objects.filter(member_id=member_id)
            .only("id", "application_token", "state", "installed_at", "disabled_at")
            .first()
        )
        if row is None:
            entry = PortalEntry(None, b"", "", None, now)
        else:
            digest = token_digest(row.application_token) if row.application_token else b""
            entry = PortalEntry(row.pk, digest, row.state, row.installed_at, now, row.disabled_at is not None)
        with self._lock:
            # Bounded: unknown member_ids from forged traffic must not grow the cache without limit.
            if len(self._entries) >= 50_000:
                self._entries.clear()
            self._entries[member_id] = entry
        return entry


portal_tokens = PortalTokenCache()
