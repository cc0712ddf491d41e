"""The sandbox's in-memory data: portals, app installations, tokens, webhooks, users, CRM rows.

No Django ORM and no persistence: a restart (or ``POST /_sandbox/reset``) gives a fresh world.
Rows are plain dicts in the shape Bitrix24 returns them (string values, upper-case keys), so the
REST layer can hand them out without translation.

Large seeded tables are *lazy*: ``EntityTable`` keeps ``generated`` (ids 1..N produced on demand
by a deterministic generator), plus ``overrides`` (generated rows changed since), ``deleted`` and
``added`` rows. Ids are therefore always increasing, which is what lets ID-ordered pages with
``>ID`` filters be answered without touching the other 500,000 rows.
"""

from __future__ import annotations

import bisect
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]

PLANS: dict[str, dict[str, Any]] = {
    # Leaky bucket (drain per second, bucket size) as documented per plan; LICENSE values as app.info
    # reports them (LICENSE is "<lang>_<family>", e.g. "en_basic").
    "standard": {"drain": 2.0, "burst": 50, "license_family": "basic", "license_type": "basic"},
    "enterprise": {"drain": 5.0, "burst": 250, "license_family": "ent", "license_type": "ent250"},
}


@dataclass
class AppInstall:
    """One app's installation on one portal.

    ``installed`` is the portal's INSTALLED flag (False between the install and ``installFinish``
    for apps with an installer); ``present`` is False once uninstalled (the row is kept so a
    reinstall can find the app's old options). ``status`` is the app status letter (F/D/T/P/L).
    """

    client_id: str
    client_secret: str = field(repr=False)
    status: str = "F"
    present: bool = True
    installed: bool = True
    payment_expired: bool = False
    days: int | None = None
    application_token: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    scope: list[str] = field(default_factory=list)
    version: int = 1
    code: str = "sandbox.app"
    app_id: int = 1
    installed_at: float = 0.0
    # Free-form per-installation data owned by extensions (bindings, placements, options...).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.client_id.startswith("local.")


@dataclass
class Token:
    """An OAuth token pair as the OAuth server remembers it."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    member_id: str
    client_id: str
    user_id: int
    scope: list[str]
    expires: float
    refresh_expires: float
    issued_at: float
    access_valid: bool = True
    refresh_used: bool = False


@dataclass
class Webhook:
    """An inbound webhook: ``/rest/<user_id>/<secret>/<method>`` with ``scope``."""

    user_id: int
    secret: str = field(repr=False)
    scope: list[str]
    expires: float | None = None


class EntityTable:
    """Rows of one entity type with integer ids, partly generated on demand.

    ``generator(id)`` builds the pristine row for an id in 1..generated; it must be deterministic
    so a row read twice is the same row.
    """

    def __init__(self, generator: Callable[[int], Row] | None = None, generated: int = 0) -> None:
        self.generator = generator
        self.generated = generated if generator else 0
        self.overrides: dict[int, Row] = {}
        self.deleted: set[int] = set()
        self.added: dict[int, Row] = {}
        self.added_ids: list[int] = []  # sorted, because ids only grow
        self.next_id = self.generated + 1

    def __len__(self) -> int:
        # ``deleted`` only ever holds generated ids: deleting an added row removes it outright.
        return self.generated - len(self.deleted) + len(self.added)

    def get(self, row_id: int) -> Row | None:
        if row_id in self.deleted:
            return None
        if row_id in self.added:
            return self.added[row_id]
        if 1 <= row_id <= self.generated:
            row = self.overrides.get(row_id)
            if row is None:
                assert self.generator is not None
                row = self.generator(row_id)
            return row
        return None

    def insert(self, row: Row) -> int:
        row_id = self.next_id
        self.next_id += 1
        row["ID"] = str(row_id)
        self.added[row_id] = row
        self.added_ids.append(row_id)
        return row_id

    def put(self, row_id: int, row: Row) -> None:
        """Store a changed version of an existing row."""
        if row_id in self.added:
            self.added[row_id] = row
        else:
            self.overrides[row_id] = row

    def delete(self, row_id: int) -> bool:
        if self.get(row_id) is None:
            return False
        if row_id in self.added:
            del self.added[row_id]
            self.added_ids.remove(row_id)
        else:
            self.overrides.pop(row_id, None)
            self.deleted.add(row_id)
        return True

    def ids(self, lo: int = 1, hi: int | None = None, descending: bool = False) -> Iterator[int]:
        """Existing ids in [lo, hi] in id order, without building rows."""
        top = self.next_id - 1 if hi is None else hi
        gen_hi = min(top, self.generated)
        start = bisect.bisect_left(self.added_ids, lo)
        stop = bisect.bisect_right(self.added_ids, top)
        extra = self.added_ids[start:stop]
        deleted = self.deleted
        if not descending:
            for i in range(max(lo, 1), gen_hi + 1):
                if i not in deleted:
                    yield i
            yield from extra
        else:
            yield from reversed(extra)
            for i in range(gen_hi, max(lo, 1) - 1, -1):
                if i not in deleted:
                    yield i

    def count_ids(self, lo: int = 1, hi: int | None = None) -> int:
        """How many ids exist in [lo, hi], in O(deleted + log added)."""
        top = self.next_id - 1 if hi is None else hi
        lo = max(lo, 1)
        if top < lo:
            return 0
        gen_hi = min(top, self.generated)
        generated = max(0, gen_hi - lo + 1) - sum(1 for i in self.deleted if lo <= i <= gen_hi)
        added = bisect.bisect_right(self.added_ids, top) - bisect.bisect_left(self.added_ids, lo)
        return generated + added


@dataclass
class Portal:
    """One emulated Bitrix24 account.

    ``address`` is the loopback address the portal listens on; ``domain`` is what Bitrix24 calls
    the portal's domain (here ``host:port`` of the HTTPS listener). ``renamed_to`` is set by the
    rename primitive: the old domain then answers 302 to the new one for every path.
    """

    index: int
    member_id: str
    address: str
    domain: str
    http_domain: str
    plan: str
    admin_user_id: int = 1
    deleted: bool = False
    renamed_from: list[str] = field(default_factory=list)
    users: dict[int, Row] = field(default_factory=dict, repr=False)
    departments: dict[int, Row] = field(default_factory=dict, repr=False)
    tables: dict[str, EntityTable] = field(default_factory=dict, repr=False)
    statuses: EntityTable = field(default_factory=EntityTable, repr=False)
    currencies: dict[str, Row] = field(default_factory=dict, repr=False)
    apps: dict[str, AppInstall] = field(default_factory=dict)
    # Keyed by (user_id, secret): kept out of repr so a logged portal never shows a secret.
    webhooks: dict[tuple[int, str], Webhook] = field(default_factory=dict, repr=False)
    # Free-form per-portal data owned by extensions (event queues, placements...).
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def client_endpoint(self) -> str:
        return f"https://{self.domain}/rest/"

    @property
    def http_endpoint(self) -> str:
        return f"http://{self.http_domain}/rest/"

    def webhook_url(self, user_id: int | None = None) -> str:
        """URL of the first webhook of ``user_id`` (the admin by default)."""
        user = self.admin_user_id if user_id is None else user_id
        for (hook_user, secret), _hook in self.webhooks.items():
            if hook_user == user:
                return f"https://{self.domain}/rest/{hook_user}/{secret}/"
        raise KeyError(f"no webhook for user {user}")

    def table(self, entity: str) -> EntityTable:
        return self.tables.setdefault(entity, EntityTable())
