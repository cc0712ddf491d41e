"""/api/v1: the portals' mirrored CRM data, read with an API key (django-ninja; docs/api.md).

No ``from __future__ import annotations`` here: ninja reads the operations' annotations at
definition time, and the per-resource query models are local to :func:`_register`.
"""

import json
import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Path, Query
from ninja.errors import AuthenticationError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.openapi.docs import Swagger
from ninja.security import APIKeyHeader, HttpBearer
from pydantic import BaseModel

from bitrix_app.client_ip import client_ip
from mirror.services.status import mirror_status
from portals.conf import app_settings
from portals.models import Portal

from . import answers
from .errors import ApiError, Forbidden, NotFound, RateLimited, Unauthorized, error_response
from .resources import MAX_ID, RESOURCES, Resource
from .schemas import ErrorBody, PortalOut
from .services import cache
from .services.keys import Principal, apikey_authenticate, portal_id_of
from .services.limits import Reads, admit

logger = logging.getLogger("api")

MEMBER_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
# Seconds a client is told to wait when the database is down.
UNAVAILABLE_RETRY_AFTER = 30
ERRORS: dict[int, Any] = {code: ErrorBody for code in (400, 401, 403, 404, 429, 503)}


def _address_limited(request: HttpRequest) -> HttpResponse | None:
    """Count a request without a valid key against its address: the 429 past the limit, else None."""
    retry = admit(f"ip:{client_ip(request)}").retry_after
    if retry is None:
        return None
    return error_response(429, "rate_limited", "too many requests from this address", retry_after=retry)


def _unauthenticated(request: HttpRequest, error: ApiError) -> HttpResponse:
    """A request without a valid key counts against its address; past the limit: 429."""
    limited = _address_limited(request)
    return limited if limited is not None else error_response(error.status, error.code, error.message)


def _authenticate(request: HttpRequest, raw: str) -> Principal:
    """The key's principal. Its limit is counted by the operation (:func:`_admitted`), together
    with the reads the answer needs."""
    return apikey_authenticate(raw, ip=client_ip(request))


def _admitted(request: HttpRequest, reads: Reads | None = None) -> cache.Lookup:
    """Count the request against its key's limit (past it: 429) and read ``reads`` with it. Every
    operation calls this first, before it refuses anything else (tests/api/test_api.py)."""
    principal: Principal = request.auth  # type: ignore[attr-defined]
    admission = admit(f"key:{principal.key_id}", reads)
    if admission.retry_after is not None:
        raise RateLimited(
            f"more than {app_settings.api_rate_limit} requests a minute with this key",
            retry_after=admission.retry_after,
        )
    return admission.lookup


class KeyHeader(APIKeyHeader):
    """``X-API-Key: b24k_…``."""

    param_name = "X-API-Key"

    def __call__(self, request: HttpRequest) -> Principal | None:
        raw = request.headers.get(self.param_name)
        return None if raw is None else _authenticate(request, raw.strip())

    def authenticate(self, request: HttpRequest, key: str | None) -> Principal | None:
        return _authenticate(request, key) if key else None


