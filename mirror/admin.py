"""The mirror in the Django admin: read-only, for looking (the mirror is written by syncs only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Company, Contact, Currency, Deal, Lead, Status, SyncState, User


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SyncState)
class SyncStateAdmin(ReadOnly):
    list_display = (
        "portal",
        "entity",
        "state",
        "rows",
        "started_at",
        "completed_at",
        "reconciled_at",
        "error",
    )
    list_filter = ("state", "entity")
    search_fields = ("portal__member_id", "portal__domain")
    exclude = ("checkpoint",)


class RecordAdmin(ReadOnly):
    list_filter = ("deleted_at",)
    search_fields = ("portal__member_id", "=bitrix_id")
    list_select_related = ("portal",)
    show_full_result_count = False  # COUNT(*) over millions of rows on every page view


@admin.register(Deal)
class DealAdmin(RecordAdmin):
    list_display = (
        "portal",
        "bitrix_id",
        "title",
        "stage_id",
        "opportunity",
        "currency_id",
        "date_modify",
        "deleted_at",
    )


@admin.register(Lead)
class LeadAdmin(RecordAdmin):
    list_display = ("portal", "bitrix_id", "title", "status_id", "date_modify", "deleted_at")


@admin.register(Contact)
class ContactAdmin(RecordAdmin):
    list_display = ("portal", "bitrix_id", "name", "last_name", "date_modify", "deleted_at")


@admin.register(Company)
class CompanyAdmin(RecordAdmin):
    list_display = ("portal", "bitrix_id", "title", "company_type", "date_modify", "deleted_at")


@admin.register(User)
class UserAdmin(RecordAdmin):
    list_display = ("portal", "bitrix_id", "name", "last_name", "active", "deleted_at")


@admin.register(Status)
class StatusAdmin(RecordAdmin):
    list_display = ("portal", "entity_id", "status_id", "name", "sort", "deleted_at")


@admin.register(Currency)
class CurrencyAdmin(RecordAdmin):
    list_display = ("portal", "code", "base", "amount", "sort", "deleted_at")
