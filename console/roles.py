"""The console's two roles, as Django groups: viewers see everything, operators also act.

Members must be staff (to reach the admin at all); a superuser has every permission anyway.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

VIEWERS = "Console viewers"
OPERATORS = "Console operators"

VIEW = (
    "portals.view_portal",
    "portals.view_localapplication",
    "events.view_event",
    "console.view_portalhealth",
    "admin.view_logentry",
)
# Replaying events needs events.change_event (events/admin.py); the portal page's actions need
# console.operate_portal.
OPERATE = (*VIEW, "console.operate_portal", "events.change_event")


def _permissions(names: tuple[str, ...]) -> list[Permission]:
    found = []
    for name in names:
        app_label, codename = name.split(".")
        found += list(Permission.objects.filter(content_type__app_label=app_label, codename=codename))
    return found


def roles_ensure() -> None:
    """Create or update both groups with exactly their permissions (idempotent; runs after migrate)."""
    for group_name, names in ((VIEWERS, VIEW), (OPERATORS, OPERATE)):
        group, _ = Group.objects.get_or_create(name=group_name)
        group.permissions.set(_permissions(names))
