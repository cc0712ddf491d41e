"""Bitrix24Client: every REST call of the app, for one portal, with limits and retries inside.

Sync API, thread-safe; concurrency inside where throughput needs it (batch chunks, list parts).
Each request: wait for the method's operating-time ledger, reserve a slot in the portal's
leaky bucket, POST through the transport, record time/metrics. Retries are split by cause and
bounded (``RetryPolicy``):

* QUERY_LIMIT_EXCEEDED (refused before running): mark the bucket full, wait, retry.
* OPERATION_TIME_LIMIT: block that method until its reset, retry.
* expired_token: refresh once (single-flight in the credentials), retry.
* network errors / 5xx: retry reads after ``RetryPolicy.backoff`` (exponential, full jitter: the
  one policy of :mod:`.retry`); a write whose outcome is unknown is retried only with an
  Idempotency-Key (REST 3.0) or when the request provably never left (connection refused);
  otherwise Bitrix24WriteOutcomeUnknown.
* OVERLOAD_LIMIT, other 4xx, permanent auth errors: raised at once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .batching import (
    MAX_COMMANDS,
    BatchResult,
    CommandResult,
    encode_command,
    normalise_commands,
    parse_batch,
    references,
    resolve,
)
from .calls import check_idempotency_key, is_read, new_idempotency_key
from .credentials import Credentials
from .exceptions import (
    Bitrix24ApiError,
    Bitrix24InvalidToken,
    Bitrix24PortalUnavailable,
    Bitrix24RateLimited,
    Bitrix24ServerError,
    Bitrix24TokenExpired,
    Bitrix24TransportError,
    Bitrix24WriteOutcomeUnknown,
)
from .limiter import BucketParams, Limiter, LocalLimiter, SharedStateUnavailable, plan_params, redis_failures
from .listing import Lister
from .metrics import Metrics
from .operating import OperatingLedger
from .rest_v3 import RestV3
from .retry import Backoff
from .slots import LocalSlots, Slots
from .transport import Response, Transport

logger = logging.getLogger("portals.bitrix.client")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds: retries per call for each cause; ``backoff`` between transient failures.

    The wait before transient retry ``n`` (from 0) is uniform in [0, min(30, 0.5 * 2**n)] s (full
    jitter: threads and processes that failed together spread out). Rate-limit retries wait for
    the bucket or the operating-time reset instead.
    """

    rate_limit_attempts: int = 8
    transient_attempts: int = 5
    backoff: Backoff = Backoff(base=0.5, cap=30.0, jitter="full")
    max_operating_wait: float = 660.0  # longer than one full 10-minute window: then give up


def credential_id(credentials: Credentials) -> str:
    """Who Bitrix24 counts operating time for: the app, or this particular webhook."""
    if credentials.access_token() is None:
        return "wh-" + hashlib.sha256(credentials.endpoint().encode()).hexdigest()[:16]
    return "app"


