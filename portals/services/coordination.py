"""What differs between single-process mode and the production shape, behind one small interface.

Single-process mode (no REDIS_URL, SQLite: ``bin/demo``'s default) runs its tasks inline on one
machine; the production shape (REDIS_URL, PostgreSQL) runs web processes and Celery workers that
coordinate through Redis and PostgreSQL. Code that needs a lock, a lease or a shared flag asks
:func:`coordination` for the process's backend instead of asking which shape it runs in:

* ``try_lock``: a lock held until released or until its holder dies, with no time limit (a shard
  drain may run as long as its handlers do). PostgreSQL advisory lock / an ``flock`` on a file
  beside the SQLite database.
* ``lease``: a lease held until released, or until its TTL passes without a renewal (a holder that
  dies or hangs stops renewing). Redis lock / an in-process lease.
* ``flags_set`` / ``flag_clear``: expiring flags set only if absent. Redis SET NX / none: in one
  process every flag set succeeds (work runs inline and the locks turn away a second runner).
* ``changes_publish`` / ``changes_since``: a feed of changed keys every process can follow, so a
  per-process cache learns of a change made elsewhere. A Redis sorted set / none: in one process
  the change was seen where it was made.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import redis
import redis.lock
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from bitrix_app.redis_client import redis_client


@dataclass(frozen=True)
class LockSpace:
    """A family of locks: ``name`` names its lock files, ``class_id`` keeps its advisory locks apart
    from other areas' ones (``pg_try_advisory_lock(class_id, key)``)."""

    name: str
    class_id: int


class Lease(Protocol):
    """A held lease (see :meth:`Coordination.lease`)."""

    def renew(self) -> bool:
        """Extend the lease to a full TTL from now. False: it had expired (another may hold it now)."""
        ...

    def release(self) -> None:
        """End the lease now; a no-op when it has expired already, or when Redis can't be reached
        (the lease then ends by its TTL)."""
        ...


@dataclass(frozen=True)
class ChangeFeed:
    """What changed since a cursor: the keys, the cursor to pass next time, and whether the feed
    still held everything since the old cursor (False: forget every key of the topic)."""

    keys: list[str]
    cursor: int
    complete: bool = True


class Coordination(Protocol):
    """The process's locks, leases and flags. Chosen once per configuration: :func:`coordination`."""

    # True where flags are shared by every process (a process may then remember one it saw set);
    # False in single-process mode, where every flag set succeeds and clearing does nothing.
    flags_shared: bool
    # Whether a batch of work may run in one database transaction: not on SQLite, whose rollback
    # journal lets no other connection commit while a transaction is open.
    batch_transactions: bool

    def try_lock(self, space: LockSpace, key: int) -> AbstractContextManager[bool]:
        """Try to take lock ``key`` of ``space`` without waiting; yields whether the caller has it.

        Held until the block exits or the holder's process (or database connection) dies.
        """
        ...

    def lease(self, name: str, *, ttl: float, wait: float = 0.0) -> Lease | None:
        """Take the lease ``name`` for ``ttl`` seconds, waiting up to ``wait`` seconds for it.

        None: another holder kept it all that time. A lease nobody renews ends after ``ttl``.
        Raises redis.RedisError when Redis is down (the production shape).
        """
        ...

    def flags_set(self, names: Sequence[str], *, ttl: float) -> list[bool]:
        """Set each flag that is absent, expiring after ``ttl`` seconds; whether each one was set.

        One round trip for all of them. Raises redis.RedisError when Redis is down.
        """
        ...

    def flag_clear(self, name: str) -> None:
        """Delete the flag ``name``. Raises redis.RedisError when Redis is down."""
        ...

    def changes_publish(self, topic: str, key: str) -> None:
        """Tell every process that ``key`` of ``topic`` changed.

        Raises redis.RedisError when Redis is down.
        """
        ...

    def changes_since(self, topic: str, cursor: int | None) -> ChangeFeed:
        """The keys of ``topic`` changed after ``cursor`` (None: none, just the current cursor).

        Raises redis.RedisError when Redis is down.
        """
        ...


