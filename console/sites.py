"""The admin site of the operator console: its index is the dashboard."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .selectors import PERIODS, dashboard


class ConsoleAdminSite(admin.AdminSite):
    site_header = gettext_lazy("Bitrix24 app: operator console")
    site_title = gettext_lazy("Operator console")
    index_title = gettext_lazy("Dashboard")
    index_template = "console/dashboard.html"
    # The portal list needs the width (it fits 1,400 px without sideways scrolling); the index and
    # the breadcrumbs lead everywhere the sidebar did.
    enable_nav_sidebar = False

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:  # type: ignore[override]
        period = request.GET.get("period", "hour")
        if period not in PERIODS:
            message = _("period must be one of: %(periods)s") % {"periods": ", ".join(PERIODS)}
            return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
        context = {**dashboard(period=PERIODS[period], now=timezone.now()), **(extra_context or {})}
        return super().index(request, context)
