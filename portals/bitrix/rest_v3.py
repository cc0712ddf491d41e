"""REST 3.0 (``/rest/api/``) over a Bitrix24Client: typed answers, batch and list_all.

    v3 = client.v3
    task = v3.item("tasks.task.add", {"fields": {"title": "Report", "creatorId": 1, "responsibleId": 1}})
    done = v3.flag("tasks.task.update", {"id": task["id"], "fields": {"status": "completed"}})
    for row in v3.list_all("tasks.task.list", {"select": ["id", "title"], "filter": [["id", ">", 100]]}):
        ...
    results = v3.batch([("tasks.task.get", {"id": 1}), ("tasks.task.get", {"id": 2})])

Every request goes through the client (bucket, operating-time ledger, the one retry policy and
response parser). 3.0's one success shape becomes :class:`ItemAnswer`, :class:`ItemsAnswer` or
:class:`FlagAnswer` with the ``time`` block; its one error shape becomes the exception tree's
class for the code, with ``error.validation`` on the exception. A write carries an
Idempotency-Key made once per logical call (per request of a batch) and reused on every retry,
so a write whose answer was lost is retried without being duplicated.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .batching import MAX_COMMANDS
from .calls import is_read, new_idempotency_key
from .exceptions import Bitrix24ApiError, Bitrix24RateLimited, Bitrix24ServerError, error_from_payload
from .listing import PAGE, ListAdapter, Lister
from .responses import UNEXPECTED
from .transport import Response

if TYPE_CHECKING:
    from .client import Bitrix24Client

Row = dict[str, Any]
PAGE_MAX = 1000  # tasks.task.list and its kin: pagination.limit is at most 1,000


@dataclass(frozen=True)
class Time:
    """An answer's ``time`` block: server seconds and the method's operating-time account."""

    start: float = 0.0
    finish: float = 0.0
    duration: float = 0.0
    processing: float = 0.0
    operating: float = 0.0
    operating_reset_at: float = 0.0

    @classmethod
    def of(cls, block: Mapping[str, Any]) -> Time:
        def number(key: str) -> float:
            try:
                return float(block.get(key) or 0.0)
            except (TypeError, ValueError):
                return 0.0

        return cls(**{name: number(name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ItemAnswer:
    """``result.item``: one object (get, add). ``replayed``: the stored answer of an earlier
    call with the same Idempotency-Key (the method did not run again)."""

    item: Row
    time: Time = field(default_factory=Time)
    replayed: bool = False


@dataclass(frozen=True)
class ItemsAnswer:
    """``result.items``: a page of a list."""

    items: list[Row]
    time: Time = field(default_factory=Time)
    replayed: bool = False


@dataclass(frozen=True)
class FlagAnswer:
    """``result.result``: the outcome of an update or delete."""

    value: bool
    time: Time = field(default_factory=Time)
    replayed: bool = False


Answer = ItemAnswer | ItemsAnswer | FlagAnswer


def answer_of(result: Any, *, time: Mapping[str, Any], replayed: bool = False, method: str = "") -> Answer:
    """The typed form of a 3.0 ``result`` object; raises Bitrix24ServerError for another shape."""
    when = Time.of(time)
    if isinstance(result, Mapping):
        if isinstance(result.get("item"), Mapping):
            return ItemAnswer(dict(result["item"]), when, replayed)
        if isinstance(result.get("items"), list):
            rows = [dict(r) for r in result["items"] if isinstance(r, Mapping)]
            return ItemsAnswer(rows, when, replayed)
        if isinstance(result.get("result"), bool):
            return FlagAnswer(result["result"], when, replayed)
    raise Bitrix24ServerError(UNEXPECTED, "not a REST 3.0 result (item, items or result)", method=method)


@dataclass(frozen=True)
class CallResult:
    """One call of a 3.0 batch: its answer, or the error Bitrix24 put in its place."""

    method: str
    answer: Answer | None = None
    error: Bitrix24ApiError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> Answer:
        """The answer; raises the call's error."""
        if self.error is not None:
            raise self.error
        assert self.answer is not None
        return self.answer


