from django.contrib import admin

from .models import Portal


@admin.register(Portal)
class PortalAdmin(admin.ModelAdmin):
    list_display = ("domain", "member_id", "state", "app_status", "plan", "expires_at", "last_refreshed_at")
    list_filter = ("state", "app_status", "plan")
    search_fields = ("domain", "member_id")
    # Secrets are never shown or editable here.
    exclude = ("access_token", "refresh_token", "application_token", "client_secret")
    readonly_fields = (
        "member_id",
        "client_endpoint",
        "server_endpoint",
        "expires_at",
        "refresh_token_issued_at",
        "user_id",
        "scope",
        "app_status",
        "license",
        "state_changed_at",
        "installed_at",
        "uninstalled_at",
        "last_refreshed_at",
        "last_used_at",
        "created_at",
        "updated_at",
    )
