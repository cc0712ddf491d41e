"""One exception tree for everything that can go wrong talking to Bitrix24.

Outbound failures become a Bitrix24ApiError subclass at one choke point
(:func:`error_from_response`): by the error code first, the HTTP status second, because
Bitrix24 reuses statuses (503 is both QUERY_LIMIT_EXCEEDED and OVERLOAD_LIMIT).
Inbound failures (events, frame POSTs) carry the HTTP status the view should answer with.
"""

from __future__ import annotations

from typing import Any


class Bitrix24Error(Exception):
    """Base of every error raised by this package."""


class Bitrix24ConfigError(Bitrix24Error):
    """The app is configured in a way that cannot work (missing client id, bad endpoint...)."""


class Bitrix24TransportError(Bitrix24Error):
    """The request may not have reached Bitrix24 (connection refused, reset, TLS failure).

    ``sent`` tells whether the request may have been received: False for a refused connection,
    True (outcome unknown) for a timeout or a connection dropped after the body was sent.
    """

    retryable = True

    def __init__(self, message: str, *, sent: bool = True):
        super().__init__(message)
        self.sent = sent


class Bitrix24Timeout(Bitrix24TransportError):
    """No answer in time: the call may or may not have run."""


class Bitrix24ApiError(Bitrix24Error):
    """Bitrix24 answered with an error envelope (or an unusable body)."""

    retryable = False

    def __init__(
        self,
        code: str,
        description: str = "",
        *,
        status: int | None = None,
        method: str | None = None,
        member_id: str | None = None,
        payload: dict[str, Any] | None = None,
    ):
        self.code = code
        self.description = description
        self.status = status
        self.method = method
        self.member_id = member_id
        self.payload = payload or {}
        # Seconds the answer's Retry-After header asked for (set by responses.answer_payload).
        self.retry_after: float | None = None
        where = f" ({method})" if method else ""
        super().__init__(f"{code or 'ERROR'}: {description}{where}".strip())

    @property
    def validation(self) -> list[dict[str, str]]:
        """REST 3.0's ``error.validation``: ``[{"field", "message"}]`` of a refused request, else []."""
        error = self.payload.get("error")
        items = error.get("validation") if isinstance(error, dict) else None
        if not isinstance(items, list):
            return []
        return [
            {"field": str(v.get("field", "")), "message": str(v.get("message", ""))}
            for v in items
            if isinstance(v, dict)
        ]


class Bitrix24RateLimited(Bitrix24ApiError):
    """QUERY_LIMIT_EXCEEDED or OPERATION_TIME_LIMIT: refused before execution, safe to retry."""

    retryable = True


class Bitrix24ServerError(Bitrix24ApiError):
    """A 5xx without a known code: the call may or may not have run."""

    retryable = True


class Bitrix24AuthError(Bitrix24ApiError):
    """The credentials were refused."""


class Bitrix24TokenExpired(Bitrix24AuthError):
    """expired_token: refresh once, then retry the call."""


class Bitrix24InvalidToken(Bitrix24AuthError):
    """invalid_token / NO_AUTH_FOUND: the token is unknown (revoked, or rotated by another process)."""


class Bitrix24InvalidGrant(Bitrix24AuthError):
    """invalid_grant: the refresh token is spent or revoked; the portal needs re-authorisation."""


class Bitrix24InvalidClient(Bitrix24AuthError):
    """invalid_client / wrong_client: the app's credentials don't match this portal."""


class Bitrix24PortalUnavailable(Bitrix24AuthError):
    """PORTAL_DELETED, NOT_INSTALLED, PAYMENT_REQUIRED: no call can succeed until the portal changes."""


class Bitrix24PortalDisabled(Bitrix24Error):
    """An operator disabled the portal here: no call is made until it is enabled again."""

    retryable = False


class Bitrix24PaymentRequired(Bitrix24PortalUnavailable):
    """PAYMENT_REQUIRED: the app's subscription on this portal has ended."""


class Bitrix24AccessDenied(Bitrix24ApiError):
    """ACCESS_DENIED, insufficient_scope, WRONG_AUTH_TYPE, user_access_error."""


class Bitrix24BadRequest(Bitrix24ApiError):
    """The request itself is wrong (unknown method, bad params, not found): never retried."""


class Bitrix24NotFound(Bitrix24BadRequest):
    """crm.*.get of a missing id: HTTP 400 with an empty code and "Not found"; REST 3.0's
    ENTITYNOTFOUNDEXCEPTION."""


class Bitrix24IdempotencyKeyReused(Bitrix24BadRequest):
    """REST 3.0, 422: the Idempotency-Key was already used with another request body."""


class Bitrix24Overloaded(Bitrix24ApiError):
    """OVERLOAD_LIMIT: REST blocked by Bitrix24 support. Not retryable: it lasts until lifted."""


class Bitrix24PortalMoved(Bitrix24ApiError):
    """The portal answered 302: it was renamed. ``new_domain`` is the Location's host."""

    def __init__(self, new_domain: str, **kwargs: Any):
        super().__init__("PORTAL_MOVED", f"portal moved to {new_domain}", **kwargs)
        self.new_domain = new_domain


class Bitrix24WriteOutcomeUnknown(Bitrix24Error):
    """A write was sent but its outcome is unknown; it was not re-sent to avoid duplicating it."""

    def __init__(self, method: str, cause: Exception):
        super().__init__(f"outcome of {method} unknown, not retried: {cause}")
        self.method = method
        self.cause = cause


