"""REST 3.0's one error shape: ``{"error": {"code", "message", "validation"?}}`` with a 4xx status."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from sandbox.registry import RestError

PREFIX = "BITRIX_REST_V3_EXCEPTION_"

VALIDATION = PREFIX + "VALIDATION_REQUESTVALIDATIONEXCEPTION"
INVALID_JSON = PREFIX + "INVALIDJSONEXCEPTION"
UNKNOWN_PROPERTY = PREFIX + "UNKNOWNDTOPROPERTYEXCEPTION"
UNKNOWN_OPERATOR = PREFIX + "UNKNOWNFILTEROPERATOREXCEPTION"
INVALID_FILTER = PREFIX + "INVALIDFILTEREXCEPTION"
INVALID_SELECT = PREFIX + "INVALIDSELECTEXCEPTION"
INVALID_ORDER = PREFIX + "INVALIDORDEREXCEPTION"
INVALID_PAGINATION = PREFIX + "INVALIDPAGINATIONEXCEPTION"
NOT_FOUND = PREFIX + "ENTITYNOTFOUNDEXCEPTION"
ACCESS_DENIED = PREFIX + "ACCESSDENIEDEXCEPTION"
INSUFFICIENT_SCOPE = PREFIX + "INSUFFICIENTSCOPEEXCEPTION"
KEY_REUSED = PREFIX + "IDEMPOTENCYKEYREUSEDEXCEPTION"
INVALID_KEY = PREFIX + "INVALIDIDEMPOTENCYKEYEXCEPTION"


class V3Error(Exception):
    """A REST 3.0 refusal; ``validation`` is the list of ``{"field", "message"}`` it carries."""

    def __init__(
        self, code: str, message: str, status: int = 400, validation: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.validation = validation

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.validation:
            error["validation"] = self.validation
        return {"error": error}


def invalid(field: str, message: str) -> V3Error:
    """A request validation error about one field."""
    return V3Error(
        VALIDATION,
        "Error during request object validation",
        validation=[{"field": field, "message": message}],
    )


def as_v3(error: RestError | V3Error) -> V3Error:
    """Errors shared with the old REST (auth, limits, faults) keep their code, in the 3.0 shape."""
    if isinstance(error, V3Error):
        return error
    return V3Error(error.code, error.description, error.status)


def error_response(error: RestError | V3Error, headers: dict[str, str] | None = None) -> Response:
    v3 = as_v3(error)
    return JSONResponse(v3.body(), status_code=v3.status, headers=headers)
