"""Event handlers: plain functions registered by event name.

    from events.registry import on_event

    @on_event("ONCRMDEALADD", "ONCRMDEALUPDATE")
    def sync_deal(*, portal, payload):
        ...

A handler receives the :class:`~portals.models.Portal` and the
:class:`~portals.bitrix.events.EventPayload` (without tokens) and runs in a Celery worker after the
event was stored. Raising marks the event for a retry with backoff; an exception whose ``retryable``
attribute is False (the Bitrix24 exception tree sets it) or a :class:`PermanentEventError` fails it
at once.

What it writes to the database commits together with the mark that its event is done, or not at
all: exactly once. What it does elsewhere (REST calls, mail, other services) may happen more than
once for one event (a retry, a worker killed before the commit): give such effects
``payload.idempotency_key()``, the same on every run of one event (docs/events.md, "Dispatch
guarantees"). A handler that changes the Portal row itself, or needs its effects committed before
it returns, registers with ``atomic=False`` and runs outside the batch transaction.

Handlers are discovered at start-up: every installed app's ``event_handlers`` module is imported,
plus the modules listed in ``BITRIX24_EVENT_HANDLER_MODULES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from django.utils.module_loading import autodiscover_modules

from portals.conf import app_settings

Handler = Callable[..., Any]

_handlers: dict[str, list[Handler]] = {}
# Handlers registered with atomic=False, by identity.
_outside_batch: set[object] = set()


class PermanentEventError(Exception):
    """Raised by a handler when retrying cannot help: the event fails at once (and stays replayable)."""

    retryable = False


def on_event(*names: str, atomic: bool = True) -> Callable[[Handler], Handler]:
    """Register the decorated function for each event name (case-insensitive).

    ``atomic=False``: events with this handler run outside the drain's batch transaction, each
    marked done on its own after its handlers return (for handlers that lock the Portal row or
    must not have their writes rolled back with a batch).
    """
    if not names:
        raise ValueError("on_event() needs at least one event name")

    def register(func: Handler) -> Handler:
        if atomic:
            _outside_batch.discard(_identity(func))
        else:
            _outside_batch.add(_identity(func))
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


def runs_in_batch(name: str) -> bool:
    """Whether events called ``name`` run inside the drain's batch transaction (no handler opted out)."""
    return not any(_identity(handler) in _outside_batch for handler in handlers_for(name))


def handles(name: str) -> bool:
    return bool(_handlers.get(name.upper()))


def handled_events() -> frozenset[str]:
    """Every event name some handler is registered for: what the app binds on each portal."""
    return frozenset(_handlers)


def autodiscover() -> None:
    """Import every app's ``event_handlers`` module and the configured extra modules."""
    autodiscover_modules("event_handlers")
    for module in app_settings.event_handler_modules:
        importlib.import_module(module)
