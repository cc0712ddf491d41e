"""The app page and placements: authenticate the portal's cross-site frame POST.

The frame POST carries no CSRF token and no cookie we could trust (it is a cross-site POST into
an iframe), so it is authenticated by what it carries (protocol §8, §9): the portal must be
installed here, the posted APPLICATION_TOKEN (when the portal sends one) must match the stored
one, and the posted access token must be confirmed by app.info on the portal's own OAuth server
for the same member_id. The posted tokens serve this request only; they replace the stored
pair solely through :func:`portal_restore_from_frame` (an administrator opening the app while
the portal needs re-authorisation).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core import signing
from django.core.cache import cache
from django.utils import timezone

from ..bitrix.exceptions import (
    Bitrix24ConfigError,
    Bitrix24Error,
    InvalidApplicationToken,
    InvalidInstallRequest,
    UnknownPortal,
)
from ..bitrix.oauth import AppInfo
from ..models import Portal
from .endpoints import endpoints_check, normalise_domain
from .install import InstallClaim, install_claim_from_frame, install_verify, portal_store_verified
from .lifecycle import application_token_matches, portal_payment_changed
from .oauth import Clock, oauth_server
from .rest import TokenCredentials, rest_call

logger = logging.getLogger(__name__)

# A confirmed frame token is remembered this long (by its hash), so reloading the app page or
# opening several placements doesn't ask the OAuth server each time.
VERIFIED_TOKEN_TTL = 300
FRAME_SIGNING_SALT = "portals.frame"
FRAME_SESSION_MAX_AGE = 3600


@dataclass(frozen=True)
class Frame:
    """A parsed frame POST (protocol §1.2)."""

    claim: InstallClaim
    placement: str
    placement_options: Mapping[str, Any]
    lang: str

    @classmethod
    def parse(cls, *, query: Mapping[str, Any], form: Mapping[str, Any]) -> Frame:
        options_raw = form.get("PLACEMENT_OPTIONS") or ""
        try:
            options = json.loads(options_raw) if options_raw else {}
        except ValueError:
            options = {}
        return cls(
            claim=install_claim_from_frame(query=query, form=form),
            placement=str(form.get("PLACEMENT") or "DEFAULT"),
            placement_options=options if isinstance(options, Mapping) else {},
            lang=str(query.get("LANG") or form.get("LANG") or "en")[:8],
        )


@dataclass(frozen=True)
class FrameSession:
    """An authenticated frame: the portal, the acting user and that user's own token."""

    portal: Portal
    user_id: int | None
    access_token: str = field(repr=False)

    def signed(self) -> str:
        """A short-lived token for the page's own follow-up requests (no cookies in the iframe)."""
        return signing.dumps({"p": self.portal.pk, "u": self.user_id}, salt=FRAME_SIGNING_SALT)


def frame_session_from_signed(value: str) -> tuple[int, int | None]:
    """(portal_id, user_id) of a token made by FrameSession.signed; raises signing.BadSignature."""
    data = signing.loads(value, salt=FRAME_SIGNING_SALT, max_age=FRAME_SESSION_MAX_AGE)
    return int(data["p"]), data.get("u")


def _token_key(token: str) -> str:
    return "portals:frame-token:" + hashlib.sha256(token.encode()).hexdigest()


def portal_frame_authenticate(*, frame: Frame, clock: Clock | None = None) -> FrameSession:
    """Authenticate a frame POST; raises UnknownPortal / InvalidApplicationToken (403).

    A frame from a new host of a known member_id is accepted (and the rename followed) only when
    the OAuth server confirms that host for that member_id.
    """
    claim = frame.claim
    if not claim.member_id or not claim.access_token:
        raise UnknownPortal("frame POST without member_id or AUTH_ID")
    portal = Portal.objects.filter(member_id=claim.member_id).first()
    if portal is None or portal.state == Portal.State.UNINSTALLED:
        raise UnknownPortal("portal not installed here")
    if claim.application_token and portal.application_token:
        if not application_token_matches(portal=portal, application_token=claim.application_token):
            logger.warning("portal.frame_token_mismatch", extra={"member_id": portal.member_id})
            raise InvalidApplicationToken("APPLICATION_TOKEN does not match")
    info = _confirmed(portal=portal, token=claim.access_token, clock=clock)
    if info.member_id.lower() != portal.member_id:
        raise UnknownPortal("token belongs to another portal")
    frame_domain = normalise_domain(claim.domain)
    if frame_domain != portal.domain:
        confirmed = normalise_domain(info.domain)
        if confirmed != frame_domain:
            raise UnknownPortal("frame domain does not match the portal")
        try:
            client_endpoint, _server = endpoints_check(
                domain=frame_domain,
                client_endpoint=frame.claim.client_endpoint,
                server_endpoint=portal.server_endpoint,
            )
        except Bitrix24ConfigError as e:
            raise UnknownPortal("frame domain not acceptable") from e
        Portal.objects.filter(pk=portal.pk).update(
            domain=frame_domain, client_endpoint=client_endpoint, updated_at=timezone.now()
        )
        portal.refresh_from_db()
        logger.info("portal.renamed", extra={"member_id": portal.member_id, "new": frame_domain})
    return FrameSession(portal=portal, user_id=info.user_id, access_token=claim.access_token)


def _confirmed(*, portal: Portal, token: str, clock: Clock | None) -> AppInfo:
    key = _token_key(token)
    cached = cache.get(key)
    if isinstance(cached, dict):
        return AppInfo.from_result(cached)
    try:
        info = oauth_server(server_endpoint=portal.server_endpoint, clock=clock).app_info(token)
    except Bitrix24Error as e:
        raise UnknownPortal(f"frame token not confirmed: {type(e).__name__}") from e
    cache.set(key, dict(info.raw), VERIFIED_TOKEN_TTL)
    return info


def user_is_admin(*, session: FrameSession) -> bool:
    """Whether the acting user administers the portal (``profile`` → ADMIN, with their own token)."""
    credentials = TokenCredentials(
        token=session.access_token,
        client_endpoint=session.portal.client_endpoint,
        member_id=session.portal.member_id,
        plan_name=session.portal.plan,
    )
    try:
        result = rest_call(credentials=credentials, method="profile")
    except Bitrix24Error:
        return False
    return isinstance(result, dict) and result.get("ADMIN") in (True, "Y", "1", 1, "true")


def portal_restore_from_frame(*, frame: Frame, session: FrameSession, clock: Clock | None = None) -> Portal:
    """An administrator opened the app on a portal that isn't active: try to make it active again.

    Needs re-authorisation: the admin's posted pair (confirmed like an install) becomes the
    stored pair. Payment required: app.info is asked again. Any other user, or a pair that fails
    verification, changes nothing. Returns the portal as it now is.
    """
    clock = clock or timezone.now
    portal = session.portal
    if portal.state == Portal.State.ACTIVE:
        return portal
    if not user_is_admin(session=session):
        return portal
    if portal.state == Portal.State.PAYMENT_REQUIRED:
        try:
            return portal_payment_changed(portal=portal, clock=clock)
        except Bitrix24Error:
            return portal
    if portal.state == Portal.State.REAUTH_REQUIRED and frame.claim.refresh_token:
        try:
            verified = install_verify(claim=frame.claim, clock=clock)
        except InvalidInstallRequest:
            return portal
        portal = portal_store_verified(verified=verified, license_info=None, clock=clock, installing=False)
        logger.info("portal.restored_by_admin", extra={"member_id": portal.member_id})
    return portal
