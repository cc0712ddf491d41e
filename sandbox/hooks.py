"""Data-change hook: who hears about every CRM add / update / delete.

Subscribers are plain callables registered at import time (the lifecycle package registers its
event delivery here). They are called synchronously right after the change is stored, inside the
request that made it, so they must be quick: anything slow (an HTTP delivery) has to be scheduled
as a task by the subscriber itself. A failing subscriber is logged and does not fail the REST call,
as Bitrix24 never fails a write because an event handler is broken.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.store import Portal

log = logging.getLogger("sandbox.hooks")


@dataclass(frozen=True)
class DataChange:
    """One stored change.

    ``event`` is the Bitrix24 event code (``ONCRMDEALADD``, ``ONCRMDEALUPDATE``,
    ``ONCRMDEALDELETE``, ...); ``user_id`` is the acting user (None for changes made by the
    control API, i.e. "no user", as for robots); ``client_id`` is the app whose token made the
    change (None for webhooks and the control API) — Bitrix24 does not echo an app's own change
    back to an offline ``auth_connector``, which needs it.
    """

    portal: Portal
    event: str
    object_id: int
    user_id: int | None = None
    client_id: str | None = None


Subscriber = Callable[[DataChange], None]

_subscribers: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> Subscriber:
    """Register ``subscriber`` (usable as a decorator); registering twice is a no-op."""
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)
    return subscriber


def unsubscribe(subscriber: Subscriber) -> None:
    if subscriber in _subscribers:
        _subscribers.remove(subscriber)


def notify(change: DataChange) -> None:
    """Call every subscriber with ``change``; exceptions are logged, never raised."""
    for subscriber in list(_subscribers):
        try:
            subscriber(change)
        except Exception:
            log.exception("sandbox.hooks.subscriber_failed", extra={"event": change.event})
