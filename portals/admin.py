from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from .bitrix.exceptions import Bitrix24Error
from .models import LocalApplication, Portal
from .services.lifecycle import portal_payment_changed
from .services.tokens import RefreshWhen, portal_tokens_refresh


@admin.register(Portal)
class PortalAdmin(admin.ModelAdmin):
    list_display = (
        "domain",
        "member_id",
        "state",
        "app_status",
        "plan",
        "expires_at",
        "refresh_token_issued_at",
        "last_used_at",
    )
    list_filter = ("state", "app_status", "plan", "offline_events")
    search_fields = ("domain", "member_id")
    # Secrets are never shown or editable here.
    exclude = ("access_token", "refresh_token", "application_token", "client_secret")
    readonly_fields = (
        "member_id",
        "domain",
        "client_endpoint",
        "server_endpoint",
        "client_id",
        "expires_at",
        "refresh_token_issued_at",
        "user_id",
        "scope",
        "app_status",
        "license",
        "plan",
        "state",
        "state_reason",
        "state_changed_at",
        "installed_at",
        "uninstalled_at",
        "last_refreshed_at",
        "last_used_at",
        "created_at",
        "updated_at",
        "reauthorise",
    )
    actions = ("refresh_now", "recheck_payment")

    def has_add_permission(self, request) -> bool:
        return False  # portals come only from verified installs

    @admin.display(description="Re-authorise")
    def reauthorise(self, obj: Portal) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("portals:oauth_start") + f"?portal={obj.member_id}"
        return format_html('<a href="{}">Start the OAuth flow on {}</a>', url, obj.domain)

    @admin.action(description="Refresh tokens now (single-flight)")
    def refresh_now(self, request, queryset):
        for portal in queryset:
            try:
                portal_tokens_refresh(
                    portal_id=portal.pk, when=RefreshWhen(stale_token=portal.access_token), reason="admin"
                )
            except Bitrix24Error as e:
                self.message_user(request, f"{portal.domain}: {type(e).__name__}", level=messages.WARNING)
            else:
                self.message_user(request, f"{portal.domain}: refreshed")

    @admin.action(description="Re-check payment (app.info)")
    def recheck_payment(self, request, queryset):
        for portal in queryset:
            try:
                portal = portal_payment_changed(portal=portal)
            except Bitrix24Error as e:
                self.message_user(request, f"{portal.domain}: {type(e).__name__}", level=messages.WARNING)
            else:
                self.message_user(request, f"{portal.domain}: {portal.get_state_display()}")


@admin.register(LocalApplication)
class LocalApplicationAdmin(admin.ModelAdmin):
    list_display = ("client_id", "title", "created_at")
    search_fields = ("client_id", "title")
    # The secret is set with `manage.py register_local_app`, never shown.
    exclude = ("client_secret",)
    readonly_fields = ("client_id", "created_at")

    def has_add_permission(self, request) -> bool:
        return False
