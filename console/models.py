"""The console's own data: per-portal rollups kept as figures arrive, each portal's health, and the
settings a portal's administrators keep for the app's pages.

Rollups are counters per minute (kept two hours, for the hour chart) and per hour (kept
BITRIX24_CONSOLE_ROLLUP_DAYS, for the day and week charts and the 24-hour columns), for each portal
and for all portals together, so no page counts rows of the events table.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from portals.models import Portal


class Resolution(models.TextChoices):
    MINUTE = "m", _("minute")
    HOUR = "h", _("hour")


class Counters(models.Model):
    """What happened in one period: events, REST calls and refreshes."""

    resolution = models.CharField(max_length=1, choices=Resolution.choices)
    start = models.DateTimeField()
    events_accepted = models.PositiveIntegerField(default=0)
    events_duplicate = models.PositiveIntegerField(default=0)
    events_refused = models.PositiveIntegerField(default=0)
    events_done = models.PositiveIntegerField(default=0)
    events_retried = models.PositiveIntegerField(default=0)
    events_failed = models.PositiveIntegerField(default=0)
    events_ignored = models.PositiveIntegerField(default=0)
    dispatch_lag_sum = models.FloatField(default=0.0, help_text="Seconds from ts to dispatch, summed.")
    dispatch_lag_max = models.FloatField(default=0.0)
    rest_calls = models.PositiveIntegerField(default=0)
    rest_errors = models.PositiveIntegerField(default=0)
    rest_limited_503 = models.PositiveIntegerField(default=0)
    rest_limited_429 = models.PositiveIntegerField(default=0)
    limiter_wait_seconds = models.FloatField(default=0.0)
    operating_seconds = models.FloatField(default=0.0)
    refreshes = models.PositiveIntegerField(default=0)
    refresh_failures = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True


class PortalRollup(Counters):
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["portal", "resolution", "start"], name="console_portal_rollup_key"
            ),
        ]
        indexes = [models.Index(fields=["resolution", "start"], name="console_portal_rollup_start")]

    def __str__(self) -> str:
        return f"{self.portal_id} {self.resolution} {self.start:%Y-%m-%d %H:%M}"


class TotalRollup(Counters):
    """All portals together (and what no portal can be named for, such as refused events)."""

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["resolution", "start"], name="console_total_rollup_key")
        ]

    def __str__(self) -> str:
        return f"{self.resolution} {self.start:%Y-%m-%d %H:%M}"


class PortalHealth(models.Model):
    """The latest of what went wrong with a portal, for the portal list and its page."""

    portal = models.OneToOneField(Portal, on_delete=models.CASCADE, primary_key=True, related_name="health")
    last_call_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    recent_errors = models.JSONField(
        default=list, help_text="The latest call errors: [[unix time, code method]]."
    )
    refresh_failed_at = models.DateTimeField(null=True, blank=True)
    refresh_error = models.CharField(max_length=100, blank=True, default="")
    binding_failed_at = models.DateTimeField(null=True, blank=True)
    binding_error = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        verbose_name = _("portal health")
        verbose_name_plural = _("portal health")
        permissions = [("operate_portal", _("Can act on portals (refresh, re-bind, replay…)"))]

    def __str__(self) -> str:
        return str(self.portal_id)

    def __repr__(self) -> str:
        return f"<PortalHealth {self.portal_id}>"


class PortalPreferences(models.Model):
    """What a portal's administrators chose for the app's pages on their portal."""

    class Language(models.TextChoices):
        PORTAL = "", _("The portal's language")
        EN = "en", "English"
        RU = "ru", "Русский"

    portal = models.OneToOneField(
        Portal, on_delete=models.CASCADE, primary_key=True, related_name="preferences"
    )
    language = models.CharField(max_length=8, choices=Language.choices, blank=True, default="")
    deal_fields = models.JSONField(default=list, help_text="Deal fields the deal tab shows, in order.")
    updated_by = models.PositiveIntegerField(null=True, blank=True, help_text="Bitrix24 user id.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("portal preferences")
        verbose_name_plural = _("portal preferences")

    def __str__(self) -> str:
        return str(self.portal_id)

    def __repr__(self) -> str:
        return f"<PortalPreferences {self.portal_id}>"
