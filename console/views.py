"""The console's pages outside the admin: the re-authorisation link a portal's administrator
opens, and the settings form posted from the app's page inside the portal."""

from __future__ import annotations

import logging

from django.core import signing
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from portals.bitrix.exceptions import Bitrix24ConfigError
from portals.models import Portal
from portals.services.frames import frame_session_from_signed
from portals.services.reauth import portal_reauth_start
from portals.views.framing import framed_by

from .actions import reauth_link_portal
from .forms import PreferencesForm
from .models import PortalPreferences

logger = logging.getLogger(__name__)


def _plain(message: str, status: int) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


@require_GET
def reauth(request: HttpRequest, token: str) -> HttpResponse:
    """Start the code flow for the portal the link names (its own state is made now, for 600 s)."""
    try:
        portal = reauth_link_portal(token)
    except signing.SignatureExpired:
        return _plain(_("This re-authorisation link has expired: ask for a new one."), 410)
    except (signing.BadSignature, KeyError, ValueError, TypeError):
        return _plain(_("This is not a re-authorisation link."), 404)
    except Portal.DoesNotExist:
        return _plain(
            _("The app was reinstalled or removed since this link was made: ask for a new one."), 410
        )
    try:
        return HttpResponseRedirect(portal_reauth_start(portal=portal))
    except Bitrix24ConfigError:
        logger.warning("console.reauth_misconfigured", extra={"member_id": portal.member_id})
        return _plain(_("This portal's OAuth server is not allowed."), 409)


@csrf_exempt  # posted from the portal's cross-site iframe: authenticated by the signed frame token
@xframe_options_exempt
@require_POST
def app_settings(request: HttpRequest) -> HttpResponse:
    """Save the portal's settings: only for a frame signed as an administrator's (user.admin at render)."""
    try:
        frame = frame_session_from_signed(request.POST.get("frame", ""))
    except signing.BadSignature:
        return _plain(_("The page has expired: open the app again."), 403)
    portal = Portal.objects.filter(pk=frame.portal_id).exclude(state=Portal.State.UNINSTALLED).first()
    if portal is None:
        return _plain(_("The app is not installed on this portal."), 403)
    if not frame.is_admin:
        return framed_by(
            _plain(_("Only an administrator of the portal may change the app's settings."), 403), portal
        )
    form = PreferencesForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(
            f"{name}: {' '.join(str(m) for m in messages)}" for name, messages in form.errors.items()
        )
        return framed_by(
            _plain(_("The settings were not saved: %(errors)s") % {"errors": errors}, 400), portal
        )
    with transaction.atomic():
        preferences, _created = PortalPreferences.objects.select_for_update().get_or_create(portal=portal)
        preferences.language = form.cleaned_data["language"]
        preferences.deal_fields = list(form.cleaned_data["deal_fields"])
        preferences.updated_by = frame.user_id
        preferences.save()
    logger.info("console.app_settings_saved", extra={"member_id": portal.member_id, "user_id": frame.user_id})
    language = preferences.language or translation.get_language()
    with translation.override(language):
        response = render(
            request, "portals/app_settings_saved.html", {"portal": portal, "preferences": preferences}
        )
    return framed_by(response, portal)
