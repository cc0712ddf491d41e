"""Re-authorising an installed portal with the OAuth authorisation-code flow (protocol §2.2).

start → the portal's /oauth/authorize/ → our callback with ``code`` and ``state`` → code
exchange at the portal's allow-listed OAuth server → the new pair stored, the portal active.
``state`` is random, single-use, bound to one portal and kept server-side (the cache), so a
callback can neither be forged nor replayed, and no cookie is needed.
"""

from __future__ import annotations

import logging
import secrets
from urllib.parse import urlsplit

from django.core.cache import cache
from django.utils import timezone

from portals.conf import app_settings

from ..bitrix.exceptions import Bitrix24Error, InvalidInstallRequest
from ..models import Portal
from .confirm import admin_require
from .oauth import Clock, portal_oauth_server
from .store import Cause, portal_grant_record, portal_locked

logger = logging.getLogger(__name__)

STATE_TTL = 600


def _state_key(state: str) -> str:
    return f"portals:oauth-state:{state}"


def portal_reauth_start(*, portal: Portal) -> str:
    """The URL to send the browser to; its state is valid for one callback within STATE_TTL."""
    state = secrets.token_urlsafe(32)
    cache.set(_state_key(state), portal.pk, STATE_TTL)
    # Development only (BITRIX24_ALLOW_HTTP): the browser goes to the portal over http, which a real
    # portal redirects to https and the sandbox to its http page (browsers refuse the sandbox's CA).
    https = urlsplit(portal.client_endpoint).scheme != "http" and not app_settings.allow_http
    return portal_oauth_server(portal=portal).authorization_url(
        portal_domain=portal.domain, state=state, https=https
    )


def portal_reauth_complete(
    *, state: str, code: str, member_id: str = "", clock: Clock | None = None
) -> Portal:
    """Finish the flow: check state, exchange the code, store the pair, make the portal active.

    Raises InvalidInstallRequest (403) for an unknown, spent or mismatched state or a refused
    code; nothing changes then.
    """
    clock = clock or timezone.now
    key = _state_key(state or "")
    portal_id = cache.get(key) if state else None
    # delete() reports whether the key was still there: of two racing callbacks only one wins.
    if portal_id is None or not cache.delete(key):
        raise InvalidInstallRequest("unknown or spent OAuth state")
    portal = Portal.objects.get(pk=portal_id)
    if member_id and member_id.lower() != portal.member_id:
        raise InvalidInstallRequest("callback for another portal")
    if not code:
        raise InvalidInstallRequest("callback without a code")
    try:
        grant = portal_oauth_server(portal=portal, clock=clock).exchange_code(code)
    except Bitrix24Error as e:
        raise InvalidInstallRequest(f"code exchange refused: {type(e).__name__}") from e
    if grant.member_id and grant.member_id.lower() != portal.member_id:
        raise InvalidInstallRequest("code exchanged for another portal")
    # The grant is genuine (the OAuth server issued it for our code), but whose? Only an
    # administrator's pair may become the portal's: the exchanged pair of anyone else is dropped.
    admin_require(
        access_token=grant.access_token,
        client_endpoint=portal.client_endpoint,
        member_id=portal.member_id,
        action="re-authorising the app",
    )
    with portal_locked(portal_id) as portal:
        portal_grant_record(portal, grant, cause=Cause.REAUTHORISED, now=clock())
    logger.info("portal.reauthorised", extra={"member_id": portal.member_id})
    return portal
