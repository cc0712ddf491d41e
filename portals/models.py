"""An installed Bitrix24 portal and its OAuth credentials."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

from portals.conf import app_settings

from .fields import EncryptedTextField


class PortalQuerySet(models.QuerySet["Portal"]):
    def active(self) -> PortalQuerySet:
        return self.filter(state=Portal.State.ACTIVE)

    def with_work_due_before(self, moment: datetime) -> PortalQuerySet:
        return self.filter(work_due_at__lte=moment)

    def refresh_token_older_than(self, moment: datetime) -> PortalQuerySet:
        return self.filter(refresh_token_issued_at__lt=moment)

    def data_deletion_due(self, moment: datetime) -> PortalQuerySet:
        return self.filter(state=Portal.State.UNINSTALLED, data_delete_after__lte=moment)


class Portal(models.Model):
    """One Bitrix24 account that installed the app, keyed by member_id (stable across renames)."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        REAUTH_REQUIRED = "reauth_required", "Needs re-authorisation"
        PAYMENT_REQUIRED = "payment_required", "Payment required"
        UNINSTALLED = "uninstalled", "Uninstalled"

    class AppStatus(models.TextChoices):
        FREE = "F", "Free"
        DEMO = "D", "Demo"
        TRIAL = "T", "Trial"
        PAID = "P", "Paid"
        LOCAL = "L", "Local"
        SUBSCRIPTION = "S", "Subscription"

    class Plan(models.TextChoices):
        STANDARD = "standard", "Standard (2 req/s, burst 50)"
        ENTERPRISE = "enterprise", "Enterprise (5 req/s, burst 250)"

    member_id = models.CharField(max_length=64, unique=True)
    domain = models.CharField(max_length=255, help_text="Portal host (host[:port]); follows renames.")
    # No angle brackets: the admin shows help texts as HTML.
    client_endpoint = models.URLField(
        max_length=500, help_text="Base of REST calls: https://DOMAIN/rest/ on the portal's own domain."
    )
    server_endpoint = models.URLField(max_length=500, help_text="OAuth server REST base (allow-listed).")

    # Registration: blank for the marketplace app (settings); a local app keeps its own pair.
    client_id = models.CharField(max_length=128, blank=True)
    client_secret = EncryptedTextField(blank=True, default="")

    access_token = EncryptedTextField(blank=True, default="")
    refresh_token = EncryptedTextField(blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Access token expiry (absolute).")
    refresh_token_issued_at = models.DateTimeField(null=True, blank=True)
    user_id = models.PositiveIntegerField(null=True, blank=True, help_text="Owner of the stored tokens.")
    scope = models.TextField(blank=True, default="", help_text="Granted scopes, comma-separated.")
    application_token = EncryptedTextField(blank=True, default="")

    app_status = models.CharField(max_length=1, choices=AppStatus.choices, blank=True)
    plan = models.CharField(max_length=16, choices=Plan.choices, default=Plan.STANDARD)
    license = models.CharField(max_length=64, blank=True, help_text="LICENSE from app.info.")
    offline_events = models.BooleanField(default=False, help_text="Portal allows offline events.")

    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVE, db_index=True)
    state_reason = models.TextField(blank=True, default="")
    state_changed_at = models.DateTimeField(null=True, blank=True)

    installed_at = models.DateTimeField(null=True, blank=True)
    uninstalled_at = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set by an operator (the console): no calls are made for the portal and its events "
        "are acknowledged and dropped, lifecycle events excepted; its refresh token is still kept alive.",
    )
    data_delete_after = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A clean uninstall deletes the portal's data after this moment; a reinstall calls it off.",
    )
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    work_due_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="Next background work; the beat keeps tokens warm."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PortalQuerySet.as_manager()

    class Meta:
        ordering = ["domain"]
        indexes = [
            models.Index(fields=["state", "refresh_token_issued_at"], name="portal_dormant_idx"),
        ]

    def __str__(self) -> str:
        return self.domain

    def __repr__(self) -> str:
        # Never the tokens: repr ends up in logs and tracebacks.
        return f"<Portal {self.member_id} {self.domain} {self.state}>"

    @property
    def is_local_app(self) -> bool:
        return bool(self.client_id)

    @property
    def oauth_client_id(self) -> str:
        return self.client_id or app_settings.client_id

    @property
    def is_usable(self) -> bool:
        return self.state == self.State.ACTIVE and bool(self.access_token)

    def access_token_expires_within(self, margin: timedelta, *, now: datetime | None = None) -> bool:
        if not self.access_token or self.expires_at is None:
            return True
        return self.expires_at <= (now or timezone.now()) + margin


class LocalApplication(models.Model):
    """A local app registration (client_id ``local.…``, status L) valid on one portal only.

    An operator registers it before installing; an install whose tokens app.info attributes to
    this client_id is then accepted and the Portal keeps the pair for its refresh grants.
    """

    client_id = models.CharField(max_length=128, unique=True)
    client_secret = EncryptedTextField()
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["client_id"]

    def __str__(self) -> str:
        return self.title or self.client_id

    def __repr__(self) -> str:
        return f"<LocalApplication {self.client_id}>"
