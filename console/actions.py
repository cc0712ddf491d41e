"""The operator's actions on one portal. Each calls the service that owns the change and returns
its result as one line for the operator record; none writes a portal's fields itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.core import signing
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from events.services.binding import AdministratorTokenRequired, app_events_bind, app_events_reconcile
from events.services.offline import offline_events_drain
from events.services.replay import events_replay
from portals.bitrix.exceptions import Bitrix24Error
from portals.conf import app_settings
from portals.models import Portal
from portals.services.lifecycle import portal_payment_changed
from portals.services.store import portal_disabled_record
from portals.services.tokens import RefreshWhen, portal_tokens_refresh

from .rollups import portal_binding_record

REAUTH_SALT = "console.reauth-link"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str


def _refresh(portal: Portal) -> Outcome:
    portal_tokens_refresh(
        portal_id=portal.pk, when=RefreshWhen(stale_token=portal.access_token), reason="console"
    )
    return Outcome(True, "refreshed")


def _payment(portal: Portal) -> Outcome:
    portal = portal_payment_changed(portal=portal)
    return Outcome(True, f"state {portal.state}, app status {portal.app_status or '-'}")


def _bindings(operation: Callable[..., object], portal: Portal) -> Outcome:
    try:
        report = operation(portal_id=portal.pk)
    except Bitrix24Error as e:
        portal_binding_record(portal_id=portal.pk, error=f"{type(e).__name__}")
        raise
    portal_binding_record(portal_id=portal.pk, error="")
    return Outcome(
        True,
        f"bound {len(report.bound)}, unbound {len(report.unbound)}, present {len(report.present)}",  # type: ignore[attr-defined]
    )


def _rebind(portal: Portal) -> Outcome:
    return _bindings(app_events_bind, portal)


def _reconcile(portal: Portal) -> Outcome:
    return _bindings(app_events_reconcile, portal)


def _drain_offline(portal: Portal) -> Outcome:
    report = offline_events_drain(portal_id=portal.pk)
    return Outcome(True, f"fetched {report.fetched}, stored {report.stored}, errors {report.errors}")


def _disable(portal: Portal) -> Outcome:
    portal_disabled_record(portal_id=portal.pk, disabled=True, now=timezone.now())
    return Outcome(True, "disabled: no calls, events dropped (lifecycle events excepted)")


def _enable(portal: Portal) -> Outcome:
    portal_disabled_record(portal_id=portal.pk, disabled=False, now=timezone.now())
    return Outcome(True, "enabled")


def _replay_failed(portal: Portal) -> Outcome:
    count = events_replay(failed=True, portal_member_id=portal.member_id)
    return Outcome(True, f"re-queued {count} event(s)")


@dataclass(frozen=True)
class Action:
    label: object
    run: Callable[[Portal], Outcome]


ACTIONS = {
    "refresh": Action(_("Refresh tokens now"), _refresh),
    "payment": Action(_("Re-check payment"), _payment),
    "rebind": Action(_("Re-bind events"), _rebind),
    "reconcile": Action(_("Reconcile bindings"), _reconcile),
    "drain_offline": Action(_("Drain offline events"), _drain_offline),
    "replay_failed": Action(_("Replay failed events"), _replay_failed),
    "disable": Action(_("Disable (no calls, events dropped)"), _disable),
    "enable": Action(_("Enable again"), _enable),
}


def portal_act(*, portal: Portal, action: str) -> Outcome:
    """Run ``action`` (a key of ACTIONS) on ``portal``; a Bitrix24 refusal is an outcome, not an error."""
    try:
        return ACTIONS[action].run(portal)
    except AdministratorTokenRequired:
        return Outcome(False, "the stored token is not an administrator's: re-authorise the portal")
    except Bitrix24Error as e:
        return Outcome(False, f"{type(e).__name__}: {e}")


def reauth_link(*, portal: Portal, base_url: str) -> str:
    """A link for the portal's administrator that starts re-authorisation when opened.

    It is signed (portal and install), valid BITRIX24_CONSOLE_REAUTH_LINK_DAYS, and starts a fresh
    code flow when opened, so the flow's own short-lived state never runs out while the link waits
    in someone's mail. Only an administrator of the portal can complete that flow.
    """
    installed = portal.installed_at.timestamp() if portal.installed_at else 0
    token = signing.dumps({"p": portal.pk, "i": installed}, salt=REAUTH_SALT)
    return base_url.rstrip("/") + reverse("console:reauth", args=[token])


def reauth_link_portal(token: str) -> Portal:
    """The portal a link made by :func:`reauth_link` stands for; raises signing.BadSignature (expired
    included) or Portal.DoesNotExist (gone, or reinstalled since: a new install needs a new link)."""
    max_age = timedelta(days=app_settings.console_reauth_link_days)
    data = signing.loads(token, salt=REAUTH_SALT, max_age=max_age)
    portal = Portal.objects.get(pk=int(data["p"]))
    installed = portal.installed_at.timestamp() if portal.installed_at else 0
    if abs(installed - float(data["i"])) > 1e-3 or portal.state == Portal.State.UNINSTALLED:
        raise Portal.DoesNotExist("the portal was reinstalled or uninstalled since the link was made")
    return portal
