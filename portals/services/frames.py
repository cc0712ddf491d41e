"""The app page and placements: authenticate the portal's cross-site frame POST.

The frame POST carries no CSRF token and no cookie we could trust (it is a cross-site POST into
an iframe), so it is authenticated by what it carries, through the one confirmation service
(:mod:`.confirm`): the portal must be installed here, the posted APPLICATION_TOKEN must match the
stored one, and the posted access token must be confirmed by app.info on the portal's own OAuth
server as this portal's and this app's. That proves only "a user of this portal": the posted
tokens serve this request alone, and replace the stored pair solely through
:func:`portal_restore_from_frame`, when ``user.admin`` says the user administers the portal.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core import signing
from django.utils import timezone

from ..bitrix.exceptions import (
    Bitrix24Error,
    InvalidApplicationToken,
    InvalidInstallRequest,
    UnknownPortal,
)
from ..bitrix.inbound import FrameFields
from ..models import Portal
from .confirm import Identity, tokens_equal
from .install import InstallClaim, install_claim_from_frame, install_verify, portal_store_verified
from .lifecycle import portal_payment_changed
from .oauth import Clock
from .store import portal_domain_record

logger = logging.getLogger(__name__)

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
    def from_fields(cls, fields: FrameFields) -> Frame:
        return cls(
            claim=install_claim_from_frame(fields),
            placement=fields.placement,
            placement_options=fields.placement_options,
            lang=fields.lang,
        )


@dataclass(frozen=True)
class FrameSession:
    """An authenticated frame: the portal and the acting user's confirmed identity."""

    portal: Portal
    identity: Identity = field(repr=False)

    @property
    def user_id(self) -> int | None:
        return self.identity.user_id

    @functools.cached_property
    def is_admin(self) -> bool:
        """Whether the acting user administers the portal (``user.admin``; False when unanswered).

        Asked once per frame: the page, its signed token and the restore all read it.
        """
        try:
            return self.identity.is_admin()
        except InvalidInstallRequest:
            return False

    def signed(self) -> str:
        """A short-lived token for the page's own follow-up requests (no cookies in the iframe)."""
        data = {"p": self.portal.pk, "u": self.user_id, "a": self.is_admin}
        return signing.dumps(data, salt=FRAME_SIGNING_SALT)


@dataclass(frozen=True)
class SignedFrame:
    """What :meth:`FrameSession.signed` vouched for, read back."""

    portal_id: int
    user_id: int | None
    is_admin: bool


def frame_session_from_signed(value: str) -> SignedFrame:
    """The frame a token made by FrameSession.signed stands for; raises signing.BadSignature."""
    data = signing.loads(value, salt=FRAME_SIGNING_SALT, max_age=FRAME_SESSION_MAX_AGE)
    return SignedFrame(portal_id=int(data["p"]), user_id=data.get("u"), is_admin=data.get("a") is True)


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
    if portal.application_token and not tokens_equal(portal.application_token, claim.application_token):
        raise InvalidApplicationToken("APPLICATION_TOKEN missing or not the portal's")
    try:
        identity = claim.identify(server_endpoint=portal.server_endpoint, clock=clock)
    except InvalidInstallRequest as e:
        raise UnknownPortal(f"frame not confirmed: {e}") from e
    if identity.info.client_id and identity.info.client_id != portal.oauth_client_id:
        raise UnknownPortal("the token belongs to another application")
    if identity.client_endpoint != portal.client_endpoint:
        # app.info confirmed this host for this member_id: the portal was renamed.
        portal = portal_domain_record(
            portal_id=portal.pk, domain=claim.domain, client_endpoint=identity.client_endpoint
        )
    return FrameSession(portal=portal, identity=identity)


def portal_restore_from_frame(*, frame: Frame, session: FrameSession, clock: Clock | None = None) -> Portal:
    """An administrator opened the app on a portal that isn't active: try to make it active again.

    Needs re-authorisation: the admin's posted pair, verified as an install is (its refresh token
    exchanged), becomes the stored pair. Payment required: app.info is asked again. Any other
    user, or a pair that fails verification, changes nothing. Returns the portal as it now is.
    """
    clock = clock or timezone.now
    portal = session.portal
    if portal.state == Portal.State.ACTIVE or not session.is_admin:
        return portal
    if portal.state == Portal.State.PAYMENT_REQUIRED:
        try:
            return portal_payment_changed(portal=portal, clock=clock)
        except Bitrix24Error:
            return portal
    if portal.state == Portal.State.REAUTH_REQUIRED and frame.claim.refresh_token:
        try:
            verified = install_verify(claim=frame.claim, action="re-authorising the app", clock=clock)
        except InvalidInstallRequest:
            return portal
        portal = portal_store_verified(verified=verified, license_info=None, clock=clock, installing=False)
        logger.info("portal.restored_by_admin", extra={"member_id": portal.member_id})
    return portal
