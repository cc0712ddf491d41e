"""Installation: a frame POST to the installer page or ONAPPINSTALL becomes a verified Portal.

Installing is an administrator's action, and nothing the request says is trusted
(:mod:`.confirm`): the token must be confirmed by the OAuth server's app.info for this portal
and app, its user must be an administrator (``user.admin``), and the refresh token must prove
itself by being exchanged; the exchanged pair is what gets stored. A claim that fails a proof
raises InvalidInstallRequest and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from portals.conf import app_settings

from ..bitrix.exceptions import Bitrix24Error, InvalidInstallRequest
from ..bitrix.inbound import FrameFields
from ..bitrix.oauth import TokenGrant
from ..models import Portal
from ..signals import portal_installed
from .confirm import Identity, refresh_token_prove, token_identify
from .endpoints import client_endpoint_for, normalise_domain, normalise_member_id
from .lifecycle import plan_for_license, portal_application_token_set
from .oauth import Clock
from .rest import TokenCredentials, rest_call
from .store import portal_install_record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstallClaim:
    """What an install request claims; nothing in it is trusted until :func:`portal_install`.

    ``source`` is "frame" (the installer page's POST) or "event" (ONAPPINSTALL). The lifetime,
    scope, status and user the request states are not kept: the confirmed answers replace them.
    """

    source: str
    member_id: str
    domain: str
    client_endpoint: str
    server_endpoint: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    application_token: str = field(repr=False, default="")

    def identify(self, *, server_endpoint: str = "", clock: Clock | None = None) -> Identity:
        """Whose access token this is, confirmed by the OAuth server (InvalidInstallRequest if not).

        ``server_endpoint`` asks a known portal's stored server instead of the claimed one.
        """
        return token_identify(
            access_token=self.access_token,
            member_id=self.member_id,
            domain=self.domain,
            client_endpoint=self.client_endpoint,
            server_endpoint=server_endpoint or self.server_endpoint,
            clock=clock,
        )


def _first(*values: Any) -> str:
    for value in values:
        if value not in (None, ""):
            return str(value)
    return ""


def default_server_endpoint() -> str:
    """For frames of portals older than SERVER_ENDPOINT in the frame POST: the first allowed server."""
    servers = app_settings.oauth_servers
    if not servers:
        raise InvalidInstallRequest("no OAuth server is allowed (BITRIX24_OAUTH_SERVERS)")
    base = servers[0] if servers[0].endswith("/") else servers[0] + "/"
    return base + "rest/"


def install_claim_from_frame(fields: FrameFields) -> InstallClaim:
    """The claim of a frame POST (protocol §1.2)."""
    domain = normalise_domain(fields.domain)
    return InstallClaim(
        source="frame",
        member_id=normalise_member_id(fields.member_id),
        domain=domain,
        client_endpoint=client_endpoint_for(domain, https=fields.https) if domain else "",
        server_endpoint=fields.server_endpoint or default_server_endpoint(),
        access_token=fields.access_token,
        refresh_token=fields.refresh_token,
        application_token=fields.application_token,
    )


def install_claim_from_event(payload: Mapping[str, Any]) -> InstallClaim:
    """The claim of an ONAPPINSTALL payload (already decoded to nested dicts, protocol §1.4)."""
    auth = payload.get("auth")
    if not isinstance(auth, Mapping):
        raise InvalidInstallRequest("ONAPPINSTALL without auth")
    domain = normalise_domain(_first(auth.get("domain")))
    return InstallClaim(
        source="event",
        member_id=normalise_member_id(auth.get("member_id")),
        domain=domain,
        client_endpoint=_first(auth.get("client_endpoint")),
        server_endpoint=_first(auth.get("server_endpoint")),
        access_token=_first(auth.get("access_token")),
        refresh_token=_first(auth.get("refresh_token")),
        application_token=_first(auth.get("application_token")),
    )


@dataclass(frozen=True)
class VerifiedInstall:
    """A claim after every proof: the confirmed identity and the pair its refresh token became."""

    claim: InstallClaim
    identity: Identity
    grant: TokenGrant


def install_verify(
    *, claim: InstallClaim, action: str = "installing the app", clock: Clock | None = None
) -> VerifiedInstall:
    """Run every proof on ``claim``; raises InvalidInstallRequest (a reason safe to log) on the first failure.

    The identity and administrator checks come first: they are questions, while the refresh-token
    proof spends the claimed refresh token and is made only for a claim that passed them.
    """
    if not claim.refresh_token:
        raise InvalidInstallRequest("install without a refresh token")
    identity = claim.identify(clock=clock)
    identity.admin_require(action=action)
    grant = refresh_token_prove(identity=identity, refresh_token=claim.refresh_token, clock=clock)
    return VerifiedInstall(claim=claim, identity=identity, grant=grant)


def portal_install(*, claim: InstallClaim, clock: Clock | None = None) -> Portal:
    """Verify ``claim`` and create or update the Portal; bind the app's events after commit.

    A verified install restores a portal in any state (needs re-authorisation, payment required,
    uninstalled) and replaces its token pair with the exchanged one. Raises InvalidInstallRequest,
    changing nothing, when the claim fails a proof, with one exception: the installer frame and
    ONAPPINSTALL may carry one token chain, so the second of them finds its refresh token spent.
    From an administrator whose access token was confirmed, on a portal already holding a working
    pair, that claim still sets the application token (ONAPPINSTALL is where it comes from) and
    leaves everything else as it is.
    """
    clock = clock or timezone.now
    try:
        verified = install_verify(claim=claim, clock=clock)
    except InvalidInstallRequest:
        portal = _portal_with_spent_chain(claim=claim, clock=clock)
        if portal is None:
            raise
        return portal
    license_info = _portal_license(verified)
    portal = portal_store_verified(verified=verified, license_info=license_info, clock=clock, installing=True)
    # After commit, so whoever sets the portal up (binds its events) finds the row; a slow or
    # failing setup never fails the install request itself.
    transaction.on_commit(lambda: portal_installed.send(sender=Portal, portal_id=portal.pk))
    logger.info(
        "portal.installed",
        extra={"member_id": portal.member_id, "source": claim.source, "local": portal.is_local_app},
    )
    return portal


def _portal_with_spent_chain(*, claim: InstallClaim, clock: Clock) -> Portal | None:
    """The second claim of one install (see :func:`portal_install`), or None for any other failure."""
    portal = Portal.objects.filter(member_id=claim.member_id).first()
    if portal is None or not portal.is_usable:
        return None
    try:
        identity = claim.identify(clock=clock)
        identity.admin_require(action="installing the app")
    except InvalidInstallRequest:
        return None
    if claim.application_token:
        portal_application_token_set(portal=portal, application_token=claim.application_token)
    logger.info("portal.install_pair_spent", extra={"member_id": portal.member_id, "source": claim.source})
    return portal


def portal_store_verified(
    *,
    verified: VerifiedInstall,
    license_info: Mapping[str, Any] | None,
    clock: Clock,
    installing: bool,
) -> Portal:
    """Write a verified claim's exchanged pair and confirmed context onto the portal (created if new)."""
    identity, grant, info = verified.identity, verified.grant, verified.identity.info
    license = str((license_info or {}).get("LICENSE") or "")
    payment_expired = info.payment_expired is True or (
        str((license_info or {}).get("PAYMENT_EXPIRED", "N")).upper() == "Y"
    )
    local = identity.local_app
    with transaction.atomic():
        portal = Portal.objects.select_for_update(no_key=True).filter(member_id=identity.member_id).first()
        portal_install_record(
            portal or Portal(member_id=identity.member_id),
            grant=grant,
            domain=verified.claim.domain,
            client_endpoint=identity.client_endpoint,
            server_endpoint=identity.server_endpoint,
            registration=(local.client_id, local.client_secret) if local else None,
            application_token=verified.claim.application_token,
            app_status=info.status or grant.status,
            license=license,
            plan=plan_for_license(license) if license else "",
            payment_expired=payment_expired,
            installing=installing,
            now=clock(),
        )
    return Portal.objects.get(member_id=identity.member_id)


def _portal_license(verified: VerifiedInstall) -> Mapping[str, Any] | None:
    """LICENSE and PAYMENT_EXPIRED: from the OAuth server's app.info, else the portal's own.

    The portal is asked with the exchanged access token (the claimed one may have died with the
    exchange). Best effort: the install is verified already; the plan only tunes the rate limiter
    and defaults to the safe (lower) one.
    """
    info = verified.identity.info
    if info.license:
        return {"LICENSE": info.license}
    credentials = TokenCredentials(
        token=verified.grant.access_token,
        client_endpoint=verified.identity.client_endpoint,
        member_id=verified.identity.member_id,
    )
    try:
        result = rest_call(credentials=credentials, method="app.info")
    except Bitrix24Error as e:
        extra = {"member_id": verified.identity.member_id, "error": type(e).__name__}
        logger.warning("portal.license_unknown", extra=extra)
        return None
    return result if isinstance(result, Mapping) else None
