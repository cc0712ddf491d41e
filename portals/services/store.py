"""The portal store: the only code that writes a Portal's lifecycle fields.

Its state, the reason and moment of the last change, the token pair and its times, the
application token, the install and uninstall moments, a pending data deletion and the portal's
address are written here and nowhere else (a test enforces it). Every operation works on a row
locked with ``select_for_update`` inside a transaction, and every state change goes through one
table, :data:`TRANSITIONS` (state × cause → state), printed in docs/portals.md. Deciding whether
a change is genuine is the confirmation service's job (:mod:`.confirm`) and the callers': the
store records what was decided. A refused claim never reaches it, so it never changes a state.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import urlsplit

from django.db import transaction

from ..bitrix.exceptions import (
    Bitrix24AuthError,
    Bitrix24ConfigError,
    Bitrix24PaymentRequired,
    Bitrix24PortalUnavailable,
)
from ..bitrix.oauth import TokenGrant
from ..models import Portal
from .endpoints import endpoints_check, normalise_domain

logger = logging.getLogger(__name__)

State = Portal.State


class Cause(enum.StrEnum):
    """Why a portal's state may change."""

    INSTALLED = "installed"  # a verified install, or an administrator's verified restore
    INSTALLED_UNPAID = "installed_unpaid"  # the same, while app.info says the payment expired
    REAUTHORISED = "reauthorised"  # the OAuth code flow, completed by an administrator
    REFRESHED = "refreshed"  # a refresh grant
    GRANT_REFUSED = "grant_refused"  # invalid_grant, invalid_client, an unknown token
    PAYMENT_EXPIRED = "payment_expired"  # PAYMENT_REQUIRED, or app.info says so
    PAYMENT_RENEWED = "payment_renewed"  # app.info confirms an installed, paid app
    PORTAL_GONE = "portal_gone"  # NOT_INSTALLED, PORTAL_DELETED
    UNINSTALLED = "uninstalled"  # a confirmed ONAPPUNINSTALL


_ANY = (None, State.ACTIVE, State.REAUTH_REQUIRED, State.PAYMENT_REQUIRED, State.UNINSTALLED)
_LIVE = (State.ACTIVE, State.REAUTH_REQUIRED, State.PAYMENT_REQUIRED)
_PAYABLE = (State.ACTIVE, State.PAYMENT_REQUIRED)

# cause → {state before (None: a new portal) → state after}. A state missing from a cause's row
# means the cause changes nothing there (an uninstalled portal ignores a refused REST call, payment
# can't fix a portal that needs re-authorisation).
TRANSITIONS: dict[Cause, dict[State | None, State]] = {
    Cause.INSTALLED: {before: State.ACTIVE for before in _ANY},
    Cause.INSTALLED_UNPAID: {before: State.PAYMENT_REQUIRED for before in _ANY},
    Cause.REAUTHORISED: {before: State.ACTIVE for before in _ANY if before is not None},
    Cause.REFRESHED: {before: before for before in _PAYABLE},
    Cause.GRANT_REFUSED: {before: State.REAUTH_REQUIRED for before in _LIVE},
    Cause.PAYMENT_EXPIRED: {before: State.PAYMENT_REQUIRED for before in _PAYABLE},
    Cause.PAYMENT_RENEWED: {before: State.ACTIVE for before in _PAYABLE},
    Cause.PORTAL_GONE: {before: State.UNINSTALLED for before in _LIVE},
    Cause.UNINSTALLED: {before: State.UNINSTALLED for before in _LIVE},
}


@contextlib.contextmanager
def portal_locked(portal_id: int) -> Iterator[Portal]:
    """The portal's row, locked until the block ends (one transaction).

    FOR NO KEY UPDATE (PostgreSQL): the key never changes, and a plain FOR UPDATE would wait for
    every open transaction that inserted a row referencing the portal (an event handler's batch).
    """
    with transaction.atomic():
        yield Portal.objects.select_for_update(no_key=True).get(pk=portal_id)


