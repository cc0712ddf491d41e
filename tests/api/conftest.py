"""Fixtures of the API's tests: a sandbox portal installed and mirrored, keys, a client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from api.services.keys import SCOPES, apikey_create, keys_cache_clear
from mirror.entities import ENTITIES
from mirror.services.sync import mirror_sync
from tests.mirror.conftest import _collect_thread_connections  # noqa: F401  (an autouse fixture)


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> None:
    keys_cache_clear()


@pytest.fixture
def mirrored(install_portal, redis_client) -> Callable[..., Any]:
    """Install sandbox portal ``index`` and mirror every entity; returns the Portal."""

    def make(index: int = 1) -> Any:
        portal = install_portal(index)
        for entity in ENTITIES:
            mirror_sync(portal_id=portal.pk, entity=entity)
        return portal

    return make


@pytest.fixture
def make_key() -> Callable[..., str]:
    def make(*portals: Any, scopes: Any = SCOPES, **options: Any) -> str:
        return apikey_create(name="test", portals=list(portals), scopes=scopes, **options)[1]

    return make


@pytest.fixture
def api() -> Client:
    return Client()
