"""Stored events in the admin: find failed ones, read their error and payload, replay them."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from events.models import Event
from events.services.dispatch import event_payload_json, events_replay


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("id", "event", "portal", "object_key", "status", "attempts", "ts", "received_at", "error")
    list_filter = ("status", "source", "event")
    search_fields = ("portal__member_id", "portal__domain", "object_key", "event")
    date_hierarchy = "received_at"
    list_select_related = ("portal",)
    actions = ("replay",)
    readonly_fields = (
        "portal",
        "event",
        "object_key",
        "ts",
        "source",
        "idempotency_key",
        "shard",
        "status",
        "attempts",
        "available_at",
        "last_error",
        "received_at",
        "processed_at",
        "payload_pretty",
    )
    exclude = ("payload",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # events come from Bitrix24 only

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False  # read-only; state changes go through the replay action

    def has_replay_permission(self, request: HttpRequest) -> bool:
        # Replaying changes state: it needs the model's change permission, though the form is read-only.
        return request.user.has_perm("events.change_event")

    @admin.display(description="last error")
    def error(self, obj: Event) -> str:
        return obj.last_error[:80]

    @admin.display(description="payload (without tokens)")
    def payload_pretty(self, obj: Event) -> str:
        return format_html("<pre>{}</pre>", event_payload_json(obj))

    @admin.action(description="Replay: dispatch the selected events again", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        count = events_replay(event_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Re-queued {count} event(s).", messages.SUCCESS)
