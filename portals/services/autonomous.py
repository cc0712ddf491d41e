"""Writes that must stay committed whatever the caller's transaction does: a new token pair above all.

Bitrix24 refresh tokens are single-use. The event drain runs handlers inside one transaction per
batch (docs/events.md, "Dispatch guarantees"); had a refresh made by a handler been committed in
that transaction and the transaction then rolled back, the new pair would be lost and the portal's
authorisation burned for good. So the drain enters :func:`independent_commits` around its batch
transaction, and the writes that ``PortalCredentials`` makes go through :func:`commit_independently`,
which there runs them on a connection of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from django.db import connection, connections

from portals.conf import app_settings

T = TypeVar("T")

# Context-local, so it covers only the thread that runs the batch: a thread a handler starts has a
# connection of its own, outside the batch transaction, and writes directly.
_active: ContextVar[bool] = ContextVar("portals_independent_commits", default=False)


@contextmanager
def independent_commits() -> Iterator[None]:
    """Within this block, :func:`commit_independently` commits apart from this thread's transaction."""
    token = _active.set(True)
    try:
        yield
    finally:
        _active.reset(token)


def commit_independently(fn: Callable[[], T]) -> T:
    """Run ``fn`` so that what it commits stays committed even if the caller's transaction rolls back.

    Inside :func:`independent_commits`: in a short-lived thread, i.e. on a database connection of
    its own (closed afterwards), while the caller waits; returns fn's result or raises its
    exception. ``fn`` must not need a row lock the caller's transaction holds: on PostgreSQL such a
    wait ends with an error after ``BITRIX24_REFRESH_LOCK_WAIT`` seconds (longer than any refresh
    holds the portal's row) instead of never. Elsewhere: ``fn()``.
    """
    if not _active.get():
        return fn()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="portals-independent-commit") as pool:
        return pool.submit(_on_own_connection, fn).result()


def _on_own_connection(fn: Callable[[], T]) -> T:
    try:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # Session-level on a connection closed below, so it ends with this call.
                timeout_ms = int(app_settings.refresh_lock_wait * 1000)
                cursor.execute("SELECT set_config('lock_timeout', %s, false)", [f"{timeout_ms}ms"])
        return fn()
    finally:
        connections.close_all()
