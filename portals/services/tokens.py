"""A portal's token pair: the single-flight refresh and the gate that fails fast on dead portals.

Bitrix24 rotates the refresh token on every grant and invalidates the old pair, so two refresh
grants racing on one portal burn its authorisation for good. Every refresh therefore goes
through :func:`portal_tokens_refresh`, which lets exactly one grant per stale pair reach the
OAuth server, however many threads and processes ask at once:

1. the per-portal Redis lock queues the callers (services.locks);
2. ``select_for_update`` on the Portal row serialises them even without Redis;
3. under both, the caller's reason to refresh is re-checked against the row: a caller whose
   stale token was already replaced just reloads and never sends a grant;
4. the new pair is saved in the same transaction, so it is committed before any waiter gets the
   locks and reads it.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from portals.conf import app_settings

from ..bitrix import metrics
from ..bitrix.exceptions import (
    Bitrix24AuthError,
    Bitrix24InvalidGrant,
    Bitrix24PaymentRequired,
    Bitrix24PortalUnavailable,
    Bitrix24ServerError,
    Bitrix24TransportError,
)
from ..bitrix.oauth import CONNECT_BACKOFF, OAuthServer, TokenGrant
from ..models import Portal
from .locks import portal_refresh_lock
from .oauth import Clock, portal_oauth_server
from .store import Cause, portal_grant_record, portal_locked, portal_refusal_record

logger = logging.getLogger(__name__)

# Tests and the benchmark replace it to avoid real sleeping between connection attempts.
sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class RefreshWhen:
    """Why a caller wants a refresh; re-checked under the locks against the stored row.

    ``stale_token``: the access token Bitrix24 refused as expired (refresh only if still stored).
    ``expiring_within``: refresh if the stored access token expires within this margin.
    ``issued_before``: refresh if the stored refresh token was issued before this moment.
    Any condition that holds triggers the refresh; none given means "only if expired now".
    """

    stale_token: str | None = None
    expiring_within: timedelta | None = None
    issued_before: datetime | None = None

    def holds_for(self, portal: Portal, now: datetime) -> bool:
        if self.stale_token is not None and hmac.compare_digest(
            portal.access_token.encode(), self.stale_token.encode()
        ):
            return True
        if self.expiring_within is not None and portal.access_token_expires_within(
            self.expiring_within, now=now
        ):
            return True
        if self.issued_before is not None and (
            portal.refresh_token_issued_at is None or portal.refresh_token_issued_at < self.issued_before
        ):
            return True
        if self.stale_token is None and self.expiring_within is None and self.issued_before is None:
            return portal.access_token_expires_within(timedelta(0), now=now)
        return False


def portal_raise_if_unusable(portal: Portal, *, allow_states: tuple[str, ...] = ()) -> None:
    """Fail fast, with the reason, when no call can succeed until the portal changes state.

    Raises Bitrix24InvalidGrant (needs re-authorisation), Bitrix24PaymentRequired or
    Bitrix24PortalUnavailable (uninstalled); returns when the portal may be called.
    """
    where = {"member_id": portal.member_id}
    if portal.state in allow_states and portal.access_token and portal.refresh_token:
        return
    reason = f": {portal.state_reason}" if portal.state_reason else ""
    if portal.state == Portal.State.PAYMENT_REQUIRED:
        message = f"portal {portal.domain} needs payment{reason}"
        raise Bitrix24PaymentRequired("PAYMENT_REQUIRED", message, **where)
    if portal.state == Portal.State.UNINSTALLED:
        message = f"app uninstalled from {portal.domain}{reason}"
        raise Bitrix24PortalUnavailable("NOT_INSTALLED", message, **where)
    if portal.state == Portal.State.REAUTH_REQUIRED:
        raise Bitrix24InvalidGrant(
            "REAUTH_REQUIRED", f"portal {portal.domain} needs re-authorisation{reason}", **where
        )
    if not portal.access_token or not portal.refresh_token:
        raise Bitrix24InvalidGrant("REAUTH_REQUIRED", f"portal {portal.domain} has no stored tokens", **where)


def portal_tokens_refresh(
    *,
    portal_id: int,
    when: RefreshWhen | None = None,
    reason: str = "expired",
    clock: Clock | None = None,
    allow_states: tuple[str, ...] = (),
) -> Portal:
    """Refresh the portal's pair if ``when`` still holds under the locks; return the fresh row.

    Exactly one refresh grant per stale pair reaches the OAuth server; every other caller waits
    for it and returns the row holding the new pair. A permanent refusal is recorded on the
    portal (needs re-authorisation / payment required / uninstalled) before it is raised.

    Raises what :func:`portal_raise_if_unusable` raises, Bitrix24TransportError / Bitrix24Timeout
    / Bitrix24ServerError when the OAuth server could not give an answer (state unchanged, retry
    later), or the permanent refusal (Bitrix24InvalidGrant, Bitrix24PaymentRequired,
    Bitrix24PortalUnavailable, Bitrix24InvalidClient). ``allow_states`` lets a state check
    (payment) refresh a portal the gate would otherwise refuse.
    """
    when = when or RefreshWhen()
    clock = clock or timezone.now
    with portal_refresh_lock(portal_id):
        failure: Bitrix24AuthError | None = None
        with portal_locked(portal_id) as portal:
            now = clock()
            if not when.holds_for(portal, now):
                return portal  # another caller refreshed already: use its pair
            portal_raise_if_unusable(portal, allow_states=allow_states)
            server = portal_oauth_server(portal=portal, clock=clock)
            try:
                grant = _refresh_grant(server, portal)
            except (Bitrix24TransportError, Bitrix24ServerError):
                logger.warning("portal.refresh_unanswered", extra={"member_id": portal.member_id})
                metrics.token_refresh("unanswered", portal=portal.member_id)
                raise
            except Bitrix24AuthError as e:
                portal_refusal_record(portal, e, source="refresh refused", now=now)
                metrics.token_refresh(type(e).__name__, portal=portal.member_id)
                failure = e
            else:
                portal_grant_record(portal, grant, cause=Cause.REFRESHED, now=now)
                extra = {"member_id": portal.member_id, "reason": reason}
                logger.info("portal.tokens_refreshed", extra=extra)
                metrics.token_refresh("refreshed", portal=portal.member_id)
                return portal
        # Outside the atomic block, so the recorded state is committed before the error travels.
        raise failure


def _refresh_grant(server: OAuthServer, portal: Portal) -> TokenGrant:
    """One refresh grant, retried only where that cannot burn the pair twice.

    Not sent (connection refused): retried after ``oauth.CONNECT_BACKOFF``'s waits. Sent with the
    outcome unknown (timeout, 5xx): retried once with the same refresh token; invalid_grant on that
    retry means the first attempt rotated the pair and its answer was lost.
    """
    delays = CONNECT_BACKOFF.delays(max(0, app_settings.refresh_connect_attempts - 1))
    retried_unknown = False
    while True:
        try:
            return server.refresh(portal.refresh_token)
        except Bitrix24TransportError as e:
            if not e.sent and delays:
                sleep(delays.pop(0))
                continue
            if e.sent and not retried_unknown:
                retried_unknown = True
                continue
            raise
        except Bitrix24ServerError:
            if not retried_unknown:
                retried_unknown = True
                continue
            raise
        except Bitrix24InvalidGrant as e:
            if retried_unknown:
                raise Bitrix24InvalidGrant(
                    e.code,
                    "refresh token spent by an earlier attempt whose answer was lost",
                    status=e.status,
                    method=e.method,
                    member_id=portal.member_id,
                ) from e
            raise


def portal_record_unavailable(
    *, portal_id: int, error: Bitrix24PortalUnavailable, clock: Clock | None = None
) -> None:
    """A REST call was refused for the portal itself (PORTAL_DELETED, NOT_INSTALLED,
    PAYMENT_REQUIRED): record it on the portal, as a refused refresh would be, so an operator
    sees it and later calls fail fast instead of asking Bitrix24 again."""
    now = (clock or timezone.now)()
    with portal_locked(portal_id) as portal:
        portal_refusal_record(portal, error, source="REST call refused", now=now)
