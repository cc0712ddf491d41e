"""What happens to an installed portal after the install: uninstall, app updates, payment, renames.

The events app calls these for events it verified by their application_token (protocol §7.3).
That token only proves "someone on this portal" (every user who opens the app receives it), so
nothing here acts on an event's word alone: an uninstall or an update changes the portal only
once Bitrix24 itself confirms it. Renames come from the client (a 302 from the portal).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.utils import timezone

from portals.conf import app_settings

from ..bitrix.exceptions import (
    Bitrix24ApiError,
    Bitrix24AuthError,
    Bitrix24ConfigError,
    Bitrix24Error,
    Bitrix24PaymentRequired,
    Bitrix24PortalMoved,
    Bitrix24TokenExpired,
    Bitrix24TransportError,
    InvalidInstallRequest,
)
from ..bitrix.oauth import AppInfo
from ..models import Portal
from .confirm import token_identify, tokens_equal
from .endpoints import endpoints_check, normalise_domain
from .oauth import Clock, portal_oauth_server
from .store import (
    portal_application_token_record,
    portal_data_deleted_record,
    portal_domain_record,
    portal_locked,
    portal_payment_record,
    portal_uninstall_record,
)
from .tokens import RefreshWhen, portal_raise_if_unusable, portal_tokens_refresh

logger = logging.getLogger(__name__)


def portal_uninstall(
    *, portal: Portal, clean: bool, event_ts: datetime | None, clock: Clock | None = None
) -> bool:
    """ONAPPUNINSTALL, once Bitrix24 confirms it: mark uninstalled and erase the tokens.

    The event itself proves nothing (every user who opens the app holds the application token it
    is signed with), so the app's own stored token asks the OAuth server first
    (:func:`portal_app_gone`): while app.info still answers that the app is installed, nothing
    changes. ``clean`` (the administrator ticked "delete app data") deletes every row that
    references the portal through a foreign key, but only after BITRIX24_UNINSTALL_CLEAN_GRACE_HOURS
    (:func:`portals_data_purge`), so a reinstall in between keeps the data. An uninstall older
    than the current install (delivered late, after a reinstall) changes nothing either; without
    ``event_ts`` it counts as now. Returns whether the portal was uninstalled. Raises
    Bitrix24TransportError / Bitrix24ServerError when the OAuth server gave no answer (try again).
    """
    clock = clock or timezone.now
    event_ts = event_ts or clock()
    current = Portal.objects.get(pk=portal.pk)
    if current.installed_at is not None and event_ts < current.installed_at:
        logger.info("portal.uninstall_stale", extra={"member_id": current.member_id})
        return False
    if current.state != Portal.State.UNINSTALLED and not portal_app_gone(portal=current, clock=clock):
        logger.warning("portal.uninstall_unconfirmed", extra={"member_id": current.member_id})
        return False
    now = clock()
    grace = timedelta(hours=app_settings.uninstall_clean_grace_hours)
    with portal_locked(portal.pk) as portal:
        if portal.installed_at is not None and event_ts < portal.installed_at:
            return False  # reinstalled while app.info was being asked
        portal_uninstall_record(
            portal, event_ts=event_ts, delete_data_after=now + grace if clean else None, now=now
        )
    logger.info("portal.uninstalled", extra={"member_id": portal.member_id, "clean": clean})
    return True


def portal_app_gone(*, portal: Portal, clock: Clock | None = None) -> bool:
    """Whether Bitrix24, asked with the app's own stored token, says the app is no longer installed.

    Gone: app.info answers ``installed: false``, or the OAuth server refuses the stored pair
    (NOT_INSTALLED, PORTAL_DELETED, the token revoked, the refresh refused: uninstalling revokes
    every token of the app). A portal without a stored pair can't be asked and counts as gone.
    Not gone: app.info answers for an installed app (also with the payment expired). Raises
    Bitrix24TransportError / Bitrix24ServerError when there was no answer.
    """
    if not portal.access_token or not portal.refresh_token:
        return True
    try:
        info = portal_app_info(portal=portal, clock=clock)
    except Bitrix24AuthError:
        return True
    return info.installed is False


def portals_data_purge(*, now: datetime | None = None) -> list[str]:
    """Delete the data of portals uninstalled with CLEAN whose grace period is over; their member_ids.

    The Portal row itself stays, so a later (even older) uninstall still finds installed_at to
    compare with.
    """
    purged = []
    for portal_id in Portal.objects.data_deletion_due(now or timezone.now()).values_list("id", flat=True):
        with portal_locked(portal_id) as portal:
            if portal.state != Portal.State.UNINSTALLED or portal.data_delete_after is None:
                continue  # reinstalled meanwhile
            _portal_data_delete(portal)
            portal_data_deleted_record(portal)
        logger.info("portal.data_deleted", extra={"member_id": portal.member_id})
        purged.append(portal.member_id)
    return purged


def _portal_data_delete(portal: Portal) -> None:
    for relation in Portal._meta.related_objects:
        if relation.one_to_many or relation.one_to_one:
            manager = relation.related_model._default_manager  # type: ignore[union-attr]
            manager.filter(**{relation.field.name: portal}).delete()


def portal_application_token_set(*, portal: Portal, application_token: str) -> None:
    """Store the application_token every later event will carry. Callers confirm the change first."""
    if application_token and not tokens_equal(portal.application_token, application_token):
        portal_application_token_record(portal=portal, application_token=application_token)


def portal_app_update_confirm(
    *, portal: Portal, access_token: str, version: str, clock: Clock | None = None
) -> None:
    """Confirm an ONAPPUPDATE that brings a new application token; InvalidInstallRequest if not.

    The event is signed with the new token, so the stored one can't vouch for it. Two independent
    answers of Bitrix24 must agree before the token changes:

    1. the event's access token is confirmed by app.info (this portal, this app) and belongs to an
       administrator (only administrators update apps);
    2. app.info asked with the app's own stored token shows the app installed at ``version``, the
       version the event announces: an update really happened.

    Until both hold the stored token stays the only one accepted, so a refused claim never makes
    Bitrix24's genuine events fail.
    """
    identity = token_identify(
        access_token=access_token,
        member_id=portal.member_id,
        domain=portal.domain,
        client_endpoint=portal.client_endpoint,
        server_endpoint=portal.server_endpoint,
        clock=clock,
    )
    if identity.info.client_id and identity.info.client_id != portal.oauth_client_id:
        raise InvalidInstallRequest("the token belongs to another application")
    identity.admin_require(action="updating the app")
    try:
        stored = portal_app_info(portal=portal, clock=clock)
    except Bitrix24Error as e:
        raise InvalidInstallRequest(f"the update could not be confirmed: {type(e).__name__}") from e
    if stored.installed is False or not version or stored.version != version:
        raise InvalidInstallRequest("app.info does not show the announced version")


def portal_payment_changed(*, portal: Portal, clock: Clock | None = None) -> Portal:
    """ONAPPPAYMENT (or an admin opening the app): re-check app.info and set the state.

    Active when the OAuth server confirms the installation and nothing says the payment expired;
    payment required when it says so. A portal that needs re-authorisation or is uninstalled is
    left alone (payment cannot fix that). Transport failures propagate (retry later).
    """
    clock = clock or timezone.now
    portal = Portal.objects.get(pk=portal.pk)
    if portal.state not in (Portal.State.ACTIVE, Portal.State.PAYMENT_REQUIRED) or not portal.refresh_token:
        return portal
    info = portal_app_info(portal=portal, clock=clock)
    with portal_locked(portal.pk) as portal:
        portal_payment_record(
            portal,
            expired=info.payment_expired is True,
            app_status=info.status,
            license=info.license,
            plan=plan_for_license(info.license) if info.license else "",
            now=clock(),
        )
    return portal


def portal_app_info(*, portal: Portal, clock: Clock | None = None) -> AppInfo:
    """app.info on the portal's OAuth server with the stored token (refreshed once if expired).

    A PAYMENT_REQUIRED answer is returned as ``payment_expired=True`` rather than raised.
    """
    clock = clock or timezone.now
    for attempt in range(2):
        server = portal_oauth_server(portal=portal, clock=clock)
        try:
            return server.app_info(portal.access_token)
        except Bitrix24PaymentRequired:
            return _payment_expired_info(portal)
        except Bitrix24TokenExpired:
            if attempt:
                raise
            # The payment path may run on a portal whose state is PAYMENT_REQUIRED: refresh
            # directly (the gate would refuse), still single-flight.
            try:
                portal = _refresh_for_check(portal=portal, clock=clock)
            except Bitrix24PaymentRequired:
                return _payment_expired_info(portal)
    raise AssertionError("unreachable")


def _payment_expired_info(portal: Portal) -> AppInfo:
    """What app.info would say when the OAuth server answers PAYMENT_REQUIRED instead."""
    return AppInfo(
        client_id=portal.oauth_client_id, member_id=portal.member_id, domain=portal.domain,
        client_endpoint=portal.client_endpoint, user_id=None, status=portal.app_status,
        installed=True, scope=(), payment_expired=True, license=portal.license,
    )  # fmt: skip


def _refresh_for_check(*, portal: Portal, clock: Clock) -> Portal:
    # A portal in PAYMENT_REQUIRED keeps its pair: the check may refresh it (still single-flight).
    return portal_tokens_refresh(
        portal_id=portal.pk,
        when=RefreshWhen(stale_token=portal.access_token),
        reason="check",
        clock=clock,
        allow_states=(Portal.State.PAYMENT_REQUIRED,),
    )


def plan_for_license(license: str) -> str:
    """The rate-limit plan for a LICENSE like ``en_ent250`` (Enterprise) or ``en_basic``."""
    family = license.lower().split("_", 1)[-1]
    return Portal.Plan.ENTERPRISE if family.startswith("ent") else Portal.Plan.STANDARD


def portal_domain_follow(*, portal_id: int, new_domain: str, clock: Clock | None = None) -> Portal:
    """The portal answered 302 to ``new_domain``: follow it if it is the same member_id.

    The OAuth server's app.info for our stored token (trusted, allow-listed) must name the same
    member_id at ``new_domain``; then domain and client_endpoint are updated. Raises
    Bitrix24PortalMoved (refusing to follow) otherwise, without changing anything.
    """
    clock = clock or timezone.now
    new_domain = normalise_domain(new_domain)
    portal = Portal.objects.get(pk=portal_id)
    portal_raise_if_unusable(portal)
    if new_domain == portal.domain:
        return portal
    try:
        info = portal_app_info(portal=portal, clock=clock)
    except (Bitrix24ApiError, Bitrix24TransportError) as e:
        logger.warning("portal.rename_unverified", extra={"member_id": portal.member_id})
        raise Bitrix24PortalMoved(new_domain, member_id=portal.member_id) from e
    confirmed_domain = normalise_domain(info.domain or urlsplit(info.client_endpoint).netloc)
    if info.member_id != portal.member_id or confirmed_domain != new_domain:
        logger.warning("portal.rename_refused", extra={"member_id": portal.member_id, "to": new_domain})
        raise Bitrix24PortalMoved(new_domain, member_id=portal.member_id)
    scheme = urlsplit(portal.client_endpoint).scheme or "https"
    try:
        client_endpoint, _ = endpoints_check(
            domain=new_domain,
            client_endpoint=f"{scheme}://{new_domain}/rest/",
            server_endpoint=portal.server_endpoint,
        )
    except Bitrix24ConfigError as e:
        raise Bitrix24PortalMoved(new_domain, member_id=portal.member_id) from e
    return portal_domain_record(portal_id=portal_id, domain=new_domain, client_endpoint=client_endpoint)
