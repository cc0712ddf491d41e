"""The REST 3.0 endpoint of every portal: ``/rest/api/<method>`` and ``/rest/api/<user>/<secret>/<method>``.

The same order of checks as the old REST (sandbox.rest), with 3.0's body and shapes:
portal deleted → dropped-before fault → the JSON body (never the query string) →
authentication (webhook secret, or ``auth`` in the JSON object; a batch's array body has no
place for it, so an app's token may come as ``Authorization: Bearer``) → method lookup (only
3.0 methods: CRM answers 404 here) → scope → fault storms → leaky bucket (503) →
Idempotency-Key (400 malformed, 422 reused, or the stored answer replayed) → operating-time
limit (429; per call inside a batch) → added latency → the per-portal concurrency slot → the
method with its modelled cost → the answer stored for its key → dropped-after fault → the answer.

Every refusal has 3.0's shape, ``{"error": {"code", "message", "validation"?}}``; errors shared
with the old REST (auth, limits, faults) keep their old codes and statuses inside it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.registry import Auth, Call, RestError
from sandbox.rest import (
    STORM_ERRORS,
    STORM_KINDS,
    Pace,
    answered,
    authenticate,
    caller_key,
    check_operating,
    execute,
    parse_path,
)
from sandbox.rest_v3 import control as _control  # noqa: F401 - registers the control routes
from sandbox.rest_v3 import system as _system  # noqa: F401 - registers the methods
from sandbox.rest_v3 import tasks as _tasks  # noqa: F401 - registers the methods
from sandbox.rest_v3.errors import (
    INSUFFICIENT_SCOPE,
    INVALID_JSON,
    INVALID_SELECT,
    V3Error,
    as_v3,
    error_response,
    invalid,
)
from sandbox.rest_v3.idempotency import check_key, digest, remember, stored
from sandbox.rest_v3.registry import V3Spec, granted, lookup
from sandbox.rest_v3.state import ReplyKey, portal_v3
from sandbox.state import Sandbox
from sandbox.store import Portal
from sandbox.wire import drop_connection, time_block

BATCH_MAX = 50


async def rest_v3_endpoint(request: Request) -> Response:
    return await answered(request, _process, errors=(RestError, V3Error), respond=error_response)


async def read_body(request: Request) -> dict[str, Any] | list[Any]:
    """The JSON body; ``{}`` for GET or an empty body. 3.0 never reads the query string."""
    if request.method == "GET":
        return {}
    raw = await request.body()
    if not raw.strip():
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise V3Error(INVALID_JSON, "The request body must be JSON sent with Content-Type: application/json")
    try:
        data = json.loads(raw)
    except ValueError:
        raise V3Error(INVALID_JSON, "The request body is not valid JSON")
    if not isinstance(data, dict | list):
        raise V3Error(INVALID_JSON, "The request body must be a JSON object (or an array for batch)")
    return data


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _batch_calls(body: dict[str, Any] | list[Any]) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(body, list):
        # The old form ({"cmd": {...}} of "method?query" strings) is not 3.0's (RD rest-v3.md).
        raise V3Error(INVALID_SELECT, "batch takes a JSON array of {method, query} at the root")
    if not body:
        raise invalid("batch", "The batch is empty")
    if len(body) > BATCH_MAX:
        raise RestError("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded", 400)
    calls = []
    for index, entry in enumerate(body):
        method = entry.get("method") if isinstance(entry, dict) else None
        query = entry.get("query", {}) if isinstance(entry, dict) else None
        if not isinstance(method, str) or not method:
            raise invalid(f"[{index}].method", f"Required field `method` of call {index} is missing")
        if query is None:
            query = {}
        if not isinstance(query, dict):
            raise invalid(f"[{index}].query", f"Field `query` of call {index} requires data type `object`")
        calls.append((method, query))
    return calls


def _check_scope(spec: V3Spec, call_auth: Auth) -> None:
    if not granted(spec, call_auth.scope):
        holder = "access token" if call_auth.is_app else "webhook token"
        raise V3Error(
            INSUFFICIENT_SCOPE, f"The request requires higher privileges than provided by the {holder}", 403
        )


async def _process(request: Request, sandbox: Sandbox, portal: Portal) -> Response:
    now = sandbox.clock.time()
    faults = sandbox.faults
    member = portal.member_id
    if portal.deleted or faults.take(member, frozenset({"deleted"}), now):
        raise RestError("PORTAL_DELETED", "Portal was deleted", 500)
    if faults.take(member, frozenset({"drop_before"}), now):
        await drop_connection(request)
    method_name, webhook = parse_path(request.path_params["path"])
    body = await read_body(request)
    credentials = body if isinstance(body, dict) else {}
    bearer = _bearer(request)
    if bearer is not None and "auth" not in credentials:
        credentials["auth"] = bearer
    call_auth = authenticate(sandbox, portal, credentials, webhook)  # takes "auth" out of the body
    is_batch = method_name.lower() == "batch"
    spec = None if is_batch else lookup(method_name)
    if not is_batch and spec is None:
        raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    calls = _batch_calls(body) if is_batch else []
    if spec is not None:
        if not isinstance(body, dict):
            raise V3Error(INVALID_JSON, "The request body must be a JSON object")
        _check_scope(spec, call_auth)
    storm = faults.take(member, STORM_KINDS, now)
    if storm is not None:
        raise RestError(*STORM_ERRORS[storm.kind])
    drain, burst = sandbox.drain_burst(portal)
    if not sandbox.bucket(portal).admit(now, drain, burst):
        raise RestError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)

    store = portal_v3(portal)
    writes = (
        spec.write if spec is not None else any((s := lookup(m)) is not None and s.write for m, _ in calls)
    )
    key = request.headers.get("idempotency-key") if writes else None
    reply_key: ReplyKey | None = None
    body_digest = ""
    if key is not None:
        try:
            check_key(key)
        except V3Error:
            store.idempotency["invalid"] += 1
            raise
        reply_key = (caller_key(call_auth), call_auth.user_id, method_name.lower(), key)
        body_digest = digest(body)
        reply = stored(store, reply_key, body_digest, now)
        if reply is not None:
            await _maybe_drop(request, sandbox, member, replayed=True)
            return JSONResponse(reply.body, headers={"Idempotency-Key": key, "Idempotent-Replayed": "true"})

    # From here until its answer is stored, the call holds its key: a second request with the
    # same key meanwhile finds nothing stored and runs too (counted as overlapping).
    if reply_key is not None:
        if store.in_flight[reply_key]:
            store.idempotency["overlapping"] += 1
        store.in_flight[reply_key] += 1
    try:
        answer = await _run(sandbox, portal, call_auth, spec, body, calls)
        if reply_key is not None:
            remember(store, reply_key, body_digest, answer, sandbox.clock.time())
    finally:
        if reply_key is not None:
            store.in_flight[reply_key] -= 1
            if not store.in_flight[reply_key]:
                del store.in_flight[reply_key]
    await _maybe_drop(request, sandbox, member, replayed=False)
    return JSONResponse(answer, headers={"Idempotency-Key": key} if key is not None else None)


async def _run(
    sandbox: Sandbox,
    portal: Portal,
    call_auth: Auth,
    spec: V3Spec | None,
    body: dict[str, Any] | list[Any],
    calls: list[tuple[str, dict[str, Any]]],
) -> dict[str, Any]:
    """The operating-time check, latency fault, concurrency slot and the method (or batch): the answer."""
    member = portal.member_id
    if spec is not None:
        check_operating(sandbox, portal, call_auth, spec.name)
    latency = sandbox.faults.take(member, frozenset({"latency"}), sandbox.clock.time())
    if latency is not None:
        await asyncio.sleep(float(latency.params.get("delay", 1.0)))
    start = sandbox.clock.time()
    counters = sandbox.counters
    async with sandbox.semaphore(portal):
        counters.enter(member)
        try:
            processing_started = time.perf_counter()
            pace = Pace(processing_started)
            if spec is not None:
                assert isinstance(body, dict)
                call = Call(sandbox=sandbox, portal=portal, auth=call_auth, method=spec.name, params=body)
                result, operating, reset_at = await execute(sandbox, call, spec.spec, pace)
            else:
                result = await run_batch(sandbox, portal, call_auth, calls, pace)
            processing = time.perf_counter() - processing_started
        finally:
            counters.leave(member)
    finish = sandbox.clock.time()
    if spec is not None and spec.result == "document":
        return dict(result)
    if spec is None:
        operating, reset_at = 0.0, finish + sandbox.config.operating_window
    return {"result": result, "time": time_block(start, finish, processing, operating, reset_at)}


async def _maybe_drop(request: Request, sandbox: Sandbox, member: str, *, replayed: bool) -> None:
    """The dropped-after fault: the answer is lost after the method ran (or was replayed).

    ``replays: false`` in the fault's parameters spares replayed answers, so "every write's
    answer is lost once" is one fault: each write runs, loses its answer, and its retry with the
    same key gets the stored answer through.
    """
    now = sandbox.clock.time()
    fault = sandbox.faults.active(member, "drop_after", now)
    if fault is None or (replayed and fault.params.get("replays", True) is False):
        return
    if sandbox.faults.take(member, frozenset({"drop_after"}), now) is not None:
        await drop_connection(request)


async def run_batch(
    sandbox: Sandbox, portal: Portal, call_auth: Auth, calls: list[tuple[str, dict[str, Any]]], pace: Pace
) -> list[Any]:
    """3.0's batch: each call's ``result`` object in order; a failed call leaves its 3.0 error
    object (``{"error": {...}}``) in its place and the others still run."""
    counters = sandbox.counters
    counters.batches += 1
    results: list[Any] = []
    for name, query in calls:
        counters.batch_sub_calls += 1
        try:
            if name.strip().lower() == "batch":
                raise RestError(
                    "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", 405
                )
            spec = lookup(name.strip())
            if spec is None:
                raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
            _check_scope(spec, call_auth)
            check_operating(sandbox, portal, call_auth, spec.name)
            call = Call(
                sandbox=sandbox,
                portal=portal,
                auth=call_auth,
                method=spec.name,
                params=dict(query),
                in_batch=True,
            )
            result, _operating, _reset_at = await execute(sandbox, call, spec.spec, pace)
        except (RestError, V3Error) as error:
            v3 = as_v3(error)
            counters.answer(portal.member_id, f"batch:{v3.code or 'EMPTY'}")
            results.append(v3.body())
            continue
        results.append(result)
    return results
