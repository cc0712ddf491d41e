"""list_all: every row of a list method at the physical limit, in constant memory, resumable.

Keyset traversal (order ID ASC, filter ``>ID``, ``start=-1`` so Bitrix24 skips the COUNT):
up to 50 list calls chained in one batch request, call *i* filtering ``>ID`` on the last row of
call *i-1* through a ``$result[...]`` back-reference — 2,500 rows per request. A chain is
sequential on the server, so to overlap server time the ID range [min, max] is split into parts
read in parallel, each with its own cursor in the checkpoint. Chain length is sized from the
part's remaining ID span (IDs are unique integers, so a span of n holds at most n rows): no list
call is wasted on a dense table and at most one chain's tail on a sparse one.

Methods whose paging differs get an adapter (``crm.item.list``: lower-case ``id`` and rows under
``items``; ``user.get``: ``sort``/``order`` parameters). Methods without an ID filter fall back to
offset paging (``start=0, 50, ...``), which makes Bitrix24 count and skip rows on every page.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .batching import MAX_COMMANDS
from .exceptions import Bitrix24ApiError

if TYPE_CHECKING:
    from .client import Bitrix24Client

PAGE = 50


@dataclass(frozen=True)
class ListAdapter:
    """How one list method pages: its ID field, where rows sit, how order is passed."""

    id_field: str = "ID"
    items_key: str | None = None  # rows under result[items_key] instead of result itself
    order_style: str = "order"  # "order": order={ID: ASC}; "sort": sort=ID&order=ASC (user.get)
    filter_key: str = "filter"
    keyset: bool = True

    def rows(self, result: Any) -> list[dict[str, Any]]:
        if self.items_key is not None:
            result = result.get(self.items_key, []) if isinstance(result, Mapping) else []
        if isinstance(result, Mapping):  # some methods key rows by ID
            result = list(result.values())
        return [r for r in (result or []) if isinstance(r, Mapping)]  # type: ignore[misc]

    def row_id(self, row: Mapping[str, Any]) -> int:
        return int(row.get(self.id_field, row.get(self.id_field.lower(), 0)) or 0)

    def params(
        self, base: Mapping[str, Any], *, after: Any, upto: int | None, descending: bool = False
    ) -> dict:
        params = dict(base)
        filt = dict(params.get(self.filter_key) or {})
        if after is not None:
            filt[(">" if not descending else "<") + self.id_field] = after
        if upto is not None:
            filt["<=" + self.id_field] = upto
        params[self.filter_key] = filt
        direction = "DESC" if descending else "ASC"
        if self.order_style == "sort":
            params["sort"] = self.id_field
            params["order"] = direction
        else:
            params["order"] = {self.id_field: direction}
        select = params.get("select")
        if select and "*" not in select and self.id_field not in select:
            params["select"] = [*select, self.id_field]
        params["start"] = -1
        return params

    def last_ref(self, key: str) -> str:
        path = f"[{self.items_key}]" if self.items_key else ""
        return f"$result[{key}]{path}[{PAGE - 1}][{self.id_field}]"


ADAPTERS: dict[str, ListAdapter] = {
    "crm.item.list": ListAdapter(id_field="id", items_key="items"),
    "user.get": ListAdapter(order_style="sort", filter_key="FILTER"),
    "crm.status.list": ListAdapter(keyset=False),
    "crm.currency.list": ListAdapter(keyset=False),
    "event.offline.list": ListAdapter(keyset=False),
}


def adapter_for(method: str) -> ListAdapter:
    return ADAPTERS.get(method.lower(), ListAdapter())


class Lister:
    """One list_all run; ``rows()`` is a generator (nothing is sent until it is iterated)."""

    def __init__(self, client: Bitrix24Client, method: str, params: dict[str, Any], *, parallel: int = 4):
        self.client = client
        self.method = method
        self.adapter = adapter_for(method)
        for reserved in ("order", "start", "sort"):
            params.pop(reserved, None)
        self.params = params
        self.parallel = max(1, parallel)

    # -- planning -----------------------------------------------------------------------------

    def plan(self) -> dict[str, Any]:
        """A fresh checkpoint: parts [{after, upto, done}] splitting [min ID, max ID]."""
        a = self.adapter
        if not a.keyset:
            return {"method": self.method, "mode": "offset", "offset": 0, "done": False}
        if self.parallel == 1:
            return {
                "method": self.method,
                "mode": "keyset",
                "parts": [{"after": 0, "upto": None, "done": False}],
            }
        probe = dict(self.params)
        probe["select"] = [a.id_field]
        ends = self.client.batch(
            {
                "lo": (self.method, a.params(probe, after=None, upto=None)),
                "hi": (self.method, a.params(probe, after=None, upto=None, descending=True)),
            }
        )
        lo_rows = a.rows(ends["lo"].unwrap())
        hi_rows = a.rows(ends["hi"].unwrap())
        if not lo_rows:
            return {"method": self.method, "mode": "keyset", "parts": []}
        low, high = a.row_id(lo_rows[0]) - 1, a.row_id(hi_rows[0]) if hi_rows else a.row_id(lo_rows[-1])
        span = max(1, high - low)
        # Twice as many parts as requests in flight (the client's slots cap those): while the
        # client parses one part's 2,500 rows, another part's chain already keeps the server busy.
        count = min(2 * self.parallel, max(1, span // (PAGE * MAX_COMMANDS)))
        bounds = [low + (span * i) // count for i in range(count + 1)]
        parts: list[dict[str, Any]] = [
            {"after": bounds[i], "upto": bounds[i + 1], "done": False} for i in range(count)
        ]
        # Rows added past the probed maximum while we read still belong to the run.
        parts[-1]["upto"] = None
        parts[-1]["span_hint"] = bounds[-1]
        return {"method": self.method, "mode": "keyset", "parts": parts}

    # -- reading ------------------------------------------------------------------------------

    def _chain(self, part: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """One batch request along a part: (rows in ID order, whether the part is finished)."""
        a = self.adapter
        after = int(part["after"])
        upto = part.get("upto")
        if upto is not None and after >= int(upto):
            return [], True  # IDs are unique integers: nothing can lie in (upto, upto]
        limit = upto if upto is not None else part.get("span_hint")
        if limit is not None and int(limit) > after:
            length = min(MAX_COMMANDS, -(-(int(limit) - after) // PAGE))
            if upto is None:
                length = min(MAX_COMMANDS, length + 1)  # the open end may have grown
        elif limit is None:
            length = MAX_COMMANDS  # no bound known (a single part): full chains
        else:
            # Past the part's span (or the open end's probed maximum): one call says whether
            # rows remain, instead of a chain of calls referring to rows that don't exist.
            length = 1
        commands: dict[str, tuple[str, dict[str, Any]]] = {}
        for i in range(length):
            ref: Any = after if i == 0 else a.last_ref(f"c{i - 1}")
            commands[f"c{i}"] = (self.method, a.params(self.params, after=ref, upto=upto))
        results = self.client.batch(commands, parallel=False)
        rows: list[dict[str, Any]] = []
        last = after
        for i in range(length):
            r = results[f"c{i}"]
            if r.error is not None:
                raise r.error
            page = a.rows(r.result)
            fresh = [row for row in page if a.row_id(row) > last]
            fresh.sort(key=a.row_id)
            if fresh:
                last = a.row_id(fresh[-1])
            rows.extend(fresh)
            if len(page) < PAGE:
                # Later calls in this chain referred to a row that doesn't exist: ignore them.
                return rows, True
        return rows, False

    def _offset_pages(self, state: dict[str, Any]) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any]]]:
        a = self.adapter
        params = dict(self.params)
        if a.order_style == "order" and "order" not in params:
            params["order"] = {a.id_field: "ASC"}  # a stable order so offsets don't shift
        offset = int(state["offset"])
        while True:
            first = self.client.call_raw(self.method, {**params, "start": offset}, read=True)
            total = int(first.payload.get("total") or 0)
            page = a.rows(first.result)
            starts = list(range(offset + PAGE, total, PAGE))[: MAX_COMMANDS - 1] if len(page) == PAGE else []
            pages = [page]
            if starts:
                more = self.client.batch([(self.method, {**params, "start": s}) for s in starts])
                pages += [a.rows(r.unwrap()) for r in more.values()]
            for page in pages:
                offset += len(page)
                done = len(page) < PAGE
                yield page, {**state, "offset": offset, "done": done}
                if done:
                    return

    def rows(
        self,
        *,
        checkpoint: Mapping[str, Any] | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        state = _copy(checkpoint) if checkpoint else self.plan()
        if state.get("method", self.method) != self.method:
            raise Bitrix24ApiError("INVALID_CHECKPOINT", "checkpoint belongs to another method")
        count = 0
        if on_checkpoint is not None:
            on_checkpoint(_copy(state))
        if state.get("mode") == "offset":
            if state.get("done"):
                return
            for page, new_state in self._offset_pages(state):
                yield from page
                count += len(page)
                state = new_state
                if progress is not None:
                    progress(count)
                if on_checkpoint is not None:
                    on_checkpoint(_copy(state))
            return
        parts = state["parts"]
        live = [i for i, p in enumerate(parts) if not p.get("done")]
        # Bounded queue: a slow consumer stalls the readers instead of piling rows in memory.
        pages: queue.Queue[tuple[int, list[dict[str, Any]], int, bool] | tuple[int, BaseException]] = (
            queue.Queue(maxsize=max(2, len(live)))
        )
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    pages.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def reader(index: int) -> None:
            part = dict(parts[index])
            try:
                while not stop.is_set():
                    rows, finished = self._chain(part)
                    if rows:
                        part["after"] = self.adapter.row_id(rows[-1])
                    else:
                        finished = True  # nothing new past the cursor: the part is read
                    if not put((index, rows, int(part["after"]), finished)) or finished:
                        return
            except BaseException as e:  # handed to the consumer, which re-raises it
                put((index, e))

        threads = [
            threading.Thread(target=reader, args=(i,), daemon=True, name=f"b24-list-{i}") for i in live
        ]
        for t in threads:
            t.start()
        remaining = len(threads)
        try:
            while remaining:
                item = pages.get()
                if len(item) == 2:
                    raise item[1]  # type: ignore[misc]
                index, rows, after, finished = item  # type: ignore[misc]
                yield from rows
                count += len(rows)
                parts[index]["after"] = after
                if finished:
                    parts[index]["done"] = True
                    remaining -= 1
                if progress is not None:
                    progress(count)
                if on_checkpoint is not None:
                    on_checkpoint(_copy(state))
        finally:
            stop.set()  # readers blocked on the full queue notice within their put timeout


def _copy(state: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(state)
    if "parts" in out:
        out["parts"] = [dict(p) for p in out["parts"]]
    return out
