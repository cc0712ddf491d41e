"""Receivers: an uninstall revokes the portal's keys; a saved key leaves this process's key cache."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from portals.models import Portal
from portals.signals import frame_page_context

from .models import ApiKey
from .portal_keys import keys_page_url
from .services.keys import apikeys_revoke_for_portal, keys_cache_clear


@receiver(post_save, sender=Portal, dispatch_uid="api.revoke_on_uninstall")
def revoke_on_uninstall(sender: Any, instance: Portal, **kwargs: Any) -> None:
    """The portal store saves the confirmed uninstall (portals.services.store): its keys go with it.
    A reinstall doesn't bring them back: the portal's administrator or an operator makes new ones."""
    if instance.state == Portal.State.UNINSTALLED:
        apikeys_revoke_for_portal(portal_id=instance.pk, reason="portal uninstalled")
    else:
        keys_cache_clear()


@receiver(post_save, sender=ApiKey, dispatch_uid="api.key_saved")
def key_saved(sender: Any, instance: ApiKey, **kwargs: Any) -> None:
    keys_cache_clear()


@receiver(frame_page_context, dispatch_uid="api.keys_link")
def keys_link(sender: Any, portal: Portal, session: Any, **kwargs: Any) -> dict[str, Any]:
    """The app page's link to the administrator's page of API keys (administrators only)."""
    return {"api_keys_url": keys_page_url(session.signed())} if session.is_admin else {}
