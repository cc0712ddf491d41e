"""Local app registrations in the admin. The portals themselves are the operator console's
(console/admin.py): their list and page draw on the console's rollups and the events app."""

from django.contrib import admin

from .models import LocalApplication


@admin.register(LocalApplication)
class LocalApplicationAdmin(admin.ModelAdmin):
    list_display = ("client_id", "title", "created_at")
    search_fields = ("client_id", "title")
    # The secret is set with `manage.py register_local_app`, never shown.
    exclude = ("client_secret",)
    readonly_fields = ("client_id", "created_at")

    def has_add_permission(self, request) -> bool:
        return False