class KeyBearer(HttpBearer):
    """``Authorization: Bearer b24k_…``."""

    def __call__(self, request: HttpRequest) -> Principal | None:
        header = request.headers.get("Authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthorized("Authorization must be 'Bearer <key>'")
        return _authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Principal | None:
        return _authenticate(request, token)


def _docs_limited(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The schema and the docs page need no key: they count against the address."""

    def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = _address_limited(request)
        return refused if refused is not None else view(request, *args, **kwargs)

    return limited


api = NinjaAPI(
    title="Bitrix24 portals: CRM mirror API",
    version="1",
    description="Each portal's CRM data (deals, leads, contacts, companies, users, statuses, "
    "currencies) from the app's local mirror. Send the key as X-API-Key or Authorization: Bearer. "
    "Lists page with page/limit (or an exact id cursor, after); errors are "
    '{"error": {"code", "message", "fields"}}.',
    urls_namespace="api-v1",
    docs_url=None,
    openapi_url="/openapi.json",
    docs_decorator=_docs_limited,
    auth=[KeyHeader(), KeyBearer()],
)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    if exc.status == 401:
        return _unauthenticated(request, exc)
    return error_response(exc.status, exc.code, exc.message, fields=exc.fields, retry_after=exc.retry_after)


@api.exception_handler(AuthenticationError)
def _no_key(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _unauthenticated(
        request, Unauthorized("an API key is required: X-API-Key or Authorization: Bearer")
    )


@api.exception_handler(NinjaValidationError)
def _invalid(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    # Parameters are checked after the key and before the operation runs: count the request here.
    if isinstance(getattr(request, "auth", None), Principal):
        try:
            _admitted(request)
        except RateLimited as limited:
            return _api_error(request, limited)
    fields: dict[str, list[str]] = {}
    for error in exc.errors:
        loc = [str(part) for part in error.get("loc", ()) if part not in ("query", "path", "filters")]
        fields.setdefault(".".join(loc) or "request", []).append(str(error.get("msg", "invalid")))
    return error_response(400, "bad_request", "invalid parameters", fields=fields)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(404, "not_found", "no such resource")


@api.exception_handler(DatabaseError)
def _database_down(request: HttpRequest, exc: DatabaseError) -> HttpResponse:
    logger.warning("api.database_unavailable", extra={"error": type(exc).__name__})
    return error_response(
        503,
        "unavailable",
        "the database is unavailable, try again later",
        retry_after=UNAVAILABLE_RETRY_AFTER,
    )


def _covered(request: HttpRequest, member_id: str, resource: Resource | None = None) -> int | None:
    """The portal's id when the key covers it (and may read ``resource``), else None."""
    principal: Principal = request.auth  # type: ignore[attr-defined]
    portal_id = portal_id_of(member_id)
    if portal_id is None or portal_id not in principal.portal_ids:
        return None
    if resource is not None and not principal.may_read(resource.plural):
        return None
    return portal_id


def _refusal(request: HttpRequest, member_id: str, resource: Resource | None = None) -> ApiError:
    """Why :func:`_covered` said no: 404 for a portal the key doesn't cover (or that doesn't
    exist: the answer doesn't tell another key's portals from none), 403 for a resource outside
    the key's scopes."""
    if resource is not None and _covered(request, member_id) is not None:
        return Forbidden(f"this key may not read {resource.plural} (scope {resource.plural}:read)")
    return NotFound("no such portal")


def _portal_or_refuse(request: HttpRequest, member_id: str, resource: Resource | None = None) -> int:
    """The covered portal's id; otherwise the request is counted against its key and refused."""
    portal_id = _covered(request, member_id, resource)
    if portal_id is None:
        _admitted(request)
        raise _refusal(request, member_id, resource)
    return portal_id


def _answer(request: HttpRequest, etag: str, body: bytes) -> HttpResponse:
    if cache.etag_matches(request.headers.get("If-None-Match", ""), etag):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(body, content_type="application/json")
    response["ETag"] = etag
    # Per key, never in a shared cache; revalidate with the ETag.
    response["Cache-Control"] = "private, no-cache"
    return response


def _cached_answer(
    request: HttpRequest, found: cache.Lookup, build: Callable[[], tuple[bytes, dict[int, bytes]]]
) -> HttpResponse:
    """The answer from the cache, else ``build()``: its body, and the other values read with the
    answer (by their index in the Lookup) to store with it."""
    cached = found.payload()
    if cached is not None:
        etag, _, body = cached.partition(b"\n")
        return _answer(request, etag.decode(), body)
    body, others = build()
    etag = cache.etag_of(body)
    cache.store(found, {**others, 0: etag.encode() + b"\n" + body})
    return _answer(request, etag, body)


class _Listing:
    """One list request: the rows it selects and the filter set its ``total`` counts."""

    def __init__(self, portal_id: int, resource: Resource, query: BaseModel):
        params = query.model_dump()
        filters = {}
        for name, lookup in resource.filters.items():
            if params.get(name) is not None:
                filters[lookup] = params[name]
        self.limit, self.page, self.order = params["limit"], params["page"], params["order"]
        # ``total`` counts the rows the filters match, wherever the cursor stands: every page of an
        # export shares one (cached) count instead of counting what lies beyond each page.
        self.counted = answers.Selection(resource, portal_id, dict(filters))
        self.count_key = "count:" + json.dumps(filters, sort_keys=True, default=str)
        # ``after`` is a keyset filter (ids above it): in the default order, page after page by
        # next_after, it is the exact cursor (rows deleted or added meanwhile shift nothing).
        if params["after"] is not None:
            filters["bitrix_id__gt"] = params["after"]
        name = self.order.removeprefix("-")
        column = "bitrix_id" if name == "id" else resource.columns.get(name, name)
        # The database's own NULL order (last ascending, first descending), so each order reads its
        # (portal, column, id) index forwards or backwards instead of sorting the portal's rows.
        sign = "-" if self.order.startswith("-") else ""
        ordering = (f"{sign}{column}", f"{sign}bitrix_id") if column != "bitrix_id" else (f"{sign}bitrix_id",)
        self.selected = answers.Selection(resource, portal_id, filters, ordering)

    def body(self, total: int) -> bytes:
        found = answers.rows_json(self.selected, offset=(self.page - 1) * self.limit, limit=self.limit)
        return answers.page_body(
            [row for _, row in found],
            page=self.page,
            limit=self.limit,
            total=total,
            next_after=found[-1][0] if self.order == "id" and len(found) == self.limit else None,
        )


def _list_answer(request: HttpRequest, listing: _Listing, found: cache.Lookup) -> HttpResponse:
    """The page from the cache, else built; its count (shared by the pages of one filter set) was
    read with it and is stored with it."""

    def build() -> tuple[bytes, dict[int, bytes]]:
        counted = found.payload(1)
        total = int(counted) if counted is not None else answers.count(listing.counted)
        return listing.body(total), {1: str(total).encode()}

    return _cached_answer(request, found, build)


def _register(resource: Resource) -> None:
    query_model = resource.query_model()
    page_model = resource.page_model()  # the answer's schema; the body is built by api.answers
    plural = resource.plural

    @api.get(
        f"/portals/{{member_id}}/{plural}",
        response={200: page_model, 304: None, **ERRORS},
        url_name=f"{plural}-list",
        operation_id=f"list_{plural}",
        summary=f"List {plural}",
        tags=[plural],
    )
    def list_view(
        request: HttpRequest,
        query: Query[query_model],  # type: ignore[valid-type]
        member_id: str = Path(..., pattern=MEMBER_ID_PATTERN),
    ) -> HttpResponse:
        portal_id = _portal_or_refuse(request, member_id, resource)
        listing = _Listing(portal_id, resource, query)
        keys = ("list:" + query.model_dump_json(), listing.count_key)
        found = _admitted(request, Reads(portal_id, resource.entity.name, keys))
        return _list_answer(request, listing, found)

    detail = {
        "response": {200: resource.out, 304: None, **ERRORS},
        "url_name": f"{plural}-detail",
        "operation_id": f"get_{resource.entity.name}",
        "tags": [plural],
    }
    if resource.key == "code":

        @api.get(
            f"/portals/{{member_id}}/{plural}/{{code}}",
            summary=f"One {resource.entity.name} by its code",
            **detail,
        )
        def code_view(
            request: HttpRequest,
            member_id: str = Path(..., pattern=MEMBER_ID_PATTERN),
            code: str = Path(..., pattern=r"^[A-Za-z0-9]{1,16}$"),
        ) -> HttpResponse:
            return _detail(request, resource, member_id, {"code": code})

    else:

        @api.get(
            f"/portals/{{member_id}}/{plural}/{{id}}",
            summary=f"One {resource.entity.name} by its id",
            **detail,
        )
        def id_view(
            request: HttpRequest,
            member_id: str = Path(..., pattern=MEMBER_ID_PATTERN),
            id: int = Path(..., ge=1, le=MAX_ID),
        ) -> HttpResponse:
            return _detail(request, resource, member_id, {"bitrix_id": id})


def _detail(request: HttpRequest, resource: Resource, member_id: str, lookup: dict[str, Any]) -> HttpResponse:
    portal_id = _portal_or_refuse(request, member_id, resource)
    found = _admitted(request, Reads(portal_id, resource.entity.name, (f"detail:{json.dumps(lookup)}",)))

    def build() -> tuple[bytes, dict[int, bytes]]:
        rows = answers.rows_json(answers.Selection(resource, portal_id, lookup), offset=0, limit=1)
        if not rows:
            raise NotFound(f"no such {resource.entity.name}")
        return rows[0][1], {}

    return _cached_answer(request, found, build)


for _resource in RESOURCES.values():
    _register(_resource)


@api.get(
    "/portals/{member_id}",
    response={200: PortalOut, **ERRORS},
    url_name="portal-detail",
    operation_id="get_portal",
    summary="A portal and where its mirror stands",
    tags=["portals"],
)
def portal_detail(request: HttpRequest, member_id: str = Path(..., pattern=MEMBER_ID_PATTERN)) -> PortalOut:
    portal_id = _portal_or_refuse(request, member_id)
    _admitted(request)
    portal = Portal.objects.filter(pk=portal_id).values("member_id", "domain", "state").first()
    if portal is None:
        raise NotFound("no such portal")
    plurals = {r.entity.name: r.plural for r in RESOURCES.values()}
    mirror = [
        {
            "entity": line.entity,
            "resource": plurals[line.entity],
            "state": line.state,
            "rows": line.rows,
            "pending": line.pending,
            "completed_at": line.completed_at,
            "reconciled_at": line.reconciled_at,
        }
        for line in mirror_status(portal_id=portal_id)
    ]
    return PortalOut.model_validate({**portal, "mirror": mirror})


@_docs_limited
def api_docs(request: HttpRequest) -> HttpResponse:
    """Swagger UI from django-ninja's own static files (the "ninja" app), no CDN."""
    return Swagger(settings={"persistAuthorization": True}).render_page(request, api)
