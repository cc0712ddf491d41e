"""Shard locks: a shard is drained by one worker at a time.

The lock comes from the process's coordination backend (portals.services.coordination): a
PostgreSQL advisory lock, released by the server if the worker dies, or on SQLite (one machine) a
file lock, released by the OS.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from portals.services.coordination import LockSpace, coordination

# The class id keeps our advisory locks apart from other areas' ones.
SHARD_LOCKS = LockSpace("events-shard", 0x0E7E)


@contextmanager
def shard_lock(shard: int) -> Iterator[bool]:
    """Try to take the right to drain ``shard``; yields whether this caller has it."""
    with coordination().try_lock(SHARD_LOCKS, shard) as acquired:
        yield acquired


def shard_lock_free(shard: int) -> bool:
    """Whether nobody drains ``shard`` now (the lock is taken and released at once)."""
    with shard_lock(shard) as acquired:
        return acquired
