"""The settings form a portal's administrators fill in on the app's page."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import PortalPreferences

# Deal fields the deal tab may show (crm.deal.get names), in the order offered.
DEAL_FIELDS = {
    "TITLE": _("Title"),
    "STAGE_ID": _("Stage"),
    "OPPORTUNITY": _("Amount"),
    "CURRENCY_ID": _("Currency"),
    "ASSIGNED_BY_ID": _("Responsible (user id)"),
    "CLOSEDATE": _("Closing date"),
    "DATE_MODIFY": _("Modified"),
    "COMMENTS": _("Comments"),
}
DEFAULT_DEAL_FIELDS = ["TITLE", "STAGE_ID", "OPPORTUNITY", "CURRENCY_ID"]


class PreferencesForm(forms.Form):
    language = forms.ChoiceField(
        label=_("Language of the app's pages"), choices=PortalPreferences.Language.choices, required=False
    )
    deal_fields = forms.MultipleChoiceField(
        label=_("Deal fields on the deal tab"),
        choices=list(DEAL_FIELDS.items()),
        widget=forms.CheckboxSelectMultiple,
        required=True,
    )

    @classmethod
    def for_portal(cls, preferences: PortalPreferences | None) -> PreferencesForm:
        return cls(
            initial={
                "language": preferences.language if preferences else "",
                "deal_fields": (preferences.deal_fields if preferences else None) or DEFAULT_DEAL_FIELDS,
            }
        )
