"""What the client must know about a method before it calls it: whether running it again is
harmless (a read, retried on an ambiguous failure), and the Idempotency-Key that makes a REST 3.0
write safe to repeat."""

from __future__ import annotations

import uuid

_READ_VERBS = frozenset(
    {"get", "list", "fields", "info", "search", "current", "count", "types", "tail", "scope"}
)
# "batch" is deliberately absent: a batch is a read only when all its commands are (batch() decides).
_READ_METHODS = frozenset(
    {
        "methods",
        "scope",
        "app.info",
        "profile",
        "server.time",
        "user.current",
        "rest.documentation.openapi",
        "documentation",
    }
)


def is_read(method: str) -> bool:
    """True when re-running ``method`` can't change data (get/list/fields...). Unknown → write."""
    name = method.lower()
    if name in _READ_METHODS:
        return True
    verb = name.rsplit(".", 1)[-1]
    return verb in _READ_VERBS or verb.startswith(("get", "list"))


def new_idempotency_key() -> str:
    """A key for one logical REST 3.0 write: made once, sent on every attempt of that write."""
    return uuid.uuid4().hex


def check_idempotency_key(key: str) -> None:
    """Raises ValueError unless ``key`` is what Bitrix24 accepts: 1–255 printable ASCII characters."""
    if not 1 <= len(key) <= 255 or any(not 0x20 <= ord(c) <= 0x7E for c in key):
        raise ValueError("an Idempotency-Key is 1 to 255 printable ASCII characters")
