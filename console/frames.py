"""What the app's pages inside the portal show besides the portal's state: its recent activity,
what needs the user's action, and (administrators only) the portal's settings form.

Connected to ``portals.signals.frame_page_context``, so the portals layer renders the page without
importing the console.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from events.models import Event
from portals.models import Portal

from .forms import DEAL_FIELDS, DEFAULT_DEAL_FIELDS, PreferencesForm
from .models import PortalHealth, PortalPreferences, PortalRollup, Resolution

ACTIVITY = ("events_accepted", "events_done", "events_failed", "rest_calls")


def portal_preferences(portal_id: int) -> PortalPreferences | None:
    return PortalPreferences.objects.filter(portal_id=portal_id).first()


def portal_activity(portal: Portal) -> dict[str, Any]:
    """The last 24 hours on this portal (from the rollups) and its latest event."""
    since = timezone.now() - timedelta(hours=24)
    sums = PortalRollup.objects.filter(portal=portal, resolution=Resolution.HOUR, start__gte=since).aggregate(
        **{column: Sum(column) for column in ACTIVITY}
    )
    latest = Event.objects.filter(portal=portal).order_by("-id").values("event", "received_at").first()
    return {**{column: sums[column] or 0 for column in ACTIVITY}, "latest": latest}


def user_actions(portal: Portal, *, is_admin: bool, activity: dict[str, Any]) -> list[Any]:
    """What this user can do something about, in words for them."""
    needs: list[Any] = []
    if portal.state == Portal.State.PAYMENT_REQUIRED:
        needs.append(_("The app's subscription has ended: renew it in Bitrix24 Market to resume its work."))
    if portal.state == Portal.State.REAUTH_REQUIRED and not is_admin:
        needs.append(_("The app needs an administrator of this portal to open it once."))
    health = PortalHealth.objects.filter(portal=portal).first()
    if health and health.binding_failed_at and is_admin:
        needs.append(
            _("The app could not subscribe to this portal's events: open it again later or reinstall it.")
        )
    if activity["events_failed"]:
        needs.append(
            _(
                "%(count)s change(s) in the last 24 hours could not be processed; "
                "the app's operator can replay them."
            )
            % {"count": activity["events_failed"]}
        )
    return needs


def frame_context(*, portal: Portal, is_admin: bool) -> dict[str, Any]:
    preferences = portal_preferences(portal.pk)
    activity = portal_activity(portal)
    return {
        "activity": activity,
        "user_actions": user_actions(portal, is_admin=is_admin, activity=activity),
        "language": preferences.language if preferences else "",
        "deal_fields": (preferences.deal_fields if preferences else None) or DEFAULT_DEAL_FIELDS,
        "deal_field_labels": DEAL_FIELDS,
        "settings_form": PreferencesForm.for_portal(preferences) if is_admin else None,
    }
