"""The portal list and the portal page of the operator console."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from events.models import Event
from events.services.binding import app_events_desired
from events.services.replay import events_replay
from portals.bitrix.exceptions import Bitrix24Error
from portals.models import Portal
from portals.services.client import client_for_portal

from .actions import ACTIONS, portal_act, reauth_link
from .models import PortalHealth, PortalRollup, Resolution
from .selectors import ATTENTION, PERIODS, PortalFigures, attention_priority, portal_figures, portal_page
from .selectors import portals_needing_action as needing

OPERATE = "console.operate_portal"
SECRET_FIELDS = ("access_token", "refresh_token", "application_token", "client_secret")
ERROR_PREVIEW = 60


class AttentionFilter(admin.SimpleListFilter):
    title = _("needs action")
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [("any", _("any of these")), *ATTENTION.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Portal]) -> QuerySet[Portal]:
        value = self.value()
        if not value:
            return queryset
        if value == "any":
            return queryset.filter(pk__in=needing().values("pk"))
        if value not in ATTENTION:
            return queryset.none()
        return queryset.filter(pk__in=needing(value).values("pk"))


class FailedEventsFilter(admin.SimpleListFilter):
    title = _("events (24 h)")
    parameter_name = "events"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return [("failed", _("some failed")), ("pending", _("some pending"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Portal]) -> QuerySet[Portal]:
        if self.value() == "failed":
            since = timezone.now() - timedelta(hours=24)
            failed = PortalRollup.objects.filter(
                resolution=Resolution.HOUR, start__gte=since, events_failed__gt=0
            )
            return queryset.filter(pk__in=failed.values("portal_id"))
        if self.value() == "pending":
            return queryset.filter(pk__in=Event.objects.pending().values("portal_id"))
        return queryset


class FiguresChangeList(ChangeList):
    """Those needing action first (unless a column is chosen); the page's portals get their figures
    in a few queries for the whole page, not per row."""

    def get_ordering(self, request: HttpRequest, queryset: QuerySet[Portal]) -> list[Any]:
        ordering = list(super().get_ordering(request, queryset))
        return ordering if ORDER_VAR in self.params else ["priority", *ordering]

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Portal]:
        # The list shows no secret: leave the encrypted columns unread (and undecrypted).
        return super().get_queryset(request, exclude_parameters).defer(*SECRET_FIELDS)

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        figures = portal_figures(list(self.result_list), now=timezone.now())
        for portal in self.result_list:
            portal.figures = figures[portal.pk]


def _ago(moment: Any) -> str:
    if not moment:
        return "—"
    seconds = (timezone.now() - moment).total_seconds()
    if seconds < 0:
        return gettext("in %(time)s") % {"time": _span(-seconds)}
    return gettext("%(time)s ago") % {"time": _span(seconds)}


def _span(seconds: float) -> str:
    if seconds < 90:
        return gettext("%(n)d s") % {"n": seconds}
    if seconds < 5400:
        return gettext("%(n)d min") % {"n": seconds / 60}
    if seconds < 172800:
        return gettext("%(n)d h") % {"n": seconds / 3600}
    return gettext("%(n)d d") % {"n": seconds / 86400}


@admin.register(Portal)
class PortalAdmin(admin.ModelAdmin):
    list_display = (
        "portal_column",
        "state_badge",
        "app_column",
        "tokens_column",
        "use_column",
        "error_column",
        "events_column",
        "limits_column",
    )
    list_filter = (AttentionFilter, "state", FailedEventsFilter, "plan", "app_status", "offline_events")
    search_fields = ("domain", "member_id")
    list_per_page = 50
    show_full_result_count = False
    actions = ("refresh_now", "recheck_payment")
    change_form_template = "console/portal.html"

    class Media:
        css = {"all": ("console/console.css",)}

    # Secrets are never shown; the page is read-only (lifecycle fields change through services only).
    exclude = SECRET_FIELDS
    readonly_fields = (
        "member_id",
        "domain",
        "client_endpoint",
        "server_endpoint",
        "client_id",
        "user_id",
        "scope",
        "app_status",
        "license",
        "plan",
        "offline_events",
        "state",
        "state_reason",
        "state_changed_at",
        "expires_at",
        "refresh_token_issued_at",
        "last_refreshed_at",
        "last_used_at",
        "work_due_at",
        "installed_at",
        "uninstalled_at",
        "data_delete_after",
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # portals come only from verified installs

    def has_change_permission(self, request: HttpRequest, obj: Portal | None = None) -> bool:
        return False  # read-only: every change is an operator action through a service

    def has_delete_permission(self, request: HttpRequest, obj: Portal | None = None) -> bool:
        return False  # an uninstall with "delete app data" deletes a portal's rows

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(OPERATE)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Portal]:
        return super().get_queryset(request).annotate(priority=attention_priority())

    def get_ordering(self, request: HttpRequest) -> list[str]:
        # Also what other models' forms order a portal choice by, so no annotation here; the list
        # puts those needing action first (FiguresChangeList).
        return ["domain"]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return FiguresChangeList

    # -- the list's columns --------------------------------------------------------------------

    @admin.display(description=_("portal"), ordering="domain")
    def portal_column(self, obj: Portal) -> str:
        return format_html('{}<br><span class="quiet mono">{}</span>', obj.domain, obj.member_id)

    @admin.display(description=_("state"), ordering="priority")
    def state_badge(self, obj: Portal) -> str:
        figures: PortalFigures = getattr(obj, "figures", PortalFigures())
        label, kind = obj.get_state_display(), obj.state
        health = figures.health
        reason = obj.state_reason
        if obj.disabled_at is not None:
            label, kind = gettext("disabled"), "disabled"
            reason = gettext("by an operator, %(when)s") % {"when": _ago(obj.disabled_at)}
        elif obj.state == Portal.State.ACTIVE and health is not None:
            if health.binding_failed_at:
                label, kind, reason = gettext("binding failed"), "binding_failed", health.binding_error
            elif health.refresh_failed_at and (
                obj.last_refreshed_at is None or health.refresh_failed_at > obj.last_refreshed_at
            ):
                label, kind, reason = gettext("refresh failing"), "refresh_failing", health.refresh_error
        return format_html(
            '<span class="badge badge-{}">{}</span><br><span class="quiet">{}</span>',
            kind,
            label,
            reason[:80],
        )

    @admin.display(description=_("plan / app"), ordering="plan")
    def app_column(self, obj: Portal) -> str:
        return format_html("{}<br>{}", obj.plan, obj.get_app_status_display() or "—")

    @admin.display(description=_("token expiry / refreshed"), ordering="expires_at")
    def tokens_column(self, obj: Portal) -> str:
        return format_html("{}<br>{}", _ago(obj.expires_at), _ago(obj.last_refreshed_at))

    @admin.display(description=_("last use"), ordering="last_used_at")
    def use_column(self, obj: Portal) -> str:
        return _ago(obj.last_used_at)

    @admin.display(description=_("last error"))
    def error_column(self, obj: Portal) -> str:
        health: PortalHealth | None = getattr(obj, "figures", PortalFigures()).health
        if health is None or not health.last_error:
            return "—"
        text = health.last_error
        short = text if len(text) <= ERROR_PREVIEW else text[: ERROR_PREVIEW - 1] + "…"
        return format_html(
            '<span title="{}">{}</span><br><span class="quiet">{}</span>',
            text,
            short,
            _ago(health.last_error_at),
        )

    @admin.display(description=_("events 24 h: failed / pending"))
    def events_column(self, obj: Portal) -> str:
        figures: PortalFigures = getattr(obj, "figures", PortalFigures())
        return format_html(
            '<span class="{}">{}</span> / {}',
            "bad" if figures.failed_24h else "",
            figures.failed_24h,
            figures.pending,
        )

    @admin.display(description=_("bucket / operating s"))
    def limits_column(self, obj: Portal) -> str:
        figures: PortalFigures = getattr(obj, "figures", PortalFigures())
        level = (
            "—"
            if figures.bucket_level is None
            else f"{figures.bucket_level:.0f}/{figures.bucket_capacity:.0f}"
        )
        operating = ", ".join(f"{method} {seconds:.1f}" for method, seconds in figures.operating) or "—"
        return format_html('{}<br><span class="quiet">{}</span>', level, operating)

    # -- bulk actions from the list ------------------------------------------------------------

    def _act_all(self, request: HttpRequest, queryset: QuerySet[Portal], action: str) -> None:
        for portal in queryset:
            self._act(request, portal, action)

    @admin.action(description=_("Refresh tokens now (single-flight)"), permissions=["operate"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[Portal]) -> None:
        self._act_all(request, queryset, "refresh")

    @admin.action(description=_("Re-check payment (app.info)"), permissions=["operate"])
    def recheck_payment(self, request: HttpRequest, queryset: QuerySet[Portal]) -> None:
        self._act_all(request, queryset, "payment")

    # -- the portal page -----------------------------------------------------------------------

    def _act(self, request: HttpRequest, portal: Portal, action: str) -> None:
        outcome = portal_act(portal=portal, action=action)
        self.log_change(request, portal, f"{action}: {outcome.message}")
        level = messages.SUCCESS if outcome.ok else messages.WARNING
        self.message_user(request, f"{portal.domain}: {ACTIONS[action].label}: {outcome.message}", level)

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/act/<slug:action>/", wrap(self.act_view), name="console_portal_act"),
            path("<int:pk>/replay/<int:event_id>/", wrap(self.replay_view), name="console_portal_replay"),
            path("<int:pk>/reauth-link/", wrap(self.reauth_link_view), name="console_portal_reauth_link"),
            path("<int:pk>/bindings/", wrap(self.bindings_view), name="console_portal_bindings"),
            *super().get_urls(),
        ]

    def _portal_for_action(self, request: HttpRequest, pk: int) -> Portal:
        if not self.has_operate_permission(request):
            raise PermissionDenied(gettext("Acting on portals needs the operator role."))
        return get_object_or_404(Portal, pk=pk)

    def _back(self, portal: Portal) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:portals_portal_change", args=[portal.pk]))

    def act_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        if action not in ACTIONS:
            return HttpResponseBadRequest(
                gettext("unknown action %(action)s; one of: %(known)s")
                % {"action": action, "known": ", ".join(ACTIONS)}
            )
        portal = self._portal_for_action(request, pk)
        self._act(request, portal, action)
        return self._back(portal)

    def replay_view(self, request: HttpRequest, pk: int, event_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        portal = self._portal_for_action(request, pk)
        event = get_object_or_404(Event, pk=event_id, portal=portal)
        count = events_replay(event_ids=[event.pk])
        self.log_change(request, portal, f"replay: event {event.pk} {event.event} re-queued ({count})")
        self.message_user(request, gettext("Event %(id)s re-queued.") % {"id": event.pk}, messages.SUCCESS)
        return self._back(portal)

    def reauth_link_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        portal = self._portal_for_action(request, pk)
        link = reauth_link(portal=portal, base_url=request.build_absolute_uri("/"))
        self.log_change(
            request, portal, "reauth_link: made a re-authorisation link for the portal's administrator"
        )
        self.message_user(
            request,
            format_html(
                '{} <a id="reauth-link" href="{}">{}</a>',
                gettext("Send this link to an administrator of the portal:"),
                link,
                link,
            ),
            messages.SUCCESS,
        )
        return self._back(portal)

    def bindings_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The portal's bindings, asked live (event.get, placement.get): loaded on demand by the page."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        portal = get_object_or_404(Portal, pk=pk)
        context: dict[str, Any] = {"desired": sorted(app_events_desired(portal=portal))}
        try:
            client = client_for_portal(member_id=portal.member_id)
            context["events"] = client.call("event.get", read=True) or []
            context["placements"] = client.call("placement.get", read=True) or []
        except Bitrix24Error as e:
            context["error"] = f"{type(e).__name__}: {e}"
        return TemplateResponse(request, "console/bindings.html", context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        period = request.GET.get("period", "hour")
        if period not in PERIODS:
            return HttpResponseBadRequest(
                gettext("period must be one of: %(periods)s") % {"periods": ", ".join(PERIODS)}
            )
        portal = Portal.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        context = dict(extra_context or {})
        if portal is not None:
            context |= portal_page(portal, period=PERIODS[period], now=timezone.now())
            context["console_actions"] = ACTIONS
            context["can_operate"] = self.has_operate_permission(request)
        return super().change_view(request, object_id, form_url, context)
