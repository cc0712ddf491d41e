"""Keeps the receiver's token cache honest when a Portal changes in this process."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from events.services.tokens import portal_tokens
from portals.models import Portal


@receiver(post_save, sender=Portal, dispatch_uid="events.portal_saved")
@receiver(post_delete, sender=Portal, dispatch_uid="events.portal_deleted")
def portal_changed(sender: type[Portal], instance: Portal, **kwargs: Any) -> None:
    portal_tokens.invalidate(instance.member_id)
