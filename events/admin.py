"""Stored events in the admin: find failed ones, read their error and payload, replay them."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from events.models import Event
from events.registry import handled_events
from events.services.replay import events_replay
from portals.models import Portal

ERROR_PREVIEW = 80  # characters of the last error in the list (the whole of it on the event's page)


# The receiver stores payloads without their tokens; the page drops them again by name, so a payload
# stored by any other path can't show one either.
SECRET_KEYS = frozenset(
    {"access_token", "refresh_token", "application_token", "client_secret", "auth_id", "refresh_id"}
)


def without_secrets(value: Any) -> Any:
    """``value`` with every key named like a secret (at any depth) dropped."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items() if str(k).lower() not in SECRET_KEYS}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def event_payload_json(row: Event) -> str:
    """The stored payload as pretty JSON (its keys sorted, non-ASCII as is), without tokens."""
    return json.dumps(without_secrets(row.payload), indent=2, ensure_ascii=False, sort_keys=True)


class EventNameFilter(admin.SimpleListFilter):
    """By event name, offering the events the app handles: listing the names stored would read the
    whole table."""

    title = _("event")
    parameter_name = "event"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(handled_events())]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        return queryset.filter(event=self.value().upper()) if self.value() else queryset


class ReceivedFilter(admin.SimpleListFilter):
    """Received within the last hour, day or week."""

    title = _("received")
    parameter_name = "received"
    SPANS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [("hour", _("last hour")), ("day", _("last 24 hours")), ("week", _("last 7 days"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        span = self.SPANS.get(self.value() or "")
        return queryset.filter(received_at__gte=timezone.now() - span) if span else queryset


class PortalFilter(admin.SimpleListFilter):
    """Events of one portal (``?portal=<member_id>``), chosen by clicking a portal in the list.

    It lists only the chosen portal: thousands of portals would not fit the sidebar, nor would the
    query that finds which portals have events scale.
    """

    title = "portal"
    parameter_name = "portal"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        member_id = self.value()
        portal = Portal.objects.filter(member_id=member_id).first() if member_id else None
        return [(portal.member_id, portal.domain)] if portal else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        return queryset.filter(portal__member_id=self.value()) if self.value() else queryset


def preview(text: str, limit: int = ERROR_PREVIEW) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with "…" when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    # The cut falls inside a word: drop that word, unless it is longer than half the preview (a
    # URL, an id), which is cut where it must be.
    if text[limit - 1] != " " and space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "…"


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "event",
        "portal_link",
        "object_key",
        "status",
        "attempts",
        "ts",
        "received_at",
        "error",
    )
    list_filter = ("status", ReceivedFilter, EventNameFilter, "source", PortalFilter)
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
        "error_full",
        "received_at",
        "processed_at",
        "payload_pretty",
    )
    exclude = ("payload", "last_error")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # events come from Bitrix24 only

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False  # read-only; state changes go through the replay action

    def has_replay_permission(self, request: HttpRequest) -> bool:
        # Replaying changes state: it needs the model's change permission, though the form is read-only.
        return request.user.has_perm("events.change_event")

    @admin.display(description="portal", ordering="portal__domain")
    def portal_link(self, obj: Event) -> str:
        """The portal, linking to this list filtered to its events."""
        return format_html('<a href="?portal={}">{}</a>', obj.portal.member_id, obj.portal.domain)

    @admin.display(description="last error")
    def error(self, obj: Event) -> str:
        return preview(obj.last_error)

    @admin.display(description=_("payload (without tokens)"))
    def payload_pretty(self, obj: Event) -> str:
        return format_html("<pre>{}</pre>", event_payload_json(obj))

    @admin.display(description=_("last error"))
    def error_full(self, obj: Event) -> str:
        return format_html('<pre class="event-error">{}</pre>', obj.last_error) if obj.last_error else "—"

    @admin.action(description="Replay: dispatch the selected events again", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        per_portal = Counter(queryset.values_list("portal_id", flat=True))
        count = events_replay(event_ids=ids)
        # The operator record, on each portal's page: who replayed how many of its events.
        for portal in Portal.objects.filter(pk__in=per_portal):
            self.log_change(request, portal, f"replay: re-queued {per_portal[portal.pk]} event(s)")
        self.message_user(request, f"Re-queued {count} event(s).", messages.SUCCESS)
