"""The sandbox portal's lifecycle side: what the portal does *to* the app.

Installing it in an iframe (frame POST, BX24 shim, installFinish), ONAPPINSTALL, event.bind and
delivery of CRM events, offline events, placements, update / payment / rename / uninstall — through
a portal page, the control API (/_sandbox/lifecycle/...) and a CLI (`python -m sandbox.lifecycle`).

Importing this package registers it with the core through `sandbox.extensions` (REST methods, the
data-change subscriber, routes, startup and reset hooks); nothing else in the core imports it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sandbox import extensions, hooks
from sandbox.lifecycle import core, rest, service, web

if TYPE_CHECKING:
    from sandbox.state import Sandbox

__all__ = ["rest", "service"]

_subscriber: hooks.Subscriber | None = None


def _start(sb: Sandbox) -> None:
    """Subscribe to data changes for this sandbox; changes reported from another thread are handed to
    the loop, where the delivery workers live."""
    global _subscriber
    loop = asyncio.get_running_loop()

    def on_change(change: hooks.DataChange) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            service.data_changed(sb, change)
        else:
            loop.call_soon_threadsafe(service.data_changed, sb, change)

    if _subscriber is not None:
        hooks.unsubscribe(_subscriber)
    _subscriber = on_change
    hooks.subscribe(on_change)
    core.runtime(sb)


def _reset(sb: Sandbox) -> None:
    core.runtime_reset(sb)


extensions.portal_routes.extend(web.PORTAL_ROUTES)
extensions.control_routes.extend(web.CONTROL_ROUTES)
extensions.on_startup.append(_start)
extensions.on_reset.append(_reset)
