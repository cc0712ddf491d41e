"""Event handlers: plain functions registered by event name.

    from events.registry import on_event

    @on_event("ONCRMDEALADD", "ONCRMDEALUPDATE")
    def sync_deal(*, portal, payload):
        ...

A handler receives the :class:`~portals.models.Portal` and the
:class:`~portals.bitrix.events.EventPayload` (without tokens), runs in a Celery worker after the
event was stored, and may run more than once for one event (at-least-once): make it idempotent.
Raising marks the event for a retry with backoff; an exception whose ``retryable`` attribute is
False (the Bitrix24 exception tree sets it) or a :class:`PermanentEventError` fails it at once.

Handlers are discovered at start-up: every installed app's ``event_handlers`` module is imported,
plus the modules listed in ``BITRIX24_EVENT_HANDLER_MODULES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils.module_loading import autodiscover_modules

Handler = Callable[..., Any]

_handlers: dict[str, list[Handler]] = {}


class PermanentEventError(Exception):
    """Raised by a handler when retrying cannot help: the event fails at once (and stays replayable)."""

    retryable = False


def on_event(*names: str) -> Callable[[Handler], Handler]:
    """Register the decorated function for each event name (case-insensitive)."""
    if not names:
        raise ValueError("on_event() needs at least one event name")

    def register(func: Handler) -> Handler:
        for name in names:
            bucket = _handlers.setdefault(name.upper(), [])
            # Re-importing a module (autoreload, tests) must not register a handler twice.
            bucket[:] = [h for h in bucket if _identity(h) != _identity(func)]
            bucket.append(func)
        return func

    return register


def _identity(func: Handler) -> object:
    # A function by its dotted name (a re-imported module yields a new object); any other callable
    # by itself.
    qualname = getattr(func, "__qualname__", None)
    return f"{func.__module__}.{qualname}" if qualname else func


def unregister(name: str, func: Handler) -> None:
    """Remove one handler (tests register temporary ones)."""
    bucket = _handlers.get(name.upper(), [])
    if func in bucket:
        bucket.remove(func)
    if not bucket:
        _handlers.pop(name.upper(), None)


def handlers_for(name: str) -> tuple[Handler, ...]:
    return tuple(_handlers.get(name.upper(), ()))


def handles(name: str) -> bool:
    return bool(_handlers.get(name.upper()))


def registered_events() -> list[str]:
    return sorted(_handlers)


def autodiscover() -> None:
    """Import every app's ``event_handlers`` module and the configured extra modules."""
    autodiscover_modules("event_handlers")
    for module in settings.BITRIX24_EVENT_HANDLER_MODULES:
        importlib.import_module(module)
