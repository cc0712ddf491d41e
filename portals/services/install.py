"""Installation: a frame POST to the installer page or ONAPPINSTALL becomes a verified Portal.

Never trusted blindly (protocol §9, forged installs): the claimed endpoints are validated, and
the claimed tokens are confirmed with app.info on the allow-listed OAuth server before anything
is stored. A claim that fails any check raises InvalidInstallRequest and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..bitrix.exceptions import (
    Bitrix24ConfigError,
    Bitrix24Error,
    InvalidInstallRequest,
)
from ..bitrix.oauth import AppInfo, split_scope
from ..models import LocalApplication, Portal
from .endpoints import client_endpoint_for, endpoints_check, normalise_domain
from .lifecycle import plan_for_license
from .oauth import Clock, oauth_server
from .rest import TokenCredentials, rest_call

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstallClaim:
    """What an install request claims; nothing in it is trusted until :func:`portal_install`.

    ``source`` is "frame" (the installer page's POST) or "event" (ONAPPINSTALL).
    """

    source: str
    member_id: str
    domain: str
    client_endpoint: str
    server_endpoint: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int | None
    application_token: str = field(repr=False, default="")
    scope: tuple[str, ...] = ()
    user_id: int | None = None
    status: str = ""


def _first(*values: Any) -> str:
    for value in values:
        if value not in (None, ""):
            return str(value)
    return ""


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def default_server_endpoint() -> str:
    """For frames of portals older than SERVER_ENDPOINT in the frame POST: the first allowed server."""
    servers = settings.BITRIX24_OAUTH_SERVERS
    if not servers:
        raise InvalidInstallRequest("no OAuth server is allowed (BITRIX24_OAUTH_SERVERS)")
    base = servers[0] if servers[0].endswith("/") else servers[0] + "/"
    return base + "rest/"


def install_claim_from_frame(*, query: Mapping[str, Any], form: Mapping[str, Any]) -> InstallClaim:
    """The claim of a frame POST (protocol §1.2): DOMAIN/PROTOCOL in the query, tokens in the body."""
    domain = normalise_domain(_first(query.get("DOMAIN"), form.get("DOMAIN")))
    https = _first(query.get("PROTOCOL"), form.get("PROTOCOL"), "1") != "0"
    return InstallClaim(
        source="frame",
        member_id=_first(form.get("member_id")).lower(),
        domain=domain,
        client_endpoint=client_endpoint_for(domain, https=https) if domain else "",
        server_endpoint=_first(form.get("SERVER_ENDPOINT")) or default_server_endpoint(),
        access_token=_first(form.get("AUTH_ID")),
        refresh_token=_first(form.get("REFRESH_ID")),
        expires_in=_int(form.get("AUTH_EXPIRES")),
        application_token=_first(form.get("APPLICATION_TOKEN")),
        scope=split_scope(form.get("APPLICATION_SCOPE")),
        status=_first(form.get("status")).upper(),
    )


def install_claim_from_event(payload: Mapping[str, Any]) -> InstallClaim:
    """The claim of an ONAPPINSTALL payload (already decoded to nested dicts, protocol §1.4)."""
    auth = payload.get("auth")
    if not isinstance(auth, Mapping):
        raise InvalidInstallRequest("ONAPPINSTALL without auth")
    domain = normalise_domain(_first(auth.get("domain")))
    return InstallClaim(
        source="event",
        member_id=_first(auth.get("member_id")).lower(),
        domain=domain,
        client_endpoint=_first(auth.get("client_endpoint")),
        server_endpoint=_first(auth.get("server_endpoint")),
        access_token=_first(auth.get("access_token")),
        refresh_token=_first(auth.get("refresh_token")),
        expires_in=_int(auth.get("expires_in")),
        application_token=_first(auth.get("application_token")),
        scope=split_scope(auth.get("scope")),
        user_id=_int(auth.get("user_id")),
        status=_first(auth.get("status")).upper(),
    )


@dataclass(frozen=True)
class VerifiedInstall:
    """A claim after verification: what is safe to store."""

    claim: InstallClaim
    client_endpoint: str
    server_endpoint: str
    info: AppInfo
    local_app: LocalApplication | None


def install_verify(*, claim: InstallClaim, clock: Clock | None = None) -> VerifiedInstall:
    """Check a claim; raises InvalidInstallRequest (with a reason safe to log) when it fails.

    1. endpoints: https (or BITRIX24_ALLOW_HTTP), client_endpoint on the claimed domain,
       server_endpoint of an allow-listed OAuth server;
    2. app.info on that OAuth server accepts the access token and names the same member_id
       (and domain / client_endpoint when it reports them);
    3. the token belongs to this app: the marketplace client_id or a registered local app.
    """
    if not claim.member_id or not claim.access_token or not claim.refresh_token:
        raise InvalidInstallRequest("install without member_id or token pair")
    try:
        client_endpoint, server_endpoint = endpoints_check(
            domain=claim.domain, client_endpoint=claim.client_endpoint, server_endpoint=claim.server_endpoint
        )
    except Bitrix24ConfigError as e:
        raise InvalidInstallRequest(f"endpoints refused: {e}") from e
    try:
        info = oauth_server(server_endpoint=server_endpoint, clock=clock).app_info(claim.access_token)
    except Bitrix24Error as e:
        raise InvalidInstallRequest(f"tokens not confirmed by the OAuth server: {type(e).__name__}") from e
    if info.member_id.lower() != claim.member_id:
        raise InvalidInstallRequest("app.info names another member_id")
    if info.domain and normalise_domain(info.domain) != claim.domain:
        raise InvalidInstallRequest("app.info names another domain")
    if info.client_endpoint and info.client_endpoint.rstrip("/") != client_endpoint.rstrip("/"):
        raise InvalidInstallRequest("app.info names another client_endpoint")
    local_app = None
    if info.client_id and info.client_id != settings.BITRIX24_CLIENT_ID:
        local_app = LocalApplication.objects.filter(client_id=info.client_id).first()
        if local_app is None:
            raise InvalidInstallRequest("tokens belong to an application not registered here")
    return VerifiedInstall(
        claim=claim,
        client_endpoint=client_endpoint,
        server_endpoint=server_endpoint,
        info=info,
        local_app=local_app,
    )


def portal_install(*, claim: InstallClaim, clock: Clock | None = None) -> Portal:
    """Verify ``claim`` and create or update the Portal; bind the app's events after commit.

    A verified install restores a portal in any state (needs re-authorisation, payment required,
    uninstalled) and replaces its token pair. Raises InvalidInstallRequest, changing nothing,
    when the claim fails verification.
    """
    clock = clock or timezone.now
    verified = install_verify(claim=claim, clock=clock)
    # The OAuth server's app.info may already carry LICENSE; otherwise ask the portal's own.
    license_info = {"LICENSE": verified.info.license} if verified.info.license else _portal_license(verified)
    portal = portal_store_verified(verified=verified, license_info=license_info, clock=clock, installing=True)
    transaction.on_commit(lambda: _events_bind(portal.pk))
    logger.info(
        "portal.installed",
        extra={"member_id": portal.member_id, "source": claim.source, "local": portal.is_local_app},
    )
    return portal


def portal_store_verified(
    *,
    verified: VerifiedInstall,
    license_info: Mapping[str, Any] | None,
    clock: Clock,
    installing: bool,
) -> Portal:
    """Write a verified claim's pair and context onto the portal (created if new)."""
    claim, info = verified.claim, verified.info
    now = clock()
    with transaction.atomic():
        portal = Portal.objects.select_for_update().filter(member_id=claim.member_id).first()
        if portal is None:
            portal = Portal(member_id=claim.member_id)
        portal.domain = claim.domain
        portal.client_endpoint = verified.client_endpoint
        portal.server_endpoint = verified.server_endpoint
        if verified.local_app is not None:
            portal.client_id = verified.local_app.client_id
            portal.client_secret = verified.local_app.client_secret
        elif info.client_id:
            portal.client_id, portal.client_secret = "", ""
        portal.access_token = claim.access_token
        portal.refresh_token = claim.refresh_token
        # No lifetime in the claim: treat the token as expiring, so the first call refreshes it.
        portal.expires_at = now + timedelta(seconds=claim.expires_in or 0)
        portal.refresh_token_issued_at = now
        portal.user_id = info.user_id or claim.user_id or portal.user_id
        portal.scope = ",".join(info.scope or claim.scope) or portal.scope
        if claim.application_token:
            portal.application_token = claim.application_token
        status = info.status or claim.status
        if status in Portal.AppStatus.values:
            portal.app_status = status
        if license_info:
            license = str(license_info.get("LICENSE") or "")
            if license:
                portal.license = license[:64]
                portal.plan = plan_for_license(license)
        payment_expired = info.payment_expired is True or (
            str((license_info or {}).get("PAYMENT_EXPIRED", "N")).upper() == "Y"
        )
        new_state = Portal.State.PAYMENT_REQUIRED if payment_expired else Portal.State.ACTIVE
        if portal.state != new_state or portal.pk is None:
            portal.state_changed_at = now
        portal.state = new_state
        portal.state_reason = "app.info: payment expired" if payment_expired else ""
        if installing or portal.installed_at is None:
            portal.installed_at = now
        portal.uninstalled_at = None
        portal.save()
    return portal


def _portal_license(verified: VerifiedInstall) -> Mapping[str, Any] | None:
    """The portal's own app.info (LICENSE, PAYMENT_EXPIRED), or None when it can't be had.

    Best effort: the OAuth server already verified the install; the plan only tunes the rate
    limiter and defaults to the safe (lower) one.
    """
    credentials = TokenCredentials(
        token=verified.claim.access_token,
        client_endpoint=verified.client_endpoint,
        member_id=verified.claim.member_id,
    )
    try:
        result = rest_call(credentials=credentials, method="app.info")
    except Bitrix24Error as e:
        extra = {"member_id": verified.claim.member_id, "error": type(e).__name__}
        logger.warning("portal.license_unknown", extra=extra)
        return None
    return result if isinstance(result, Mapping) else None


def _events_bind(portal_id: int) -> None:
    # A task, so a slow or failing event.bind never fails the install request that triggered it.
    from ..tasks import portal_events_bind_task

    portal_events_bind_task.delay(portal_id)
