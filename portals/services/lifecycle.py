"""What happens to an installed portal after the install: uninstall, app updates, payment, renames.

The events app calls the first three with a portal it already authenticated by its
application_token (protocol §7.3); renames come from the client (a 302 from the portal).
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from ..bitrix.exceptions import (
    Bitrix24ApiError,
    Bitrix24ConfigError,
    Bitrix24PaymentRequired,
    Bitrix24PortalMoved,
    Bitrix24TokenExpired,
    Bitrix24TransportError,
)
from ..bitrix.oauth import AppInfo
from ..models import Portal
from .endpoints import endpoints_check, normalise_domain
from .oauth import Clock, portal_oauth_server
from .tokens import RefreshWhen, portal_raise_if_unusable, portal_tokens_refresh

logger = logging.getLogger(__name__)


def application_token_matches(*, portal: Portal, application_token: str) -> bool:
    """Constant-time comparison of a received application_token with the stored one."""
    stored = portal.application_token
    return bool(stored) and hmac.compare_digest(stored.encode(), (application_token or "").encode())


def portal_uninstall(*, portal: Portal, clean: bool, event_ts: datetime | None) -> bool:
    """ONAPPUNINSTALL: mark uninstalled and erase the tokens; with ``clean`` also delete its data.

    An uninstall older than the current install (delivered late, after a reinstall) changes
    nothing. ``clean`` (the admin ticked "delete app data") deletes every row that references the
    portal through a foreign key (other apps' data), keeping the Portal row itself so a later,
    even older, uninstall still finds installed_at to compare with.
    Returns False when the event was ignored as stale. Without ``event_ts`` it counts as now.
    """
    event_ts = event_ts or timezone.now()
    with transaction.atomic():
        portal = Portal.objects.select_for_update().get(pk=portal.pk)
        if portal.installed_at is not None and event_ts < portal.installed_at:
            logger.info("portal.uninstall_stale", extra={"member_id": portal.member_id})
            return False
        portal.state = Portal.State.UNINSTALLED
        portal.state_reason = "uninstalled from the portal" + (" with its data" if clean else "")
        portal.state_changed_at = timezone.now()
        portal.uninstalled_at = event_ts
        portal.access_token = portal.refresh_token = portal.application_token = ""
        portal.expires_at = None
        portal.work_due_at = None
        portal.save()
        if clean:
            _portal_data_delete(portal)
    logger.info("portal.uninstalled", extra={"member_id": portal.member_id, "clean": clean})
    return True


def _portal_data_delete(portal: Portal) -> None:
    for relation in Portal._meta.related_objects:
        if relation.one_to_many or relation.one_to_one:
            manager = relation.related_model._default_manager  # type: ignore[union-attr]
            manager.filter(**{relation.field.name: portal}).delete()


def portal_update_application_token(*, portal: Portal, application_token: str) -> None:
    """ONAPPUPDATE: the event brings the application_token every later event will carry."""
    if not application_token:
        return
    # update() prepares the value through the field, so it is stored encrypted.
    Portal.objects.filter(pk=portal.pk).update(application_token=application_token)
    portal.application_token = application_token
    logger.info("portal.application_token_updated", extra={"member_id": portal.member_id})


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
    with transaction.atomic():
        portal = Portal.objects.select_for_update().get(pk=portal.pk)
        portal_apply_app_info(portal, info)
        expired = info.payment_expired is True
        new_state = Portal.State.PAYMENT_REQUIRED if expired else Portal.State.ACTIVE
        if portal.state != new_state:
            portal.state = new_state
            portal.state_reason = "app.info: payment expired" if expired else ""
            portal.state_changed_at = clock()
            logger.info("portal.payment_state", extra={"member_id": portal.member_id, "state": new_state})
        portal.save()
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


def portal_apply_app_info(portal: Portal, info: AppInfo) -> None:
    """Copy status, license and plan from app.info onto ``portal`` (unsaved)."""
    if info.status in Portal.AppStatus.values:
        portal.app_status = info.status
    if info.license:
        portal.license = info.license[:64]
        portal.plan = plan_for_license(info.license)


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
    with transaction.atomic():
        portal = Portal.objects.select_for_update().get(pk=portal_id)
        old = portal.domain
        portal.domain, portal.client_endpoint = new_domain, client_endpoint
        portal.save(update_fields=["domain", "client_endpoint", "updated_at"])
    logger.info("portal.renamed", extra={"member_id": portal.member_id, "old": old, "new": new_domain})
    return portal
