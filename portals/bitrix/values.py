"""Integers and timestamps from untrusted input (form fields, query strings, JSON answers), bounded.

Everything a request or a remote server sends is text or JSON of any size; ``int()`` accepts
``"٣"``, 400 digits or ``True``, and what it returns can then overflow ``datetime``/``timedelta``
or a database column far from the parser, as a 500. These helpers take a value only when it is a
plain decimal integer inside the caller's bounds, and say ``None`` otherwise, so each parser
decides in one place what a missing or an unusable value means.

Free of Django, like the rest of the package.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

__all__ = ["MAX_UNIX_TS", "MIN_UNIX_TS", "bounded_int", "unix_ts"]

# ASCII digits only: str.isdigit() and int() also accept other scripts' digits (and isdigit "²",
# which int() then refuses). 20 digits hold any 64-bit value; longer text is never a valid bound.
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")

# Seconds since the epoch that a Bitrix24 timestamp can hold: anything from the epoch (recorded
# payloads and tests use small values) to 2100-01-01, far inside what datetime can represent.
MIN_UNIX_TS = 0
MAX_UNIX_TS = 4_102_444_800


def bounded_int(value: Any, *, low: int, high: int) -> int | None:
    """``value`` as an int when it is a decimal integer within ``low..high`` (inclusive), else None.

    Accepted: an ``int`` (not a ``bool``), an integral finite ``float`` (JSON may send ``3600.0``),
    a ``str`` of ASCII digits with an optional sign and surrounding whitespace. Everything else --
    absent, empty, fractional, another script's digits, too long, out of range -- is None; callers
    that must tell "absent" from "unusable" check for absence themselves.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _INTEGER.fullmatch(text):
            return None
        number = int(text)
    else:
        return None
    return number if low <= number <= high else None


def unix_ts(value: Any, *, low: int = MIN_UNIX_TS, high: int = MAX_UNIX_TS) -> datetime | None:
    """An aware UTC datetime for seconds since the epoch within ``low..high``, else None.

    For ``ts`` of events, ``expires`` of token answers and the like (see :func:`bounded_int` for
    what is accepted).
    """
    seconds = bounded_int(value, low=low, high=high)
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)