def _transition(portal: Portal, cause: Cause, reason: str | None, now: datetime) -> bool:
    """Apply ``cause`` to the (locked, unsaved) portal; False when the table says it changes nothing.

    ``reason`` None keeps the current one (a refresh says nothing about why a portal is in its state).
    """
    after = TRANSITIONS[cause].get(portal.state if portal.pk else None)
    if after is None:
        return False
    if after != portal.state or portal.pk is None:
        portal.state_changed_at = now
        logger.info(
            "portal.state_changed",
            extra={"member_id": portal.member_id, "from": portal.state, "to": after, "cause": cause},
        )
    portal.state = after
    if reason is not None:
        portal.state_reason = reason[:500]
    if after == State.UNINSTALLED:
        portal.access_token = portal.refresh_token = portal.application_token = ""
        portal.expires_at = None
        portal.work_due_at = None
    return True


def _grant_apply(portal: Portal, grant: TokenGrant, now: datetime) -> None:
    portal.access_token = grant.access_token
    portal.refresh_token = grant.refresh_token
    portal.expires_at = grant.expires_at
    portal.refresh_token_issued_at = now
    portal.last_refreshed_at = now
    if grant.scope:
        portal.scope = ",".join(grant.scope)
    if grant.user_id:
        portal.user_id = grant.user_id
    if grant.status in Portal.AppStatus.values:
        portal.app_status = grant.status
    if grant.client_endpoint and grant.member_id == portal.member_id:
        # The token response comes from the allow-listed server itself: a new client_endpoint for
        # the same member_id is a rename Bitrix24 confirmed.
        _endpoint_follow(portal, grant.client_endpoint)


def _endpoint_follow(portal: Portal, client_endpoint: str) -> None:
    domain = normalise_domain(urlsplit(client_endpoint).netloc)
    if not domain or domain == portal.domain:
        return
    try:
        endpoint, _server = endpoints_check(
            domain=domain, client_endpoint=client_endpoint, server_endpoint=portal.server_endpoint
        )
    except Bitrix24ConfigError:
        logger.warning("portal.endpoint_ignored", extra={"member_id": portal.member_id})
        return
    logger.info("portal.renamed", extra={"member_id": portal.member_id, "old": portal.domain, "new": domain})
    portal.domain, portal.client_endpoint = domain, endpoint


def _app_info_apply(portal: Portal, *, app_status: str, license: str, plan: str) -> None:
    if app_status in Portal.AppStatus.values:
        portal.app_status = app_status
    if license:
        portal.license, portal.plan = license[:64], plan


def portal_grant_record(portal: Portal, grant: TokenGrant, *, cause: Cause, now: datetime) -> None:
    """Store a grant of the OAuth server (refresh, code flow) on the locked ``portal``, and save it."""
    _grant_apply(portal, grant, now)
    if cause == Cause.REAUTHORISED:
        portal.uninstalled_at = None
        portal.data_delete_after = None
    _transition(portal, cause, "" if cause == Cause.REAUTHORISED else None, now)
    portal.save()


def portal_refusal_record(portal: Portal, error: Bitrix24AuthError, *, source: str, now: datetime) -> None:
    """A permanent refusal of the portal's own pair (refresh or REST call), on the locked ``portal``.

    PAYMENT_REQUIRED → payment required; NOT_INSTALLED / PORTAL_DELETED → uninstalled (tokens
    erased); anything else (invalid_grant, invalid_client, an unknown token) → needs
    re-authorisation. Saved, so an operator sees it and later calls fail fast.
    """
    if isinstance(error, Bitrix24PaymentRequired):
        cause = Cause.PAYMENT_EXPIRED
    elif isinstance(error, Bitrix24PortalUnavailable):
        cause = Cause.PORTAL_GONE
    else:
        cause = Cause.GRANT_REFUSED
    reason = f"{source}: {error.code or type(error).__name__}"
    if error.description:
        reason += f" ({error.description})"
    if not _transition(portal, cause, reason, now):
        return
    if portal.state == State.UNINSTALLED:
        portal.uninstalled_at = now
    portal.save()
    logger.warning(
        "portal.refresh_refused",
        extra={"member_id": portal.member_id, "state": portal.state, "code": error.code},
    )


