"""What the events app does when a portal changes: its token cache, and binding after an install."""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from events.services.tokens import TOKEN_FEED, portal_tokens
from events.tasks import events_bind_app
from portals.models import Portal
from portals.services.coordination import coordination
from portals.signals import portal_installed

logger = logging.getLogger("events")


@receiver(post_save, sender=Portal, dispatch_uid="events.portal_saved")
@receiver(post_delete, sender=Portal, dispatch_uid="events.portal_deleted")
def portal_changed(sender: type[Portal], instance: Portal, **kwargs: Any) -> None:
    portal_tokens.invalidate(instance.member_id)
    member_id = instance.member_id
    # Other processes re-read the row once it is committed: before, they would load the old one.
    transaction.on_commit(lambda: _publish(member_id))


def _publish(member_id: str) -> None:
    try:
        coordination().changes_publish(TOKEN_FEED, member_id)
    except redis.RedisError:
        # Redis is down: other processes' entries expire within BITRIX24_EVENT_TOKEN_CACHE_SECONDS.
        logger.warning("events.token_feed.unpublished", extra={"member_id": member_id})


@receiver(portal_installed, sender=Portal, dispatch_uid="events.portal_installed")
def portal_installed_bind(sender: type[Portal], portal_id: int, **kwargs: Any) -> None:
    """A verified install committed: bind the app's events (a task, so it never fails the install)."""
    events_bind_app.delay(portal_id)