class _Locks(Protocol):
    def try_lock(self, space: LockSpace, key: int) -> AbstractContextManager[bool]: ...


class AdvisoryLocks:
    """PostgreSQL session advisory locks: the server releases one when its holder's connection dies."""

    @contextlib.contextmanager
    def try_lock(self, space: LockSpace, key: int) -> Iterator[bool]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [space.class_id, key])
            acquired = bool(cursor.fetchone()[0])
        try:
            yield acquired
        finally:
            if acquired:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [space.class_id, key])


class FileLocks:
    """``flock`` on files beside the SQLite database: SQLite is one machine, and the OS releases a
    dead holder's lock. Each ``open()`` is a lock of its own, so threads exclude each other too."""

    def __init__(self, database: Path):
        self.database = database

    @contextlib.contextmanager
    def try_lock(self, space: LockSpace, key: int) -> Iterator[bool]:
        path = self.database.with_name(f"{self.database.name}.{space.name}-{key}.lock")
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class _RedisLease:
    def __init__(self, lock: redis.lock.Lock, ttl: float):
        self._lock = lock
        self._ttl = ttl

    def renew(self) -> bool:
        try:
            return bool(self._lock.extend(self._ttl, replace_ttl=True))
        except redis.exceptions.LockError:  # expired: the token is no longer ours
            return False

    def release(self) -> None:
        # Redis down (or restarted, the lease gone with it): the lease ends by its TTL anyway, and
        # the work it guarded has happened; raising here would report that work as failed.
        unreachable = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        with contextlib.suppress(redis.exceptions.LockError, *unreachable):
            self._lock.release()


class ProductionCoordination:
    """Redis: leases and flags shared by every web process, worker and command of the deployment."""

    flags_shared = True

    def __init__(self, client: redis.Redis, *, prefix: str, locks: _Locks, batch_transactions: bool):
        self.redis = client
        self.prefix = prefix
        self.try_lock = locks.try_lock
        self.batch_transactions = batch_transactions

    def key(self, name: str) -> str:
        """The Redis key of flag or lease ``name``."""
        return f"{self.prefix}{name}"

    def lease(self, name: str, *, ttl: float, wait: float = 0.0) -> Lease | None:
        # Not thread-local: the lease is an object its holder may hand to another thread to release.
        lock = self.redis.lock(
            self.key(name), timeout=ttl, blocking_timeout=wait, sleep=0.05, thread_local=False
        )
        if not lock.acquire():
            return None
        return _RedisLease(lock, ttl)

    def flags_set(self, names: Sequence[str], *, ttl: float) -> list[bool]:
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.set(self.key(name), "1", nx=True, px=int(ttl * 1000))
        return [bool(was_set) for was_set in pipe.execute()]

    def flag_clear(self, name: str) -> None:
        self.redis.delete(self.key(name))

    # The feed keeps the latest change of at most this many keys; a follower further behind than
    # that is told to forget everything (ChangeFeed.complete False).
    CHANGES_KEPT = 10_000
    # One round trip: the sequence number, the key's latest change, and the trim.
    _PUBLISH = """
    local seq = redis.call('INCR', KEYS[2])
    redis.call('ZADD', KEYS[1], seq, ARGV[1])
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
    return seq
    """

    def changes_publish(self, topic: str, key: str) -> None:
        feed = self.key(f"changes:{topic}")
        self.redis.eval(self._PUBLISH, 2, feed, feed + ":seq", key, self.CHANGES_KEPT)

    def changes_since(self, topic: str, cursor: int | None) -> ChangeFeed:
        feed = self.key(f"changes:{topic}")
        if cursor is None:
            return ChangeFeed([], int(self.redis.get(feed + ":seq") or 0))
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(feed + ":seq")
        pipe.zrangebyscore(feed, f"({cursor}", "+inf")
        pipe.zrange(feed, 0, 0, withscores=True)
        pipe.zcard(feed)
        seq, changed, oldest, size = pipe.execute()
        now = int(seq or 0)
        trimmed_past_cursor = size >= self.CHANGES_KEPT and bool(oldest) and oldest[0][1] > cursor + 1
        return ChangeFeed([key.decode() for key in changed], now, complete=not trimmed_past_cursor)


