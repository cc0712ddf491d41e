"""PortalCredentials: the Credentials protocol (portals.bitrix.credentials) for installed portals."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from django.utils import timezone

from portals.conf import app_settings

from ..bitrix.exceptions import Bitrix24PortalDisabled, Bitrix24PortalUnavailable
from ..models import Portal
from .autonomous import commit_independently
from .lifecycle import portal_domain_follow
from .locks import portal_refresh_lock
from .oauth import Clock
from .tokens import (
    RefreshWhen,
    portal_raise_if_unusable,
    portal_record_unavailable,
    portal_tokens_refresh,
)

# last_used_at is written at most this often per portal: it feeds the keep-alive policy, which
# works in days, so a write per call would only load the database.
LAST_USED_RESOLUTION = timedelta(minutes=10)


class PortalCredentials:
    """Credentials of one installed portal, backed by its Portal row.

    Safe to share between threads: the snapshot of the row is only ever replaced whole, never
    edited in place. The store is the truth: every refresh goes through the single-flight
    :func:`portal_tokens_refresh` and then takes the row it returns.

    Every write these credentials make to the Portal row (a refresh, a refusal, a rename, the
    ``last_used_at`` touch) goes through :func:`commit_independently`: inside an event handler's
    transaction it commits on its own, so a handler that fails afterwards never rolls back a
    rotated token pair, and the handler's transaction never holds the Portal row's lock.
    """

    def __init__(self, portal_id: int, *, clock: Clock | None = None, portal: Portal | None = None):
        self.portal_id = portal_id
        self._clock = clock or timezone.now
        self._portal = portal if portal is not None and portal.pk == portal_id else None

    def __repr__(self) -> str:
        return f"PortalCredentials(portal_id={self.portal_id})"

    @property
    def portal(self) -> Portal:
        if self._portal is None:
            self._portal = Portal.objects.get(pk=self.portal_id)
        return self._portal

    def reload(self) -> Portal:
        self._portal = Portal.objects.get(pk=self.portal_id)
        return self._portal

    @property
    def bucket_key(self) -> str:
        return self.portal.member_id

    @property
    def plan(self) -> str:
        return self.portal.plan

    def endpoint(self) -> str:
        return self.portal.client_endpoint

    def access_token(self) -> str | None:
        """The stored access token (read afresh), refreshed first when it expires within the margin.

        Raises Bitrix24InvalidGrant / Bitrix24PaymentRequired / Bitrix24PortalUnavailable at once
        when the portal is not usable (the state says why), Bitrix24PortalDisabled when an operator
        disabled it, without any request.
        """
        # Read the row on every call: another process may have rotated the pair (a warm-up or
        # keep-alive refresh kills the old access token before it expires), and a primary-key
        # read costs far less than a REST call answered invalid_token.
        portal = self.reload()
        portal_raise_if_unusable(portal)
        if portal.disabled_at is not None:
            # Only calls stop: the keep-alive refresh (portal_tokens_refresh) still runs.
            raise Bitrix24PortalDisabled(f"portal {portal.domain} is disabled by an operator")
        now = self._clock()
        margin = timedelta(seconds=app_settings.token_refresh_margin)
        if portal.access_token_expires_within(margin, now=now):
            self._portal = portal = commit_independently(
                functools.partial(
                    portal_tokens_refresh,
                    portal_id=self.portal_id,
                    when=RefreshWhen(expiring_within=margin),
                    reason="ahead",
                    clock=self._clock,
                )
            )
        self._touch(portal, now)
        return portal.access_token

    def refresh(self, stale_token: str | None) -> None:
        """After ``stale_token`` was refused: refresh once across all processes, or just reload.

        A caller whose token was rotated by someone else (it got invalid_token or expired_token
        for an old token) finds a different token stored and only reloads it.
        """
        when = RefreshWhen(stale_token=stale_token) if stale_token else RefreshWhen()
        self._portal = commit_independently(
            functools.partial(portal_tokens_refresh, portal_id=self.portal_id, when=when, clock=self._clock)
        )
        portal_raise_if_unusable(self._portal)

    def settle(self, stale_token: str) -> None:
        """Wait for a refresh of this portal in progress (holding the refresh lease), then reload.

        On portals where a rotation kills the old access token, a request sent with it just
        before another process's refresh grant is refused before the new pair is committed.
        """
        if self.reload().access_token != stale_token:
            return
        with portal_refresh_lock(self.portal_id):
            pass
        self._portal = self.reload()

    def moved(self, new_domain: str) -> None:
        """Follow a rename once the OAuth server confirms ``new_domain`` is this member_id."""

        self._portal = commit_independently(
            functools.partial(
                portal_domain_follow, portal_id=self.portal_id, new_domain=new_domain, clock=self._clock
            )
        )

    def unavailable(self, error: Bitrix24PortalUnavailable) -> None:
        """Bitrix24 refused a call for the portal itself: make the state visible."""
        commit_independently(
            functools.partial(
                portal_record_unavailable, portal_id=self.portal_id, error=error, clock=self._clock
            )
        )
        self._portal = None

    def _touch(self, portal: Portal, now: datetime) -> None:
        if portal.last_used_at is None or now - portal.last_used_at >= LAST_USED_RESOLUTION:
            commit_independently(functools.partial(_record_last_used, portal.pk, now))
            portal.last_used_at = now


def _record_last_used(portal_id: int, now: datetime) -> None:
    Portal.objects.filter(pk=portal_id).update(last_used_at=now)
