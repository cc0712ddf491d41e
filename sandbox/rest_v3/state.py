"""What REST 3.0 keeps per portal: the tasks, the stored answers of Idempotency-Key calls and
their counters. Lives in ``portal.extra`` so ``POST /_sandbox/reset`` starts it afresh with the
portal."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sandbox.store import Portal

Row = dict[str, Any]

# (caller: app client_id or webhook tag, user_id, method, key)
ReplyKey = tuple[str, int, str, str]


@dataclass
class StoredReply:
    """The first successful answer to a call with an Idempotency-Key."""

    digest: str  # of the request body without ``auth`` (a refreshed token is the same call)
    body: dict[str, Any]
    expires: float


@dataclass
class PortalV3:
    tasks: dict[int, Row] = field(default_factory=dict)
    next_task_id: int = 1
    replies: dict[ReplyKey, StoredReply] = field(default_factory=dict)
    # Calls with a key being processed right now, to count overlapping attempts with one key.
    in_flight: Counter[ReplyKey] = field(default_factory=Counter)
    # stored, replayed, reused (422), invalid (400), overlapping
    idempotency: Counter[str] = field(default_factory=Counter)


def portal_v3(portal: Portal) -> PortalV3:
    found = portal.extra.get("rest_v3")
    if found is None:
        found = portal.extra["rest_v3"] = PortalV3()
    return found  # type: ignore[no-any-return]