class _LocalLease:
    def __init__(self, owner: SingleProcessCoordination, name: str, token: str, ttl: float):
        self._owner = owner
        self._name = name
        self._token = token
        self._ttl = ttl

    def renew(self) -> bool:
        return self._owner._lease_renew(self._name, self._token, self._ttl)

    def release(self) -> None:
        self._owner._lease_release(self._name, self._token)


class SingleProcessCoordination:
    """No Redis, tasks inline: in-process leases, no shared flags."""

    flags_shared = False

    def __init__(self, *, locks: _Locks, batch_transactions: bool):
        self.try_lock = locks.try_lock
        self.batch_transactions = batch_transactions
        self._leases: dict[str, tuple[str, float]] = {}  # name → (holder's token, expires at)
        self._leases_changed = threading.Condition()

    def lease(self, name: str, *, ttl: float, wait: float = 0.0) -> Lease | None:
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        with self._leases_changed:
            while True:
                now = time.monotonic()
                held = self._leases.get(name)
                if held is None or held[1] <= now:
                    self._leases[name] = (token, now + ttl)
                    return _LocalLease(self, name, token, ttl)
                if deadline <= now:
                    return None
                # Woken by a release, or when the holder's lease runs out, or at the deadline.
                self._leases_changed.wait(min(deadline, held[1]) - now)

    def _lease_renew(self, name: str, token: str, ttl: float) -> bool:
        with self._leases_changed:
            now = time.monotonic()
            held = self._leases.get(name)
            if held is None or held[0] != token or held[1] <= now:
                return False
            self._leases[name] = (token, now + ttl)
            return True

    def _lease_release(self, name: str, token: str) -> None:
        with self._leases_changed:
            held = self._leases.get(name)
            if held is not None and held[0] == token:
                del self._leases[name]
                self._leases_changed.notify_all()

    def flags_set(self, names: Sequence[str], *, ttl: float) -> list[bool]:
        return [True] * len(names)

    def flag_clear(self, name: str) -> None:
        return None

    def changes_publish(self, topic: str, key: str) -> None:
        return None

    def changes_since(self, topic: str, cursor: int | None) -> ChangeFeed:
        return ChangeFeed([], 0)


@functools.cache
def _coordination(redis_url: str, prefix: str, vendor: str, database: str) -> Coordination:
    locks: _Locks
    if vendor == "postgresql":
        locks = AdvisoryLocks()
    elif vendor == "sqlite":
        locks = FileLocks(Path(database))
    else:
        raise ImproperlyConfigured(f"no shard locks for a {vendor} database: use PostgreSQL or SQLite")
    batch_transactions = vendor == "postgresql"
    client = redis_client(redis_url) if redis_url else None
    if client is None:
        return SingleProcessCoordination(locks=locks, batch_transactions=batch_transactions)
    return ProductionCoordination(client, prefix=prefix, locks=locks, batch_transactions=batch_transactions)


def coordination() -> Coordination:
    """The process's backend for the configured Redis and database, built once per configuration.

    The backend follows REDIS_URL; its locks follow the database (advisory locks on PostgreSQL,
    file locks on SQLite), so a demo on PostgreSQL without Redis keeps working. Raises
    ImproperlyConfigured for any other database.
    """
    database = str(connection.settings_dict["NAME"])
    return _coordination(settings.REDIS_URL, settings.REDIS_KEY_PREFIX, connection.vendor, database)
