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
CHAIN_SPAN = PAGE * MAX_COMMANDS  # IDs one full chain covers on a dense table


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

    # List calls in one chain at most (each reads PAGE rows).
    max_chain = MAX_COMMANDS

    def plan(self) -> dict[str, Any]:
        """A fresh checkpoint: parts [{after, upto, done}] splitting [min ID, max ID]."""
        if not self.adapter.keyset:
            return {"method": self.method, "mode": "offset", "offset": 0, "done": False}
        if self.parallel == 1:
            return {
                "method": self.method,
                "mode": "keyset",
                "parts": [{"after": 0, "upto": None, "done": False}],
            }
        ends = self.probe()
        if ends is None:
            return {"method": self.method, "mode": "keyset", "parts": []}
        return {"method": self.method, "mode": "keyset", "parts": self.split(*ends)}

    def probe(self) -> tuple[int, int] | None:
        """(lowest ID - 1, highest ID) of the rows the filter matches; None when there are none."""
        a = self.adapter
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
            return None
        return a.row_id(lo_rows[0]) - 1, a.row_id(hi_rows[0]) if hi_rows else a.row_id(lo_rows[-1])

    def split(self, low: int, high: int) -> list[dict[str, Any]]:
        """Parts covering (low, high], the last one open-ended."""
        span = max(1, high - low)
        # Twice as many parts as requests in flight (the client's slots cap those): while the
        # client parses one part's chain of rows, another part's chain already keeps the server busy.
        count = min(2 * self.parallel, max(1, span // (PAGE * self.max_chain)))
        bounds = [low + (span * i) // count for i in range(count + 1)]
        parts: list[dict[str, Any]] = [
            {"after": bounds[i], "upto": bounds[i + 1], "done": False} for i in range(count)
        ]
        # Rows added past the probed maximum while we read still belong to the run.
        parts[-1]["upto"] = None
        parts[-1]["span_hint"] = bounds[-1]
        return parts

    # -- reading ------------------------------------------------------------------------------

    @classmethod
    def _chain_length(cls, part: Mapping[str, Any]) -> int:
        """List calls in the part's next chain (0: the part is read)."""
        after = int(part["after"])
        upto = part.get("upto")
        if upto is not None and after >= int(upto):
            return 0  # IDs are unique integers: nothing can lie in (upto, upto]
        limit = upto if upto is not None else part.get("span_hint")
        if limit is not None and int(limit) > after:
            length = min(cls.max_chain, -(-(int(limit) - after) // PAGE))
            if upto is None:
                length = min(cls.max_chain, length + 1)  # the open end may have grown
            return length
        if limit is None:
            return cls.max_chain  # no bound known (a single part): full chains
        # Past the part's span (or the open end's probed maximum): one call says whether
        # rows remain, instead of a chain of calls referring to rows that don't exist.
        return 1

    def _chain(self, part: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """One batch request along a part: (rows in ID order, whether the part is finished)."""
        a = self.adapter
        after = int(part["after"])
        upto = part.get("upto")
        length = self._chain_length(part)
        if length == 0:
            return [], True

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
        work = _Work(parts, live)

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    pages.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def read_part(index: int) -> bool:
            """Read one part to its end (its ``upto`` may shrink meanwhile); False when stopped."""
            while not stop.is_set():
                # Sit out the method's operating-time pacing here, where a closed run stops the
                # wait, rather than inside the request, which would send one more chain after
                # waking for a consumer that is gone.
                delay = self.client.operating_delay(self.method)
                if delay > 0:
                    if stop.wait(delay):
                        return False
                    continue
                chain = work.next_chain(index, self._chain_length)
                if chain is None:
                    return put((index, [], work.cursor(index), True))
                rows, finished = self._chain(chain)
                rows, cut = work.arrived(index, rows, self.adapter.row_id)
                finished = finished or cut or not rows  # nothing new past the cursor: read
                if finished:
                    work.finish(index)
                if not put((index, rows, work.cursor(index), finished)) or finished:
                    return not stop.is_set()
            return False

        def reader(first: int | None) -> None:
            index = first
            try:
                while index is not None and read_part(index):
                    # Our part is read: take half of the largest unread span of a busy part, so
                    # the last requests of a run share the portal's slots instead of one part's
                    # chains running alone at the end.
                    index = work.steal()
            except BaseException as e:  # handed to the consumer, which re-raises it
                put((index if index is not None else -1, e))

        threads = [
            threading.Thread(target=reader, args=(i,), daemon=True, name=f"b24-list-{i}") for i in live
        ]
        for t in threads:
            t.start()
        try:
            while work.open():
                item = pages.get()
                if len(item) == 2:
                    raise item[1]  # type: ignore[misc]
                index, rows, after, finished = item  # type: ignore[misc]
                yield from rows
                count += len(rows)
                with work.lock:
                    parts[index]["after"] = after
                    if finished:
                        parts[index]["done"] = True
                        work.closed(index)
                    snapshot = _copy(state) if on_checkpoint is not None else None
                if progress is not None:
                    progress(count)
                if on_checkpoint is not None and snapshot is not None:
                    on_checkpoint(snapshot)
        finally:
            stop.set()  # readers blocked on the full queue notice within their put timeout


class _Work:
    """The parts of one keyset run, shared by its readers and its consumer (under ``lock``).

    ``parts`` are the checkpoint's dicts: the consumer moves their ``after`` as rows are handed
    out; a split shrinks a part's ``upto`` and appends the cut-off span as a new part, so a
    checkpoint taken at any moment still covers every unread ID exactly once. Readers keep their
    own cursor (rows read, maybe not yet consumed) and the end of their chain in flight, which a
    split never cuts into.
    """

    def __init__(self, parts: list[dict[str, Any]], live: list[int]):
        self.lock = threading.Lock()
        self.parts = parts
        self.read_after = {i: int(parts[i]["after"]) for i in live}
        self.in_flight_to: dict[int, int] = {}
        self.reading = set(live)  # parts a reader holds (not finished)
        self.unfinished = set(live)  # parts whose last page the consumer has not taken yet

    def open(self) -> bool:
        with self.lock:
            return bool(self.unfinished)

    def closed(self, index: int) -> None:
        self.unfinished.discard(index)  # caller holds the lock

    def cursor(self, index: int) -> int:
        with self.lock:
            return self.read_after[index]

    def next_chain(self, index: int, length_of: Callable[[Mapping[str, Any]], int]) -> dict[str, Any] | None:
        """The part as its next chain should see it (None: nothing left), reserving the chain's span."""
        with self.lock:
            part = self.parts[index]
            chain = {
                "after": self.read_after[index],
                "upto": part.get("upto"),
                "span_hint": part.get("span_hint"),
            }
            length = length_of(chain)
            if length == 0:
                self.reading.discard(index)
                return None
            self.in_flight_to[index] = self.read_after[index] + length * PAGE
            return chain

    def finish(self, index: int) -> None:
        """The part's reader saw its last row: no longer a part to split."""
        with self.lock:
            self.reading.discard(index)

    def arrived(
        self, index: int, rows: list[dict[str, Any]], row_id: Callable[[Mapping[str, Any]], int]
    ) -> tuple[list[dict[str, Any]], bool]:
        """Keep the rows still inside the part (a split may have moved its end); True if any were cut."""
        with self.lock:
            upto = self.parts[index].get("upto")
            kept = rows if upto is None else [r for r in rows if row_id(r) <= int(upto)]
            if kept:
                self.read_after[index] = row_id(kept[-1])
            self.in_flight_to.pop(index, None)
            cut = len(kept) < len(rows)
            if cut:
                self.reading.discard(index)
            return kept, cut

    def steal(self) -> int | None:
        """Split the busy part with the most unread IDs beyond its chain in flight; the new part's index.

        Only a part with more than one chain's span left is split (a shorter rest is one request
        either way).
        """
        with self.lock:
            best, best_span, best_from = None, CHAIN_SPAN, 0
            for i in self.reading:
                part = self.parts[i]
                end = part.get("upto")
                if end is None:
                    end = part.get("span_hint")
                if end is None:
                    continue
                start = max(self.read_after[i], self.in_flight_to.get(i, 0))
                if int(end) - start > best_span:
                    best, best_span, best_from = i, int(end) - start, start
            if best is None:
                return None
            part = self.parts[best]
            # Split on a chain boundary: both halves are whole chains (the last maybe shorter),
            # so on a dense table the split adds no request — it only runs them side by side.
            chains = -(-best_span // CHAIN_SPAN)
            mid = best_from + (chains // 2) * CHAIN_SPAN
            new: dict[str, Any] = {"after": mid, "upto": part.get("upto"), "done": False}
            if part.get("upto") is None:
                new["span_hint"] = part.get("span_hint")
                part.pop("span_hint", None)
            part["upto"] = mid
            self.parts.append(new)
            index = len(self.parts) - 1
            self.read_after[index] = mid
            self.reading.add(index)
            self.unfinished.add(index)
            return index


def _copy(state: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(state)
    if "parts" in out:
        out["parts"] = [dict(p) for p in out["parts"]]
    return out
