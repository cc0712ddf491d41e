"""The REST endpoint of every portal: ``/rest/<method>[.json]`` and ``/rest/<user>/<secret>/<method>``.

Order of checks for one request (each refusal is answered before the method runs):
portal deleted → dropped-before fault → authentication (webhook secret or ``auth`` token:
invalid / expired / revoked / not installed / unpaid) → method lookup → auth type and scope →
fault storms → leaky bucket (503) → operating-time limit of the method (429; for ``batch`` per
sub-call) → added latency → the per-portal concurrency limit → the method (plus its modelled cost
as latency) → dropped-after fault → the envelope. The whole request is cut off after
``request_timeout`` seconds (60 s, as the cloud does) with a 504 page from the "front end".
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from sandbox.extensions import portal_of, sandbox_of
from sandbox.registry import Auth, Call, ListPage, MethodSpec, RestError, lookup
from sandbox.state import Sandbox, secret_digest
from sandbox.store import Portal
from sandbox.wire import (
    DropConnection,
    decode_query,
    drop_connection,
    error_response,
    json_response,
    read_params,
    time_block,
)

log = logging.getLogger("sandbox.rest")

BATCH_MAX = 50
STORM_ERRORS = {
    "query_limit": ("QUERY_LIMIT_EXCEEDED", "Too many requests", 503),
    "operation_limit": ("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429),
    "overload": ("OVERLOAD_LIMIT", "REST API is blocked due to overload", 503),
}
STORM_KINDS = frozenset(STORM_ERRORS)


async def rest_endpoint(request: Request) -> Response:
    return await answered(request, _process)


Process = Callable[[Request, Sandbox, Portal], Awaitable[Response]]


async def answered(
    request: Request,
    process: Process,
    *,
    errors: tuple[type[Exception], ...] = (RestError,),
    respond: Callable[[Any], Response] = error_response,
) -> Response:
    """Run one REST request (old or 3.0) as a portal does: counted, cut off at the request timeout,
    ``errors`` answered by ``respond`` in their address's error shape, a dropped connection dropped."""
    sandbox = sandbox_of(request)
    portal = portal_of(request)
    sandbox.counters.request(portal.member_id)
    try:
        async with asyncio.timeout(sandbox.config.request_timeout):
            response = await process(request, sandbox, portal)
    except errors as error:
        code = getattr(error, "code", "")
        sandbox.counters.answer(portal.member_id, code or "EMPTY")
        return respond(error)
    except DropConnection:
        sandbox.counters.answer(portal.member_id, "DROPPED")
        sandbox.counters.dropped[portal.member_id] += 1
        raise
    except TimeoutError:
        sandbox.counters.answer(portal.member_id, "TIMEOUT")
        return HTMLResponse("<html><body><h1>504 Gateway Time-out</h1></body></html>", status_code=504)
    sandbox.counters.answer(portal.member_id, "OK")
    return response