class RestV3:
    """REST 3.0 calls of one client (``client.v3``); cheap to make, holds no state of its own."""

    def __init__(self, client: Bitrix24Client):
        self.client = client

    def raw(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        read: bool | None = None,
    ) -> Response:
        """The whole answer of ``/rest/api/<method>``; writes get an Idempotency-Key (made once,
        kept across retries) unless ``idempotency_key`` names the call's own."""
        return self.client.call_raw(method, params, v3=True, idempotency_key=idempotency_key, read=read)

    def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        read: bool | None = None,
    ) -> Answer:
        """Run ``method`` on REST 3.0; its answer typed. Raises the exception tree's classes."""
        response = self.raw(method, params, idempotency_key=idempotency_key, read=read)
        return answer_of(response.result, time=response.time, replayed=response.replayed, method=method)

    def item(self, method: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Row:
        """``result.item`` of ``method``; Bitrix24ServerError if it answered another shape."""
        return _expect(self.call(method, params, **kwargs), ItemAnswer, method).item

    def items(self, method: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> list[Row]:
        """``result.items`` (one page) of ``method``."""
        return _expect(self.call(method, params, **kwargs), ItemsAnswer, method).items

    def flag(self, method: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> bool:
        """``result.result`` of ``method`` (update, delete)."""
        return _expect(self.call(method, params, **kwargs), FlagAnswer, method).value

    def openapi(self) -> dict[str, Any]:
        """The portal's OpenAPI document of its 3.0 methods (``rest.documentation.openapi``)."""
        payload = self.raw("rest.documentation.openapi", read=True).payload
        if not isinstance(payload.get("paths"), Mapping):
            raise Bitrix24ServerError(
                UNEXPECTED, "not an OpenAPI document", method="rest.documentation.openapi"
            )
        return payload

    def scopes(self) -> dict[str, str]:
        """Method → scope, from ``rest.scope.list``."""
        rows = self.items("rest.scope.list", read=True)
        return {str(r.get("method")): str(r.get("scope")) for r in rows if r.get("method")}

    # -- batch --------------------------------------------------------------------------------

    def batch(self, calls: Iterable[tuple[str, Mapping[str, Any] | None]]) -> list[CallResult]:
        """Any number of calls, 50 per request in 3.0's form (a JSON array of ``{method, query}``);
        results in the same order, a failed call's error in its place.

        A request holding a write carries its own Idempotency-Key, so a lost answer is retried
        without running its writes twice. Calls refused for QUERY_LIMIT_EXCEEDED or
        OPERATION_TIME_LIMIT did not run and are re-sent after the same waits as a single call.
        """
        items = [(method, dict(params or {})) for method, params in calls]
        results: list[CallResult] = []
        for start in range(0, len(items), MAX_COMMANDS):
            pending = list(range(start, min(start + MAX_COMMANDS, len(items))))
            done: dict[int, CallResult] = {}
            for attempt in itertools.count():
                chunk = [items[i] for i in pending]
                read = all(is_read(m) for m, _ in chunk)
                response = self.client._request(
                    "batch",
                    [{"method": m, "query": q} for m, q in chunk],
                    read=read,
                    v3=True,
                    idempotency_key=None if read else new_idempotency_key(),
                    ledger_methods=sorted({m for m, _ in chunk}),
                )
                parsed = self._parse_batch(response, chunk)
                for i, result in zip(pending, parsed, strict=True):
                    done[i] = result
                refused = [i for i in pending if isinstance(done[i].error, Bitrix24RateLimited)]
                if not refused or attempt >= self.client.retry.rate_limit_attempts:
                    break
                self._refused([done[i] for i in refused])
                pending = refused
            results.extend(done[i] for i in sorted(done))
        return results

    def _parse_batch(
        self, response: Response, chunk: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[CallResult]:
        answers = response.result
        if not isinstance(answers, list) or len(answers) != len(chunk):
            raise Bitrix24ServerError(UNEXPECTED, "a 3.0 batch answers one result per call", method="batch")
        key = self.client.bucket_key
        parsed = []
        for (method, _), answer in zip(chunk, answers, strict=True):
            if isinstance(answer, Mapping) and answer.get("error") not in (None, False):
                error = error_from_payload(dict(answer), method=method, member_id=key)
                self.client.metrics.error(key, error.code or type(error).__name__, method=method)
                parsed.append(CallResult(method, error=error))
                continue
            try:
                typed = answer_of(answer, time=response.time, replayed=response.replayed, method=method)
            except Bitrix24ServerError as e:
                parsed.append(CallResult(method, error=e))
                continue
            parsed.append(CallResult(method, answer=typed))
        return parsed

    def _refused(self, refused: list[CallResult]) -> None:
        """Tell the ledger and the bucket what the refusals said, as a single call's would."""
        client = self.client
        for result in refused:
            assert result.error is not None
            if result.error.code.upper() == "OPERATION_TIME_LIMIT":
                client._after_answer(
                    client.ledger.blocked, client.bucket_key, client._credential_id, result.method
                )
            else:
                client._after_answer(client.limiter.refused, client.bucket_key, client.bucket)
        client.metrics.retry(client.bucket_key, "batch_subcall_limit")

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
    ) -> Iterator[Row]:
        """Every row of a 3.0 list method, streamed and resumable, like ``Bitrix24Client.list_all``.

        ``params`` may hold ``select`` and ``filter`` (3.0's list of conditions); ``order`` and
        ``pagination`` are the traversal's: ``id`` ascending, ``filter`` ``["id", ">", last]``,
        1,000 rows a request, the ID range split into parts read in parallel. Raises ValueError
        for a filter that is not a list, or a checkpoint of another kind of traversal.
        """
        lister = V3Lister(self.client, method, dict(params or {}), parallel=parallel)
        return lister.rows(checkpoint=checkpoint, on_checkpoint=on_checkpoint, progress=progress)


def _expect(answer: Answer, kind: type[Any], method: str) -> Any:
    if not isinstance(answer, kind):
        raise Bitrix24ServerError(UNEXPECTED, f"{method} answered {type(answer).__name__}", method=method)
    return answer


class V3Lister(Lister):
    """:class:`listing.Lister`'s parallel keyset traversal, one 3.0 list call per chain.

    3.0 pages up to 1,000 rows a call, so a chain is one call of ``max_chain · PAGE`` rows rather
    than 50 back-referenced calls in a batch (3.0's batch documents no back-references).
    """

    max_chain = PAGE_MAX // PAGE
    API = 3

    def __init__(self, client: Bitrix24Client, method: str, params: dict[str, Any], *, parallel: int = 4):
        params.pop("pagination", None)
        if not isinstance(params.get("filter") or [], list):
            raise ValueError("a REST 3.0 filter is a list of conditions, e.g. [['id', '>', 5]]")
        super().__init__(client, method, params, parallel=parallel)
        self.adapter = ListAdapter(id_field="id")

    def _query(self, *, after: int | None, upto: int | None, limit: int, descending: bool = False) -> Row:
        conditions = list(self.params.get("filter") or [])
        if after is not None:
            conditions.append(["id", "<" if descending else ">", after])
        if upto is not None:
            conditions.append(["id", "<=", upto])
        query: Row = {**self.params, "order": {"id": "DESC" if descending else "ASC"}}
        query["pagination"] = {"limit": limit}
        if conditions:
            query["filter"] = conditions
        select = list(query.get("select") or [])
        if select and "id" not in select:
            query["select"] = [*select, "id"]
        return query

    def plan(self) -> dict[str, Any]:
        state = super().plan()
        state["api"] = self.API
        return state

    def probe(self) -> tuple[int, int] | None:
        v3 = RestV3(self.client)
        lo, hi = v3.batch(
            [
                (self.method, {**self._query(after=None, upto=None, limit=1), "select": ["id"]}),
                (
                    self.method,
                    {**self._query(after=None, upto=None, limit=1, descending=True), "select": ["id"]},
                ),
            ]
        )
        first = _expect(lo.unwrap(), ItemsAnswer, self.method).items
        last = _expect(hi.unwrap(), ItemsAnswer, self.method).items
        if not first:
            return None
        row_id = self.adapter.row_id
        return row_id(first[0]) - 1, row_id(last[0]) if last else row_id(first[0])

    def _chain(self, part: dict[str, Any]) -> tuple[list[Row], bool]:
        length = self._chain_length(part)
        if length == 0:
            return [], True
        after = int(part["after"])
        upto = part.get("upto")
        limit = length * PAGE
        rows = RestV3(self.client).items(
            self.method,
            self._query(after=after, upto=None if upto is None else int(upto), limit=limit),
            read=True,
        )
        row_id = self.adapter.row_id
        fresh = sorted((r for r in rows if row_id(r) > after), key=row_id)
        return fresh, len(rows) < limit

    def rows(
        self,
        *,
        checkpoint: Mapping[str, Any] | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[Row]:
        if checkpoint is not None and checkpoint.get("api") != self.API:
            raise ValueError("this checkpoint is not of a REST 3.0 traversal")
        return super().rows(checkpoint=checkpoint, on_checkpoint=on_checkpoint, progress=progress)