def portal_install_record(
    portal: Portal,
    *,
    grant: TokenGrant,
    domain: str,
    client_endpoint: str,
    server_endpoint: str,
    registration: tuple[str, str] | None,
    application_token: str,
    app_status: str,
    license: str,
    plan: str,
    payment_expired: bool,
    installing: bool,
    now: datetime,
) -> None:
    """A verified install (or an administrator's verified restore) on the locked or new ``portal``.

    ``registration`` is a local app's (client_id, client_secret), or None for the marketplace app.
    Restores the portal from any state, calls off a pending data deletion, and saves it.
    """
    portal.domain = normalise_domain(domain)
    portal.client_endpoint = client_endpoint
    portal.server_endpoint = server_endpoint
    portal.client_id, portal.client_secret = registration or ("", "")
    _grant_apply(portal, grant, now)
    if application_token:
        portal.application_token = application_token
    _app_info_apply(portal, app_status=app_status, license=license, plan=plan)
    cause = Cause.INSTALLED_UNPAID if payment_expired else Cause.INSTALLED
    _transition(portal, cause, "app.info: payment expired" if payment_expired else "", now)
    if installing or portal.installed_at is None:
        portal.installed_at = now
    portal.uninstalled_at = None
    portal.data_delete_after = None
    portal.save()


def portal_payment_record(
    portal: Portal, *, expired: bool, app_status: str, license: str, plan: str, now: datetime
) -> None:
    """What app.info said about payment, on the locked ``portal``; saved."""
    _app_info_apply(portal, app_status=app_status, license=license, plan=plan)
    cause = Cause.PAYMENT_EXPIRED if expired else Cause.PAYMENT_RENEWED
    _transition(portal, cause, "app.info: payment expired" if expired else "", now)
    portal.save()


def portal_uninstall_record(
    portal: Portal, *, event_ts: datetime, delete_data_after: datetime | None, now: datetime
) -> None:
    """A confirmed uninstall on the locked ``portal``: tokens erased; data deleted after a moment."""
    reason = "uninstalled from the portal" + (" with its data" if delete_data_after else "")
    _transition(portal, Cause.UNINSTALLED, reason, now)
    portal.uninstalled_at = event_ts
    if delete_data_after and portal.data_delete_after is None:
        portal.data_delete_after = delete_data_after
    portal.save()


def portal_disabled_record(*, portal_id: int, disabled: bool, now: datetime) -> Portal:
    """An operator disabled (or enabled again) the portal; its lifecycle state is left as it is."""
    with portal_locked(portal_id) as portal:
        if (portal.disabled_at is not None) == disabled:
            return portal
        portal.disabled_at = now if disabled else None
        portal.save(update_fields=["disabled_at", "updated_at"])
    logger.info("portal.disabled" if disabled else "portal.enabled", extra={"member_id": portal.member_id})
    return portal


def portal_data_deleted_record(portal: Portal) -> None:
    """The pending data deletion of the locked ``portal`` was carried out."""
    portal.data_delete_after = None
    portal.save(update_fields=["data_delete_after", "updated_at"])


def portal_domain_record(*, portal_id: int, domain: str, client_endpoint: str) -> Portal:
    """Follow a rename that Bitrix24 confirmed (app.info names ``domain`` for the member_id).

    ``client_endpoint`` was validated for ``domain`` by the caller (endpoints_check).
    """
    domain = normalise_domain(domain)
    with portal_locked(portal_id) as portal:
        old = portal.domain
        if (portal.domain, portal.client_endpoint) == (domain, client_endpoint):
            return portal
        portal.domain, portal.client_endpoint = domain, client_endpoint
        portal.save(update_fields=["domain", "client_endpoint", "updated_at"])
    logger.info("portal.renamed", extra={"member_id": portal.member_id, "old": old, "new": domain})
    return portal


def portal_application_token_record(*, portal: Portal, application_token: str) -> None:
    """Store the application token every later event will carry. Callers confirm the change first."""
    # Saved through the model, so post_save drops every copy in this process (the receiver's cache).
    with portal_locked(portal.pk) as locked:
        locked.application_token = application_token
        locked.save(update_fields=["application_token", "updated_at"])
    portal.application_token = application_token
    logger.info("portal.application_token_updated", extra={"member_id": portal.member_id})