def parse_path(path: str) -> tuple[str, tuple[int, str] | None]:
    """``crm.deal.get.json`` → (method, None); ``1/secret/crm.deal.get`` → (method, (1, secret))."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if len(parts) == 1 and parts[0]:
        return _strip_format(parts[0]), None
    if len(parts) == 3 and parts[0].isdigit() and parts[2]:
        return _strip_format(parts[2]), (int(parts[0]), parts[1])
    raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)


def _strip_format(name: str) -> str:
    for suffix in (".json", ".xml"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def authenticate(
    sandbox: Sandbox, portal: Portal, params: dict[str, Any], webhook: tuple[int, str] | None
) -> Auth:
    now = sandbox.clock.time()
    if webhook is not None:
        user_id, secret = webhook
        for (hook_user, hook_secret), hook in portal.webhooks.items():
            if hook_user == user_id and hmac.compare_digest(hook_secret.encode(), secret.encode()):
                if hook.expires is not None and now >= hook.expires:
                    break
                user = portal.users.get(user_id)
                if user is None or not user.get("ACTIVE"):
                    break
                return Auth(kind="webhook", user_id=user_id, scope=frozenset(hook.scope), webhook=hook)
        raise RestError("INVALID_CREDENTIALS", "Invalid request credentials", 403)
    value = params.pop("auth", None)
    if not value or not isinstance(value, str):
        raise RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
    revoked = sandbox.faults.take(portal.member_id, frozenset({"revoked"}), now)
    if revoked is not None:
        code = revoked.params.get("code", "invalid_token")
        description = (
            "Wrong authorization data" if code == "NO_AUTH_FOUND" else "Unable to get application by token"
        )
        raise RestError(code, description, 401)
    token = sandbox.tokens.get(value)
    if token is None or token.member_id != portal.member_id:
        raise RestError("invalid_token", "Unable to get application by token", 401)
    app = portal.apps.get(token.client_id)
    if app is None or not app.present:
        raise RestError("NOT_INSTALLED", "Application not installed", 401)
    if not token.access_valid:
        raise RestError("invalid_token", "Unable to get application by token", 401)
    if now >= token.expires:
        raise RestError("expired_token", "The access token provided has expired", 401)
    if app.payment_expired:
        raise RestError("PAYMENT_REQUIRED", "Subscription has been ended", 401)
    return Auth(kind="oauth", user_id=token.user_id, scope=frozenset(token.scope), token=token, app=app)


def check_access(spec: MethodSpec, call_auth: Auth, portal: Portal) -> None:
    if spec.app_only and not call_auth.is_app:
        raise RestError(
            "WRONG_AUTH_TYPE",
            "Current authorization type is denied for this method Application context required",
            403,
        )
    if not spec.granted(call_auth.scope):
        holder = "access token" if call_auth.is_app else "webhook token"
        raise RestError(
            "insufficient_scope", f"The request requires higher privileges than provided by the {holder}", 403
        )
    if spec.admin_only:
        user = portal.users.get(call_auth.user_id, {})
        if call_auth.user_id != portal.admin_user_id and not user.get("IS_ADMIN"):
            raise RestError("ACCESS_DENIED", "Access denied!", 403)


def caller_key(call_auth: Auth) -> str:
    """Who the operating-time limit is kept for: the app, or the webhook (never its secret)."""
    if call_auth.app is not None:
        return call_auth.app.client_id
    assert call_auth.webhook is not None
    return f"webhook:{call_auth.webhook.user_id}:{secret_digest(call_auth.webhook.secret)}"


async def _process(request: Request, sandbox: Sandbox, portal: Portal) -> Response:
    now = sandbox.clock.time()
    faults = sandbox.faults
    if portal.deleted or faults.take(portal.member_id, frozenset({"deleted"}), now):
        raise RestError("PORTAL_DELETED", "Portal was deleted", 500)
    if faults.take(portal.member_id, frozenset({"drop_before"}), now):
        await drop_connection(request)
    method_name, webhook = parse_path(request.path_params["path"])
    params = await read_params(request)
    call_auth = authenticate(sandbox, portal, params, webhook)
    is_batch = method_name.lower() == "batch"
    spec = None if is_batch else lookup(method_name)
    if not is_batch and spec is None:
        raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    if spec is not None:
        check_access(spec, call_auth, portal)
    storm = faults.take(portal.member_id, STORM_KINDS, now)
    if storm is not None:
        raise RestError(*STORM_ERRORS[storm.kind])
    drain, burst = sandbox.drain_burst(portal)
    if not sandbox.bucket(portal).admit(now, drain, burst):
        raise RestError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)
    if spec is not None:
        check_operating(sandbox, portal, call_auth, spec.name)
    latency = faults.take(portal.member_id, frozenset({"latency"}), now)
    if latency is not None:
        await asyncio.sleep(float(latency.params.get("delay", 1.0)))

    start = sandbox.clock.time()
    counters = sandbox.counters
    async with sandbox.semaphore(portal):
        counters.enter(portal.member_id)
        try:
            processing_started = time.perf_counter()
            pace = Pace(processing_started)
            if is_batch:
                body = await run_batch(sandbox, portal, call_auth, params, pace)
            else:
                assert spec is not None
                call = Call(sandbox=sandbox, portal=portal, auth=call_auth, method=spec.name, params=params)
                result, operating, reset_at = await execute(sandbox, call, spec, pace)
                body = envelope(result)
            processing = time.perf_counter() - processing_started
        finally:
            counters.leave(portal.member_id)
    if faults.take(portal.member_id, frozenset({"drop_after"}), sandbox.clock.time()):
        await drop_connection(request)
    finish = sandbox.clock.time()
    if is_batch:
        operating, reset_at = 0.0, finish + sandbox.config.operating_window
    body["time"] = time_block(start, finish, processing, operating, reset_at)
    return json_response(body)


def envelope(result: Any) -> dict[str, Any]:
    if isinstance(result, ListPage):
        body: dict[str, Any] = {"result": result.rows}
        if result.next is not None:
            body["next"] = result.next
        body["total"] = result.total
        return body
    return {"result": result}


def check_operating(sandbox: Sandbox, portal: Portal, call_auth: Auth, method_name: str) -> None:
    config = sandbox.config
    meter = sandbox.operating.meter(portal.member_id, caller_key(call_auth), method_name)
    if meter.total(sandbox.clock.time(), config.operating_window) >= config.operating_limit:
        raise RestError("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429)


class Pace:
    """The modelled end of one request's stay in its portal's concurrency slot.

    Each call (a batch's sub-calls in turn) pushes the deadline by its modelled server time, and
    the request sleeps until the deadline: the slot lasts the model's time, not the model's time
    *plus* the emulator's own Python work (parsing, row building, back-references), which a real
    portal does not add on top of its server time. Work cheaper than the model is absorbed; work
    dearer than it (a starved machine) shows as the overrun it is. Sleeping to a deadline rather
    than per call also keeps the event loop's wake-up lateness from adding up over 50 sub-calls.
    """

    __slots__ = ("deadline",)

    def __init__(self, started: float):
        self.deadline = started

    async def spend(self, seconds: float) -> None:
        self.deadline += seconds
        remaining = self.deadline - time.perf_counter()
        if remaining > 0:
            await asyncio.sleep(remaining)


async def execute(
    sandbox: Sandbox, call: Call, spec: MethodSpec, pace: Pace | None = None
) -> tuple[Any, float, float]:
    """Run one method with its modelled cost; return (result, operating, operating_reset_at).

    The modelled server time (cost model x scale) is charged to the method's operating meter, and
    the request holds its concurrency slot until that time has passed since the slot was taken
    (``pace``; the emulator's own processing counts towards it instead of coming on top). The
    handler's CPU time is never charged: benchmarks compute the physical limit from the documented
    model alone.
    """
    config = sandbox.config
    member_id = call.portal.member_id
    started_at = sandbox.clock.time()
    call.charge(config.cost.per_call)
    try:
        result = await spec.run(call)
    finally:
        if spec.write:
            sandbox.counters.writes[member_id][spec.name] += 1
            call.charge(config.cost.per_write * max(1, len(call.changes)))
        seconds = call.cost * config.cost.scale
        if pace is None:
            pace = Pace(time.perf_counter())
        if seconds > 0:
            await pace.spend(seconds)
        sandbox.counters.calls[member_id][spec.name] += 1
        sandbox.counters.operating[member_id][spec.name] += seconds
        meter = sandbox.operating.meter(member_id, caller_key(call.auth), spec.name)
        meter.add(started_at, seconds)
    now = sandbox.clock.time()
    operating = meter.total(now, config.operating_window)
    reset_at = meter.reset_at(now, config.operating_window) or now + config.operating_window
    return result, operating, reset_at


# --- batch ----------------------------------------------------------------------------------

_REFERENCE = re.compile(r"\$result\[([^\]]*)\]((?:\[[^\]]*\])*)")


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "y", "yes")


def _resolve(results: dict[str, Any], key: str, path: str) -> Any:
    value: Any = results.get(key)
    for part in re.findall(r"\[([^\]]*)\]", path):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def substitute(value: Any, results: dict[str, Any]) -> Any:
    """Replace ``$result[key][field]...`` back-references with earlier sub-call results."""
    if isinstance(value, dict):
        return {k: substitute(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, results) for v in value]
    if not isinstance(value, str) or "$result[" not in value:
        return value
    whole = _REFERENCE.fullmatch(value)
    if whole:
        resolved = _resolve(results, whole.group(1), whole.group(2))
        return "" if resolved is None else resolved

    def text(match: re.Match[str]) -> str:
        resolved = _resolve(results, match.group(1), match.group(2))
        return "" if resolved is None or isinstance(resolved, dict | list) else str(resolved)

    return _REFERENCE.sub(text, value)


def _section(items: dict[str, Any], as_list: bool) -> Any:
    """PHP serialises an empty array as [] and a 0..n-1 keyed one as a list."""
    if not items:
        return []
    if as_list and list(items) == [str(i) for i in range(len(items))]:
        return list(items.values())
    return items


async def run_batch(
    sandbox: Sandbox, portal: Portal, call_auth: Auth, params: dict[str, Any], pace: Pace
) -> dict[str, Any]:
    commands = params.get("cmd")
    if isinstance(commands, list):
        as_list, pairs = True, [(str(i), c) for i, c in enumerate(commands)]
    elif isinstance(commands, dict):
        as_list, pairs = False, [(str(k), c) for k, c in commands.items()]
    else:
        raise RestError(
            "ERROR_BATCH_LENGTH_EXCEEDED" if commands else "INVALID_ARG_VALUE",
            "Parameter 'cmd' is empty",
            400,
        )
    if len(pairs) > BATCH_MAX:
        raise RestError("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded", 400)
    halt = _truthy(params.get("halt", 0))
    counters = sandbox.counters
    counters.batches += 1
    results: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    totals: dict[str, Any] = {}
    nexts: dict[str, Any] = {}
    times: dict[str, Any] = {}
    for key, command in pairs:
        counters.batch_sub_calls += 1
        started = sandbox.clock.time()
        processing_started = time.perf_counter()
        try:
            text = str(command)
            name, _, query = text.partition("?")
            sub_params = substitute(decode_query(query), results)
            sub_params.pop("auth", None)
            if name.strip().lower() == "batch":
                raise RestError(
                    "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", 405
                )
            spec = lookup(name.strip())
            if spec is None:
                raise RestError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
            if not spec.batchable:
                raise RestError(
                    "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", 405
                )
            check_access(spec, call_auth, portal)
            check_operating(sandbox, portal, call_auth, spec.name)
            call = Call(
                sandbox=sandbox,
                portal=portal,
                auth=call_auth,
                method=spec.name,
                params=sub_params,
                in_batch=True,
            )
            result, operating, reset_at = await execute(sandbox, call, spec, pace)
        except RestError as error:
            errors[key] = {"error": error.code, "error_description": error.description, **error.extra}
            counters.answer(portal.member_id, f"batch:{error.code or 'EMPTY'}")
            if halt:
                break
            continue
        if isinstance(result, ListPage):
            results[key] = result.rows
            totals[key] = result.total
            if result.next is not None:
                nexts[key] = result.next
        else:
            results[key] = result
        finish = sandbox.clock.time()
        times[key] = time_block(
            started, finish, time.perf_counter() - processing_started, operating, reset_at
        )
    return {
        "result": {
            "result": _section(results, as_list),
            "result_error": _section(errors, as_list),
            "result_total": _section(totals, as_list),
            "result_next": _section(nexts, as_list),
            "result_time": _section(times, as_list),
        }
    }
