"""Seams for code that extends the sandbox without editing it (the lifecycle package first).

* REST methods: ``sandbox.registry.method`` (a decorator; handlers get a ``Call``).
* Data changes: ``sandbox.hooks.subscribe`` (called after every CRM add / update / delete).
* Routes: append Starlette routes to ``portal_routes`` (served on every portal host, next to
  ``/rest/``; ``portal_of(request)`` gives the portal), ``control_routes`` (under ``/_sandbox/`` on
  the control host; paths are given without the prefix) or ``oauth_routes`` (the OAuth server host).
* Startup: ``on_startup`` callables run inside the event loop once the listeners are up (start
  background tasks there); ``on_reset`` callables run after ``POST /_sandbox/reset``.

Extension packages are imported by name from ``EXTENSION_MODULES`` when present, so the sandbox
core and its extensions can be committed independently.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from sandbox.state import Sandbox
    from sandbox.store import Portal

EXTENSION_MODULES = ["sandbox.lifecycle"]

portal_routes: list[BaseRoute] = []
control_routes: list[BaseRoute] = []
oauth_routes: list[BaseRoute] = []
on_startup: list[Callable[[Sandbox], Awaitable[Any] | Any]] = []
on_reset: list[Callable[[Sandbox], Any]] = []

_loaded = False


def load_extensions() -> list[str]:
    """Import every extension module that exists; return the names loaded.

    Only a missing extension module itself is tolerated: an import error inside it propagates.
    """
    global _loaded
    loaded = []
    for name in EXTENSION_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        loaded.append(name)
    _loaded = True
    return loaded


def sandbox_of(request: Request) -> Sandbox:
    """The running ``Sandbox`` (the world: config, clock, portals, tokens, counters)."""
    return request.app.state.sandbox  # type: ignore[no-any-return]


def portal_of(request: Request) -> Portal:
    """The portal whose host this request came to (portal routes only)."""
    return request.scope["sandbox.portal"]  # type: ignore[no-any-return]
