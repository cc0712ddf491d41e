"""The API's refusals: each carries its HTTP status, a code, a message and, for bad input, the fields.

Answered as ``{"error": {"code", "message", "fields"}}`` (api.views installs the handlers).
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        fields: dict[str, list[str]] | None = None,
        retry_after: int | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.fields = fields
        self.retry_after = retry_after
        if code:
            self.code = code


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


def error_response(
    status: int, code: str, message: str, *, fields: Any = None, retry_after: int | None = None
) -> HttpResponse:
    body = {"error": {"code": code, "message": message, "fields": fields}}
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response
