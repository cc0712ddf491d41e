"""API keys in the Django admin (the console): list, make (the key is shown once), revoke, rotate."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from .errors import ApiError
from .models import ApiKey
from .services.keys import SCOPES, apikey_create, apikey_revoke, apikey_rotate


class ApiKeyForm(forms.ModelForm):
    scope_choices = forms.MultipleChoiceField(
        choices=[(s, s) for s in SCOPES],
        initial=list(SCOPES),
        widget=forms.CheckboxSelectMultiple,
        label="Scopes",
    )
    expires_days = forms.FloatField(required=False, min_value=1, max_value=3650, help_text="empty: never")
    allow_ips_text = forms.CharField(
        required=False, label="Allowed addresses", help_text="CIDRs, comma-separated"
    )

    class Meta:
        model = ApiKey
        fields = ("name", "portals")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "prefix",
        "scope_list",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "last_used_ip",
    )
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "portals__member_id", "portals__domain")
    readonly_fields = (
        "prefix",
        "scopes",
        "allow_ips",
        "expires_at",
        "revoked_at",
        "revoked_reason",
        "last_used_at",
        "last_used_ip",
        "created_at",
        "created_by",
        "replaced_by",
    )
    actions = ("revoke", "rotate")
    filter_horizontal = ("portals",)

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("name", "portals", "scope_choices", "expires_days", "allow_ips_text")
        return ("name", "portals", *self.readonly_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else ("name", "portals", *self.readonly_fields)

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            return  # keys are not edited: rotate or revoke them
        try:
            key, raw = apikey_create(
                name=form.cleaned_data["name"],
                portals=list(form.cleaned_data["portals"]),
                scopes=form.cleaned_data["scope_choices"],
                expires_days=form.cleaned_data.get("expires_days"),
                allow_ips=(form.cleaned_data.get("allow_ips_text") or "").split(","),
                created_by=f"admin:{request.user.get_username()}",
            )
        except ApiError as e:
            self.message_user(request, e.message, messages.ERROR)
            return
        obj.pk = key.pk
        # Shown on the answer page itself, never through the messages framework, which would keep
        # it in a cookie or the session.
        request._api_keys_made = [(key, raw)]  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: Any = None) -> HttpResponse:
        made = getattr(request, "_api_keys_made", None)
        if not made:
            return super().response_add(request, obj, post_url_continue)
        return self._shown_once(request, made)

    def _shown_once(self, request: HttpRequest, made: list[tuple[ApiKey, str]]) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "made": made,
            "title": "API key made",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "api/admin_key_made.html", context)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        if change:
            super().save_related(request, form, formsets, change)
        # a new key's portals were set by apikey_create

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = sum(
            apikey_revoke(key=key, reason=f"revoked in the admin by {request.user.get_username()}")
            for key in queryset
        )
        self.message_user(request, f"{count} key(s) revoked.")

    @admin.action(description="Rotate the selected keys (the old ones expire after the overlap)")
    def rotate(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> HttpResponse | None:
        made = []
        for key in queryset:
            try:
                made.append(apikey_rotate(key=key, created_by=f"admin:{request.user.get_username()}"))
            except ApiError as e:
                self.message_user(request, f"{key.name}: {e.message}", messages.ERROR)
        return self._shown_once(request, made) if made else None
