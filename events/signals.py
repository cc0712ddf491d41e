"""What the events app does when a portal changes: its token cache, and binding after an install."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from events.services.tokens import portal_tokens
from events.tasks import events_bind_app
from portals.models import Portal
from portals.signals import portal_installed


@receiver(post_save, sender=Portal, dispatch_uid="events.portal_saved")
@receiver(post_delete, sender=Portal, dispatch_uid="events.portal_deleted")
def portal_changed(sender: type[Portal], instance: Portal, **kwargs: Any) -> None:
    portal_tokens.invalidate(instance.member_id)


@receiver(portal_installed, sender=Portal, dispatch_uid="events.portal_installed")
def portal_installed_bind(sender: type[Portal], portal_id: int, **kwargs: Any) -> None:
    """A verified install committed: bind the app's events (a task, so it never fails the install)."""
    events_bind_app.delay(portal_id)
