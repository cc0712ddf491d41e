"""What the console does when the layers below it report: failed bindings, roles, the app's pages."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_migrate
from django.dispatch import receiver

from portals.models import Portal
from portals.services.setup import SETUP_FAILED
from portals.signals import frame_page_context, portal_setup_recorded

from .frames import frame_context
from .roles import roles_ensure
from .rollups import portal_binding_record


@receiver(portal_setup_recorded, sender=Portal, dispatch_uid="console.setup_recorded")
def setup_recorded(sender: type[Portal], portal_id: int, state: str, **kwargs: Any) -> None:
    failed = state == SETUP_FAILED
    portal_binding_record(portal_id=portal_id, error="binding the app's events failed" if failed else "")


@receiver(frame_page_context, dispatch_uid="console.frame_page_context")
def frame_page(sender: Any, portal: Portal, session: Any, **kwargs: Any) -> dict[str, Any]:
    return frame_context(portal=portal, is_admin=session.is_admin)


@receiver(post_migrate, dispatch_uid="console.roles")
def roles(sender: Any, **kwargs: Any) -> None:
    if getattr(sender, "name", "") == "console":
        roles_ensure()
