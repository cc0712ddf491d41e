"""Fixtures for the console: empty rollups, users in each role, a portal with events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from console.models import PortalHealth, PortalRollup, TotalRollup
from console.roles import OPERATORS, VIEWERS, roles_ensure
from console.rollups import rollups


@pytest.fixture
def fresh_rollups(transactional_db) -> Iterator[Callable[[], None]]:
    """Rollup tables emptied of what earlier tests left; yields ``flush`` (write this process's figures)."""
    rollups.flush()
    for model in (PortalRollup, TotalRollup, PortalHealth):
        model.objects.all().delete()
    yield rollups.flush
    rollups.flush()


@pytest.fixture
def console_user(transactional_db) -> Callable[[str], User]:
    """``console_user("viewer" | "operator" | "superuser")``: a staff user of that role, logged in by name."""

    def make(role: str) -> User:
        roles_ensure()
        if role == "superuser":
            return User.objects.create_superuser(role, f"{role}@example.test", "pw-console-1")
        user = User.objects.create_user(role, f"{role}@example.test", "pw-console-1", is_staff=True)
        user.groups.add(Group.objects.get(name=VIEWERS if role == "viewer" else OPERATORS))
        return user

    return make


@pytest.fixture
def logged_in(client, console_user) -> Callable[[str], Any]:
    def login(role: str) -> Any:
        client.force_login(console_user(role))
        return client

    return login
