"""The Idempotency-Key contract (RD rest-v3.md, "Repeated calls without duplicates"; §11).

* Taken into account on methods that create, change or delete data (a 3.0 batch counts when
  one of its calls does); ignored on reads and on the old address.
* 1–255 printable ASCII characters, else 400 INVALIDIDEMPOTENCYKEYEXCEPTION.
* Keys are scoped per app or webhook, user and method. The first successful answer is stored
  for 24 hours; the same key with the same body gets it back with ``Idempotent-Replayed: true``
  without running the method; with another body, 422 IDEMPOTENCYKEYREUSEDEXCEPTION. Errors are
  not stored: a repeat after an error runs again.
* Nothing reserves a key while its first call runs, so two simultaneous requests with one key may
  both run, as documented; the sandbox counts such overlaps (``overlapping``) so tests can see
  whether a client ever sends them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sandbox.rest_v3.errors import INVALID_KEY, KEY_REUSED, V3Error
from sandbox.rest_v3.state import PortalV3, ReplyKey, StoredReply

LIFETIME = 24 * 3600.0
MAX_LENGTH = 255


def check_key(value: str) -> None:
    if not 1 <= len(value) <= MAX_LENGTH or any(not 0x20 <= ord(c) <= 0x7E for c in value):
        raise V3Error(INVALID_KEY, "Idempotency-Key must be 1 to 255 printable ASCII characters", 400)


def digest(body: Any) -> str:
    """What makes two requests "the same call": the body, ``auth`` already taken out of it."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def stored(store: PortalV3, key: ReplyKey, body_digest: str, now: float) -> StoredReply | None:
    """The stored answer for ``key`` (None: run the call); raises 422 for another body."""
    reply = store.replies.get(key)
    if reply is None:
        return None
    if now >= reply.expires:
        del store.replies[key]
        return None
    if reply.digest != body_digest:
        store.idempotency["reused"] += 1
        raise V3Error(
            KEY_REUSED,
            "This Idempotency-Key was already used with a different request body",
            422,
        )
    store.idempotency["replayed"] += 1
    return reply


def remember(store: PortalV3, key: ReplyKey, body_digest: str, body: dict[str, Any], now: float) -> None:
    store.replies[key] = StoredReply(digest=body_digest, body=body, expires=now + LIFETIME)
    store.idempotency["stored"] += 1
