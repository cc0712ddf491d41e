"""One reading of Bitrix24's answers, REST and OAuth server alike: the envelope or our exception.

Bitrix24 reuses HTTP statuses (503 is QUERY_LIMIT_EXCEEDED and OVERLOAD_LIMIT; the OAuth server
answers ``wrong_client`` with 200), so the error code decides first and the status second
(:func:`exceptions.error_from_payload`). The transport and the OAuth module both parse here.
"""

from __future__ import annotations

from typing import Any

import requests

from .exceptions import Bitrix24ApiError, Bitrix24ServerError, error_class, error_from_payload
from .retry import retry_after_seconds

UNEXPECTED = "ERROR_UNEXPECTED_ANSWER"


def answer_payload(
    response: requests.Response, *, method: str, member_id: str | None = None, status_decides: bool = True
) -> dict[str, Any]:
    """The JSON object of a successful answer (HTTP 2xx, no ``error``); otherwise raises.

    * An ``error`` key (not null/false) in the JSON object: the class of its code, else of the
      status (REST 3.0's ``{"error": {"code", "message"}}`` included).
    * No code and HTTP 5xx: Bitrix24ServerError (the call may have run).
    * No code and HTTP 4xx: the class of the status (400 Bitrix24BadRequest, 401 Bitrix24AuthError,
      429 Bitrix24RateLimited…) when ``status_decides``, else Bitrix24ApiError.
    * Anything else (not a JSON object, or a 1xx/3xx): ERROR_UNEXPECTED_ANSWER, a
      Bitrix24ServerError when ``status_decides`` (an answer that may hide a run call), else
      Bitrix24ApiError.

    ``status_decides=False`` is for the OAuth server, which states every refusal with a code: a
    4xx without one is a proxy's page, not a verdict on the credentials (a bare 401 must not mark
    a portal as needing re-authorisation). The body is never put in a message: it may echo input.
    """
    try:
        return _answer_payload(response, method=method, member_id=member_id, status_decides=status_decides)
    except Bitrix24ApiError as e:
        # What the server asked for, for the retry to honour (retry.Backoff.delay).
        e.retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        raise


def _answer_payload(
    response: requests.Response, *, method: str, member_id: str | None, status_decides: bool
) -> dict[str, Any]:
    status = response.status_code
    try:
        payload = response.json()
    except ValueError:
        payload = None
    where: dict[str, Any] = {"status": status, "method": method, "member_id": member_id}
    # An empty code is still an error: a missing CRM item is 400 with "" and "Not found".
    if isinstance(payload, dict) and payload.get("error") not in (None, False):
        raise error_from_payload(payload, **where)
    if isinstance(payload, dict) and 200 <= status < 300:
        return payload
    if status >= 500:
        cls: type[Bitrix24ApiError] = Bitrix24ServerError
    elif status >= 400 and status_decides:
        cls = error_class("", status)
    elif status_decides:
        cls = Bitrix24ServerError
    else:
        cls = Bitrix24ApiError
    if isinstance(payload, dict):
        raise cls("" if status >= 400 else UNEXPECTED, f"HTTP {status}", payload=payload, **where)
    raise cls(UNEXPECTED, f"HTTP {status}, not a JSON object", **where)