class Bitrix24Client:
    """Calls one portal. Share one instance across threads; build one per portal.

    ``limiter`` defaults to an in-process bucket, ``ledger`` to an in-process ledger; pass the
    Redis-backed ones to share them across processes (portals.services.client does).
    ``concurrency`` is how many requests the portal processes at once; the client keeps up to
    ``concurrency + queued`` in flight (and ``slots`` makes that the portal's cap across every
    client and process), so a request is already waiting at the portal when one
    finishes — its slot never sits idle while an answer travels back and the next request is
    built and sent (about 5% of a list traversal's time otherwise). ``queued=0`` for exactly
    ``concurrency`` in flight.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        transport: Transport | None = None,
        limiter: Limiter | None = None,
        ledger: OperatingLedger | None = None,
        metrics: Metrics | None = None,
        retry: RetryPolicy | None = None,
        bucket: BucketParams | None = None,
        concurrency: int = 4,
        queued: int = 1,
        slots: Slots | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.credentials = credentials
        self.transport = transport or Transport()
        self.limiter: Limiter = limiter or LocalLimiter()
        self.ledger = ledger or OperatingLedger()
        self.metrics = metrics or Metrics()
        self.retry = retry or RetryPolicy()
        self.bucket = bucket or plan_params(credentials.plan)
        self.concurrency = max(1, concurrency)
        self.in_flight = self.concurrency + max(0, queued)
        self._slots = threading.BoundedSemaphore(self.in_flight)
        # The portal's cap across clients and processes (shared_client passes the Redis one).
        self.slots: Slots = slots or LocalSlots()
        self._sleep = sleep
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._credential_id = credential_id(credentials)

    @property
    def bucket_key(self) -> str:
        return self.credentials.bucket_key

    @property
    def v3(self) -> RestV3:
        """REST 3.0 over this client: typed results, batch and list_all (:mod:`.rest_v3`)."""
        return RestV3(self)

    def __repr__(self) -> str:
        return f"Bitrix24Client(bucket={self.bucket_key!r})"

    # -- one request --------------------------------------------------------------------------

    def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        v3: bool = False,
        idempotency_key: str | None = None,
        read: bool | None = None,
    ) -> Any:
        """Run ``method`` and return its ``result``; raises the exception tree's classes.

        ``read`` overrides the read/write guess (reads are retried on ambiguous failures). On
        REST 3.0 (``v3=True``) writes get an Idempotency-Key (``idempotency_key`` or a fresh one,
        kept across retries) so an ambiguous failure is retried without duplicating the write;
        ValueError for an ``idempotency_key`` that isn't 1–255 printable ASCII characters.
        For typed 3.0 answers, batch and list_all use :attr:`v3`.
        """
        return self.call_raw(method, params, v3=v3, idempotency_key=idempotency_key, read=read).result

    def call_raw(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        v3: bool = False,
        idempotency_key: str | None = None,
        read: bool | None = None,
    ) -> Response:
        """Like :meth:`call`, returning the whole envelope (``next``, ``total``, ``time``)."""
        reading = is_read(method) if read is None else read
        if v3 and not reading:
            idempotency_key = new_idempotency_key() if idempotency_key is None else idempotency_key
            check_idempotency_key(idempotency_key)
        return self._request(method, dict(params or {}), read=reading, v3=v3, idempotency_key=idempotency_key)

    def _request(
        self,
        method: str,
        params: dict[str, Any] | list[Any],
        *,
        read: bool,
        v3: bool = False,
        idempotency_key: str | None = None,
        ledger_methods: Iterable[str] = (),
    ) -> Response:
        limited = transient = 0
        refreshed = reloaded = False
        waited = 0.0
        key = self.bucket_key
        paced = [method, *ledger_methods] if method != "batch" else list(ledger_methods)
        while True:
            # Operating pacing first, without holding a slot: other methods keep flowing.
            for m in paced:
                delay = self.operating_delay(m)
                if delay > self.retry.max_operating_wait:
                    raise Bitrix24RateLimited(
                        "OPERATION_TIME_LIMIT", f"{m} blocked for {delay:.0f}s", method=m, member_id=key
                    )
                if delay > 0:
                    logger.info("bitrix.operating.pace", extra={"portal": key, "method": m, "wait": delay})
                    self._sleep(delay)
                    waited += delay
            with self._slots, self.slots.hold(key, self.in_flight):
                # Reserve only once a slot is ours, so queued threads don't hold reservations.
                wait = self.limiter.reserve(key, self.bucket)
                if wait > 0:
                    self._sleep(wait)
                    waited += wait
                stale = self.credentials.access_token()
                try:
                    response = self.transport.post(
                        self.credentials,
                        method,
                        params,
                        token=stale,
                        v3=v3,
                        idempotency_key=idempotency_key,
                        member_id=key,
                    )
                except Bitrix24ApiError as e:
                    self.metrics.error(key, e.code or type(e).__name__, method=method, status=e.status)
                    error: Exception = e
                except Bitrix24TransportError as e:
                    self.metrics.error(key, type(e).__name__, method=method)
                    error = e
                else:
                    operating = self._record_time(method, response.time)
                    self.metrics.call(key, method, latency=response.latency, wait=waited, operating=operating)
                    return response
            # Outside the slot: decide and wait without holding a connection slot.
            if isinstance(error, Bitrix24RateLimited):
                limited += 1
                if limited > self.retry.rate_limit_attempts:
                    raise error
                if error.code.upper() == "OPERATION_TIME_LIMIT":
                    self.metrics.retry(key, "operating")
                    with redis_failures("operating-time ledger"):  # the refused call did not run
                        self.ledger.blocked(key, self._credential_id, method)
                else:
                    self.metrics.retry(key, "query_limit")
                    self.limiter.refused(key, self.bucket)
                    logger.warning("bitrix.limit.refused", extra={"portal": key, "method": method})
                continue
            if isinstance(error, Bitrix24TokenExpired):
                if refreshed:
                    raise error
                refreshed = True
                self.metrics.retry(key, "refresh")
                self.credentials.refresh(stale)
                continue
            if isinstance(error, Bitrix24InvalidToken) and not reloaded and stale is not None:
                # Another process may have rotated the pair while this request was in flight (on
                # portals where the rotation kills the old access token), and may not have
                # committed the new pair yet: wait for a rotation in progress (never start one),
                # and retry once with the stored token before treating the refusal as permanent.
                reloaded = True
                self.credentials.settle(stale)
                if self.credentials.access_token() != stale:
                    self.metrics.retry(key, "reload")
                    continue
                raise error
            if isinstance(error, Bitrix24PortalUnavailable):
                self.credentials.unavailable(error)
                raise error
            if isinstance(error, Bitrix24TransportError | Bitrix24ServerError):
                never_sent = isinstance(error, Bitrix24TransportError) and not error.sent
                # With a key, the retry below is sent only now, after this attempt answered or
                # timed out: two attempts of one key never overlap (two at once may both run).
                if not (read or idempotency_key or never_sent):
                    raise Bitrix24WriteOutcomeUnknown(method, error) from error
                transient += 1
                if transient > self.retry.transient_attempts:
                    raise error
                self.metrics.retry(key, "transient")
                asked = getattr(error, "retry_after", None)  # a 503's Retry-After, say
                pause = self.retry.backoff.delay(transient - 1, retry_after=asked)
                logger.info(
                    "bitrix.retry.transient",
                    extra={"portal": key, "method": method, "attempt": transient, "wait": pause},
                )
                self._sleep(pause)
                continue
            raise error

    def operating_delay(self, method: str) -> float:
        """Seconds ``method`` is paced for now (0 unless near its operating limit or blocked).

        Raises SharedStateUnavailable when the ledger's Redis fails.
        """
        with redis_failures("operating-time ledger"):
            return self.ledger.delay(self.bucket_key, self._credential_id, method)

    def _record_time(self, method: str, time_info: Mapping[str, Any]) -> float:
        if method == "batch":
            return 0.0
        self._after_answer(self.ledger.record, self.bucket_key, self._credential_id, method, dict(time_info))
        return float(time_info.get("duration") or time_info.get("processing") or 0.0)

    def _after_answer(self, update: Callable[..., object], *args: Any) -> None:
        """Feed what an answer said into the shared ledger or bucket; a Redis failure is logged.

        Bitrix24 has run the call by now: raising would report an executed write as failed (and
        invite a duplicate). Pacing is advisory, and the next call's delay/reserve raises
        SharedStateUnavailable for as long as Redis stays down.
        """
        try:
            with redis_failures("operating-time ledger"):
                update(*args)
        except SharedStateUnavailable as e:
            logger.warning(
                "bitrix.shared_state.unavailable", extra={"portal": self.bucket_key, "error": str(e)}
            )

    # -- batch --------------------------------------------------------------------------------

    def batch(
        self,
        commands: Mapping[str, tuple[str, Mapping[str, Any] | None]]
        | Iterable[tuple[str, Mapping[str, Any] | None]],
        *,
        halt: bool = False,
        parallel: bool = True,
    ) -> BatchResult:
        """Run any number of commands, 50 per request; one result (or error) per command key.

        ``commands``: {key: (method, params)} or [(method, params)] (keys "0", "1", ...).
        ``$result[key][...]`` back-references work across chunks (resolved locally from earlier
        chunks). One failing command never hides the others' results; with ``halt`` the batch
        stops at the first failure and later commands come back with ``ran=False``. Sub-calls
        refused for QUERY_LIMIT_EXCEEDED/OPERATION_TIME_LIMIT are re-sent (with the commands that
        depend on them), like top-level calls. Chunks without back-references run in parallel
        (bounded by the requests in flight) unless ``parallel=False`` or ``halt``.
        """
        items = normalise_commands(commands)
        chunks = [items[i : i + MAX_COMMANDS] for i in range(0, len(items), MAX_COMMANDS)]
        done: BatchResult = BatchResult()
        linked = any(references(p) for _, _, p in items)
        if len(chunks) > 1 and parallel and not halt and not linked:
            for part in self._executor().map(lambda c: self._run_chunk(c, {}, halt=False), chunks):
                done.update(part)
        else:
            stopped = False
            for chunk in chunks:
                if stopped:
                    for key, method, _ in chunk:
                        done[key] = CommandResult(key, method, ok=False, ran=False)
                    continue
                part = self._run_chunk(chunk, done, halt=halt)
                done.update(part)
                stopped = halt and any(r.error is not None for r in part.values())
        ordered = BatchResult()
        for key, _, _ in items:
            ordered[key] = done[key]
        return ordered

    def _executor(self) -> ThreadPoolExecutor:
        # One pool per client, kept: its threads keep their HTTP sessions (and TLS connections).
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.in_flight, thread_name_prefix="b24-batch")
            return self._pool

    def close(self) -> None:
        """Stop the client's worker threads (idle ones; running chunks finish first); flush metrics."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        self.metrics.flush()

    def _run_chunk(
        self,
        chunk: list[tuple[str, str, dict[str, Any]]],
        earlier: Mapping[str, CommandResult],
        *,
        halt: bool,
    ) -> dict[str, CommandResult]:
        results: dict[str, CommandResult] = {}
        pending = chunk
        for _round in range(self.retry.rate_limit_attempts + 1):
            context = {**earlier, **{k: r for k, r in results.items() if r.ok}}
            cmd = {key: encode_command(method, resolve(params, context)) for key, method, params in pending}
            read = all(is_read(method) for _, method, _ in pending)
            methods = {method for _, method, _ in pending}
            response = self._request(
                "batch", {"halt": 1 if halt else 0, "cmd": cmd}, read=read, ledger_methods=sorted(methods)
            )
            envelope = response.result if isinstance(response.result, dict) else {}
            parsed = parse_batch(envelope, [(k, m) for k, m, _ in pending])
            # Sub-calls run in order and ``operating`` is cumulative, so the last report of each
            # method supersedes the earlier ones: one ledger write per method, not per sub-call.
            latest: dict[str, dict[str, Any]] = {}
            spent: dict[str, float] = {}
            for r in parsed:
                if r.time:
                    method = r.method.lower()
                    latest[method] = r.time
                    spent[method] = spent.get(method, 0.0) + float(r.time.get("duration") or 0.0)
                if r.error is not None:
                    code = r.error.code or type(r.error).__name__
                    self.metrics.error(self.bucket_key, code, method=r.method, status=r.error.status)
                results[r.key] = r
            for method, time_info in latest.items():
                self._after_answer(
                    self.ledger.record, self.bucket_key, self._credential_id, method, time_info
                )
                self.metrics.operating(self.bucket_key, method, spent[method])
            limited = {r.key for r in parsed if isinstance(r.error, Bitrix24RateLimited)}
            if not limited or halt:
                return results
            # Re-send refused commands and whatever referred to them (those ran on a missing value).
            redo = set(limited)
            for key, _, params in pending:
                if references(params) & redo:
                    redo.add(key)
            for key in redo:
                err = results[key].error
                if isinstance(err, Bitrix24RateLimited) and err.code.upper() == "OPERATION_TIME_LIMIT":
                    method = results[key].method
                    self._after_answer(self.ledger.blocked, self.bucket_key, self._credential_id, method)
                elif isinstance(err, Bitrix24RateLimited):
                    self._after_answer(self.limiter.refused, self.bucket_key, self.bucket)
            self.metrics.retry(self.bucket_key, "batch_subcall_limit")
            pending = [c for c in pending if c[0] in redo]
        return results

    # -- listing ------------------------------------------------------------------------------

    def list_all(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        parallel: int = 4,
        checkpoint: Mapping[str, Any] | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every row of a list method, streamed (see :mod:`listing` for the traversal).

        ``params`` may hold ``filter`` and ``select`` (and the method's own parameters, such as
        ``entityTypeId``); ``order``/``start`` are the traversal's. Rows of parallel parts
        interleave (each part is in ID order). ``on_checkpoint`` receives a JSON-able state after
        each page has been consumed; pass it back as ``checkpoint`` to resume.
        """

        lister = Lister(self, method, dict(params or {}), parallel=parallel)
        return lister.rows(checkpoint=checkpoint, on_checkpoint=on_checkpoint, progress=progress)