_V3 = "bitrix_rest_v3_exception_"

_BY_CODE: dict[str, type[Bitrix24ApiError]] = {
    "query_limit_exceeded": Bitrix24RateLimited,
    "operation_time_limit": Bitrix24RateLimited,
    "overload_limit": Bitrix24Overloaded,
    "expired_token": Bitrix24TokenExpired,
    "invalid_token": Bitrix24InvalidToken,
    "no_auth_found": Bitrix24InvalidToken,
    "invalid_grant": Bitrix24InvalidGrant,
    "bad_verification_code": Bitrix24InvalidGrant,
    "invalid_client": Bitrix24InvalidClient,
    "wrong_client": Bitrix24InvalidClient,
    "payment_required": Bitrix24PaymentRequired,
    "portal_deleted": Bitrix24PortalUnavailable,
    "not_installed": Bitrix24PortalUnavailable,
    "access_denied": Bitrix24AccessDenied,
    "insufficient_scope": Bitrix24AccessDenied,
    "invalid_scope": Bitrix24AccessDenied,
    "wrong_auth_type": Bitrix24AccessDenied,
    "user_access_error": Bitrix24AccessDenied,
    "invalid_credentials": Bitrix24AccessDenied,
    "method_confirm_waiting": Bitrix24AccessDenied,
    "error_method_not_found": Bitrix24BadRequest,
    "invalid_request": Bitrix24BadRequest,
    "error_batch_length_exceeded": Bitrix24BadRequest,
    "error_batch_method_not_allowed": Bitrix24BadRequest,
    "not_found": Bitrix24NotFound,
    "internal_server_error": Bitrix24ServerError,
    "error_unexpected_answer": Bitrix24ServerError,
    # REST 3.0 (RD api-reference/rest-v3.md): the refusals it documents for every method.
    _V3 + "validation_requestvalidationexception": Bitrix24BadRequest,
    _V3 + "validation_dtovalidationexception": Bitrix24BadRequest,
    _V3 + "invalidjsonexception": Bitrix24BadRequest,
    _V3 + "unknowndtopropertyexception": Bitrix24BadRequest,
    _V3 + "unknownfilteroperatorexception": Bitrix24BadRequest,
    _V3 + "invalidfilterexception": Bitrix24BadRequest,
    _V3 + "invalidselectexception": Bitrix24BadRequest,
    _V3 + "invalidorderexception": Bitrix24BadRequest,
    _V3 + "invalidpaginationexception": Bitrix24BadRequest,
    _V3 + "invalididempotencykeyexception": Bitrix24BadRequest,
    _V3 + "idempotencykeyreusedexception": Bitrix24IdempotencyKeyReused,
    _V3 + "entitynotfoundexception": Bitrix24NotFound,
    _V3 + "accessdeniedexception": Bitrix24AccessDenied,
    _V3 + "insufficientscopeexception": Bitrix24AccessDenied,
}

_BY_STATUS: dict[int, type[Bitrix24ApiError]] = {
    400: Bitrix24BadRequest,
    401: Bitrix24AuthError,
    403: Bitrix24AccessDenied,
    404: Bitrix24BadRequest,
    422: Bitrix24BadRequest,
    429: Bitrix24RateLimited,
}


def error_class(code: str, status: int | None, description: str = "") -> type[Bitrix24ApiError]:
    """The exception class for an error code (case-insensitive) and HTTP status."""
    by_code = _BY_CODE.get((code or "").lower())
    if by_code is not None:
        return by_code
    if not code and status == 400 and "not found" in description.lower():
        return Bitrix24NotFound
    if status is not None and status >= 500:
        return Bitrix24ServerError
    return _BY_STATUS.get(status or 0, Bitrix24ApiError)


def error_from_payload(
    payload: dict[str, Any],
    *,
    status: int | None = None,
    method: str | None = None,
    member_id: str | None = None,
) -> Bitrix24ApiError:
    """Build the exception for an error envelope ``{"error": ..., "error_description": ...}``."""
    error = payload.get("error", "")
    if isinstance(error, dict):  # REST 3.0: {"error": {"code": ..., "message": ...}}
        code = str(error.get("code", ""))
        description = str(error.get("message", ""))
    else:
        code = str(error or "")
        description = str(payload.get("error_description", ""))
    cls = error_class(code, status, description)
    return cls(code, description, status=status, method=method, member_id=member_id, payload=payload)


class Bitrix24InboundError(Bitrix24Error):
    """A request Bitrix24 (or someone pretending to be it) sent us is unacceptable."""

    http_status = 400


class MalformedRequest(Bitrix24InboundError):
    """What Bitrix24 sends us can't be read: not UTF-8, too many fields, a field twice, bad JSON."""

    http_status = 400


class InvalidEventPayload(MalformedRequest):
    """An event body that can't be read, or lacks what every event carries."""

    http_status = 400


class InvalidApplicationToken(Bitrix24InboundError):
    http_status = 403


class UnknownPortal(Bitrix24InboundError):
    http_status = 403


class InvalidInstallRequest(Bitrix24InboundError):
    """A claim to change a portal's credentials (install, re-authorisation, a new application
    token) that Bitrix24 did not confirm: nothing is stored."""

    http_status = 403


class AdministratorRequired(InvalidInstallRequest):
    """The claim's token is genuine, but ``user.admin`` says its user doesn't administer the portal."""
