"""Client benchmark: our Bitrix24 client against the sandbox with standard limits and default costs.

    .venv/bin/python bench/client_run.py            # every scenario (about 15 minutes)
    .venv/bin/python bench/client_run.py --quick    # smaller sizes, a few minutes
    .venv/bin/python bench/client_run.py --only read100k,update5k

Starts its own SandboxServer (standard plan: drain 2/s, burst 50; at most 4 requests processed at
once per portal; default cost model), runs each scenario bounded in time and prints one table:
the figure, the physical limit computed from the sandbox's parameters (formula in the row), and
the ratio. Speed is never asserted: this prints, the tests prove behaviour.

The physical limits (c = the sandbox's CostModel, P = concurrency, d = drain/s, b = burst):
  * a list call of 50 rows costs  t_l = c.per_call + 50·c.per_row  of server time;
  * an update costs               t_u = c.per_call + c.per_write;
  * R batch requests of 50 calls each (T = 50·t server-seconds apiece) take at least the finish
    time of the best schedule under every constraint at once (``bound_seconds``): request k is
    admitted by the bucket at (k + 1 − b)/d at the earliest, the server runs P requests at once,
    each holds its slot T — roughly max(R·T/P, (R − b)/d + T);
  * the operating limit allows L seconds of server time per method per window W: a run whose
    server time S passes L takes at least W + (S − L)/P; a long run of one method is bounded by
    L/W server-seconds per second.
The "measured server time" rows apply the same bound to the server time the sandbox reported
(the cost model exactly, unless the machine starved the sandbox).

Redis (for the shared bucket across processes): REDIS_URL, default redis://127.0.0.1:6379/0, keys
under the prefix "bench-client:" (deleted before each scenario).
"""

from __future__ import annotations

import argparse
import heapq
import math
import multiprocessing
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from portals.bitrix.client import Bitrix24Client  # noqa: E402
from portals.bitrix.credentials import WebhookCredentials  # noqa: E402
from portals.bitrix.limiter import BucketParams, LocalLimiter, RedisLimiter  # noqa: E402
from portals.bitrix.operating import OperatingLedger  # noqa: E402
from portals.bitrix.transport import Transport, TransportConfig  # noqa: E402
from sandbox.config import Config, CostModel  # noqa: E402
from sandbox.testing import SandboxServer  # noqa: E402

PREFIX = "bench-client:"
COST = CostModel()
CONF = Config()
P = CONF.concurrency
DRAIN, BURST = 2.0, 50
T_LIST = COST.per_call + 50 * COST.per_row
T_UPDATE = COST.per_call + COST.per_write


@dataclass
class Row:
    scenario: str
    figure: float
    unit: str
    limit: float | None = None
    formula: str = ""
    notes: str = ""
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        if self.limit is None or not self.figure:
            return None
        return self.figure / self.limit if self.higher_is_better else self.limit / self.figure


@dataclass
class Bench:
    sandbox: SandboxServer
    redis_url: str
    rows: list[Row] = field(default_factory=list)

    def fresh(self, *, deals: int, portal: int = 1) -> tuple[str, str]:
        """Reset the world, seed ``deals``, clear our Redis keys; returns (webhook url, member_id)."""
        self.sandbox.reset()
        member = self.sandbox.portal(portal)["member_id"]
        self.sandbox.control("seed", member_id=member, deals=deals)
        conn = redis.Redis.from_url(self.redis_url)
        for key in conn.scan_iter(match=f"{PREFIX}*", count=1000):
            conn.delete(key)
        return self.sandbox.control("webhook", member_id=member)["url"], member

    def client(self, url: str, member: str, **kwargs: Any) -> Bitrix24Client:
        return make_client(url, member, self.sandbox.ca_bundle, self.redis_url, **kwargs)

    def answers(self, member: str) -> dict[str, int]:
        return self.sandbox.counters()["answers"]["by_portal"].get(member, {})

    def server_seconds(self, member: str, method: str) -> float:
        return float(self.sandbox.counters()["operating_seconds"].get(member, {}).get(method, 0.0))


def make_client(
    url: str,
    member: str,
    ca: str,
    redis_url: str,
    *,
    ledger: OperatingLedger | None = None,
    concurrency: int = P,
    shared: bool = True,
) -> Bitrix24Client:
    conn = redis.Redis.from_url(redis_url) if shared else None
    return Bitrix24Client(
        WebhookCredentials(url, member_id=member),
        transport=Transport(TransportConfig(ca_bundle=ca)),
        limiter=RedisLimiter(conn, prefix=PREFIX) if conn is not None else LocalLimiter(),
        ledger=ledger or OperatingLedger(redis=conn, prefix=PREFIX),
        bucket=BucketParams(DRAIN, BURST),
        concurrency=concurrency,
    )


def bound_seconds(requests: int, per_request: float) -> float:
    """The least time R requests of ``per_request`` server-seconds each can take on one portal.

    Every binding constraint at once, not the larger of two separate bounds: request k (0-based)
    cannot be admitted by the bucket before (k + 1 − b)/d, cannot start before one of the P
    server slots is free, and holds its slot ``per_request`` seconds; requests go in admission
    order (optimal for equal requests). The answer is the last finish — so past the burst the
    last request's own server time counts too (500k: (200 − 50)/2 + 1.5 = 76.5 s, not 75).
    One method's server time S beyond the operating limit L waits for the window:
    at least W + (S − L)/P.
    """
    slots = [0.0] * P
    for k in range(requests):
        admitted = max(0.0, (k + 1 - BURST) / DRAIN)
        start = max(admitted, heapq.heappop(slots))
        heapq.heappush(slots, start + per_request)
    finish = max(slots)
    server = requests * per_request
    if server > CONF.operating_limit:
        finish = max(finish, CONF.operating_window + (server - CONF.operating_limit) / P)
    return finish


def measured_bound(server: float, requests: int) -> float:
    """The same bound for the server time the sandbox really spent (its per-request average)."""
    return bound_seconds(requests, server / max(1, requests))


# --- scenarios -------------------------------------------------------------------------------


def read_all(bench: Bench, n: int) -> None:
    url, member = bench.fresh(deals=n)
    client = bench.client(url, member)
    started = time.monotonic()
    count = sum(
        1 for _ in client.list_all("crm.deal.list", {"select": ["ID", "TITLE", "STAGE_ID"]}, parallel=P)
    )
    elapsed = time.monotonic() - started
    assert count == n, f"read {count} of {n}"
    requests = math.ceil(n / 2500)
    limit_s = bound_seconds(requests, 50 * T_LIST)
    answers = bench.answers(member)
    server = bench.server_seconds(member, "crm.deal.list")
    bench.rows.append(
        Row(
            f"read-all {n:,} deals (keyset chains, {P} parts)",
            n / elapsed,
            "rows/s",
            n / limit_s,
            f"n / schedule(R={requests}, T=50·t_l, P, b, d, L/W)",
            f"{elapsed:.1f}s; 503s={answers.get('QUERY_LIMIT_EXCEEDED', 0)}",
        )
    )
    bench.rows.append(
        Row(
            f"  same, vs measured server time ({server:.0f}s busy)",
            n / elapsed,
            "rows/s",
            n / measured_bound(server, requests),
            "n / schedule(R, T=server_busy/R, P, b, d, L/W)",
        )
    )


def server_cost(bench: Bench, n_offset: int) -> None:
    """Server time a read costs the portal per 100,000 rows: keyset vs offset paging."""
    n = 100_000
    url, member = bench.fresh(deals=n)
    client = bench.client(url, member)
    for _ in client.list_all("crm.deal.list", {"select": ["ID"]}, parallel=P):
        pass
    keyset = bench.server_seconds(member, "crm.deal.list")
    keyset_model = n / 50 * T_LIST
    bench.rows.append(
        Row(
            "server time per 100k rows, keyset",
            keyset,
            "server-s",
            keyset_model,
            "n/50 · t_l (the minimum: no COUNT, no OFFSET)",
            higher_is_better=False,
        )
    )
    # Offset paging on a smaller table, scaled: its cost grows with the square of the table.
    url, member = bench.fresh(deals=n_offset)
    client = bench.client(url, member)
    from portals.bitrix import listing

    original = listing.ADAPTERS.get("crm.deal.list")
    listing.ADAPTERS["crm.deal.list"] = listing.ListAdapter(keyset=False)
    try:
        for _ in client.list_all("crm.deal.list", {"select": ["ID"]}):
            pass
    finally:
        if original is None:
            listing.ADAPTERS.pop("crm.deal.list")
        else:
            listing.ADAPTERS["crm.deal.list"] = original
    offset = bench.server_seconds(member, "crm.deal.list")
    url, member = bench.fresh(deals=n_offset)
    client = bench.client(url, member)
    for _ in client.list_all("crm.deal.list", {"select": ["ID"]}, parallel=P):
        pass
    keyset_small = bench.server_seconds(member, "crm.deal.list")

    def offset_model(n_rows: int) -> float:
        pages = n_rows // 50
        skipped = COST.per_offset_row * 50 * pages * (pages - 1) / 2
        return pages * T_LIST + skipped + COST.per_count_row * n_rows * pages

    small_ratio = offset_model(n_offset) / (n_offset / 50 * T_LIST)
    bench.rows.append(
        Row(
            "server time per 100k rows, offset paging (model)",
            offset_model(n),
            "server-s",
            keyset_model,
            "pages·t_l + c.per_offset_row·Σoffset + c.per_count_row·n·pages",
            f"measured on {n_offset:,} rows: offset {offset:.1f}s vs keyset {keyset_small:.1f}s "
            f"({offset / max(keyset_small, 1e-9):.1f}×; model {small_ratio:.1f}×)",
            higher_is_better=False,
        )
    )


def update(bench: Bench, n: int) -> None:
    url, member = bench.fresh(deals=n)
    client = bench.client(url, member)
    commands = [("crm.deal.update", {"id": i, "fields": {"STAGE_ID": "WON"}}) for i in range(1, n + 1)]
    started = time.monotonic()
    result = client.batch(commands)
    elapsed = time.monotonic() - started
    ok = sum(1 for r in result.values() if r.ok)
    assert ok == n, f"{n - ok} updates failed"
    requests = math.ceil(n / 50)
    limit_s = bound_seconds(requests, 50 * T_UPDATE)
    bench.rows.append(
        Row(
            f"update {n:,} deals (batches of 50)",
            n / elapsed,
            "updates/s",
            n / limit_s,
            f"n / schedule(R={requests}, T=50·t_u, P, b, d, L/W)",
            f"{elapsed:.1f}s; 503s={bench.answers(member).get('QUERY_LIMIT_EXCEEDED', 0)}",
        )
    )
    server = bench.server_seconds(member, "crm.deal.update")
    bench.rows.append(
        Row(
            f"  same, vs measured server time ({server:.0f}s busy)",
            n / elapsed,
            "updates/s",
            n / measured_bound(server, requests),
            "n / schedule(R, T=server_busy/R, P, b, d, L/W)",
        )
    )


def _process_worker(
    kind: str, url: str, member: str, ca: str, redis_url: str, lo: int, hi: int, out: Any, go: Any
) -> None:
    client = make_client(url, member, ca, redis_url)
    out.put("ready")
    go.wait()  # all processes start together: interpreter start-up is not part of the figure
    started = time.monotonic()
    if kind == "read":
        done = sum(
            1
            for _ in client.list_all(
                "crm.deal.list", {"filter": {">ID": lo, "<=ID": hi}, "select": ["ID"]}, parallel=P
            )
        )
    else:
        result = client.batch(
            [("crm.deal.update", {"id": i, "fields": {"STAGE_ID": "WON"}}) for i in range(lo + 1, hi + 1)]
        )
        done = sum(1 for r in result.values() if r.ok)
    out.put((done, started, time.monotonic()))


def processes(bench: Bench, kind: str, count: int, per_process: int) -> None:
    total = count * per_process
    url, member = bench.fresh(deals=total)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    go = ctx.Event()
    workers = [
        ctx.Process(
            target=_process_worker,
            args=(
                kind,
                url,
                member,
                bench.sandbox.ca_bundle,
                bench.redis_url,
                i * per_process,
                (i + 1) * per_process,
                out,
                go,
            ),
        )
        for i in range(count)
    ]
    for w in workers:
        w.start()
    for _ in workers:
        assert out.get(timeout=120) == "ready"
    go.set()
    results = [out.get(timeout=900) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    done = sum(r[0] for r in results)
    elapsed = max(r[2] for r in results) - min(r[1] for r in results)
    per_request = 50 * (T_LIST if kind == "read" else T_UPDATE)
    requests = count * math.ceil(per_process / (2500 if kind == "read" else 50))
    limit = total / bound_seconds(requests, per_request)
    answers = bench.answers(member)
    bench.rows.append(
        Row(
            f"{count} processes {'reading' if kind == 'read' else 'updating'} one portal ({total:,} rows)",
            done / elapsed,
            "rows/s",
            limit,
            f"total / schedule(R={requests}, T=50·t, P, b, d)",
            f"503 QUERY_LIMIT_EXCEEDED={answers.get('QUERY_LIMIT_EXCEEDED', 0)}, ok={done:,}",
        )
    )


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def paced_export(bench: Bench, minutes: float) -> None:
    """A long export bounded by the operating limit, scaled to a 2-minute window (same 80% ratio)."""
    limit, window = 96.0, 120.0
    bench.sandbox.control("config", operating_limit=limit, operating_window=window)
    try:
        url, member = bench.fresh(deals=5_000_000)
        ledger = OperatingLedger(
            limit=limit,
            headroom=P * 50 * T_LIST * 2,
            redis=redis.Redis.from_url(bench.redis_url),
            prefix=PREFIX,
        )
        client = bench.client(url, member, ledger=ledger)
        rss: list[float] = []
        rows = 0
        started = time.monotonic()
        deadline = started + minutes * 60
        next_sample = started
        stream = client.list_all("crm.deal.list", {"select": ["ID", "TITLE"]}, parallel=P)
        for _ in stream:
            rows += 1
            now = time.monotonic()
            if now >= next_sample:
                rss.append(_rss_mb())
                next_sample = now + 10
            if now >= deadline:
                break
        stream.close()  # type: ignore[attr-defined]
        # A reader may be sleeping out the ledger's pacing with its next chain in hand: it sends
        # that chain when it wakes. Let it finish here (the run ends with its last request), not
        # in the next scenario's counters.
        for thread in threading.enumerate():
            if thread.name.startswith("b24-list-"):
                thread.join(timeout=window * 1.5)
        elapsed = time.monotonic() - started
    finally:
        bench.sandbox.control("config", operating_limit=480.0, operating_window=600.0)
    answers = bench.answers(member)
    server = bench.server_seconds(member, "crm.deal.list")
    # Within the run, the method may use L in its first window and L per window after that.
    allowed = limit * max(1.0, elapsed / window)
    bench.rows.append(
        Row(
            f"export paced by the operating ledger ({elapsed / 60:.1f} min, L={limit:.0f}s/W={window:.0f}s)",
            server,
            "server-s used",
            allowed,
            "L · max(1, run/W)",
            f"{rows:,} rows; 429={answers.get('OPERATION_TIME_LIMIT', 0)}; "
            f"RSS MB {rss[1] if len(rss) > 1 else 0:.0f}→{max(rss) if rss else 0:.0f}",
        )
    )


def many_portals(bench: Bench, portals: int, seconds: float) -> None:
    bench.sandbox.reset()
    conn = redis.Redis.from_url(bench.redis_url)
    for key in conn.scan_iter(match=f"{PREFIX}*", count=1000):
        conn.delete(key)
    clients = []
    for i in range(1, portals + 1):
        member = bench.sandbox.portal(i)["member_id"]
        url = bench.sandbox.control("webhook", member_id=member)["url"]
        clients.append(bench.client(url, member, concurrency=1))
    calls = [0] * portals
    stop = threading.Event()

    def run(i: int) -> None:
        client = clients[i]
        while not stop.is_set():
            client.call("crm.deal.get", {"id": 1 + calls[i] % 20})
            calls[i] += 1

    cpu0 = time.process_time()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=portals) as pool:
        futures = [pool.submit(run, i) for i in range(portals)]
        time.sleep(seconds)
        stop.set()
        for f in futures:
            f.result()
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu0
    total = sum(calls)
    limit = portals * (BURST + DRAIN * elapsed) / elapsed
    bench.rows.append(
        Row(
            f"{portals} portals at once, one process ({elapsed:.0f}s)",
            total / elapsed,
            "calls/s",
            limit,
            "portals · (b + d·T) / T (each portal's bucket)",
            f"CPU {cpu / total * 1000:.2f} ms/call; 503s="
            f"{bench.sandbox.counters()['answers']['by_code'].get('QUERY_LIMIT_EXCEEDED', 0)}",
        )
    )


# --- main ------------------------------------------------------------------------------------


def print_table(rows: list[Row], console: Console) -> None:
    table = Table(title="Bitrix24 client vs the sandbox (standard plan, default costs, 4 at once per portal)")
    for name in ("scenario", "figure", "physical limit", "ratio", "limit formula", "notes"):
        table.add_column(name, overflow="fold")
    for r in rows:
        ratio = f"{r.ratio:.0%}" if r.ratio is not None else ""
        limit = f"{r.limit:,.1f}" if r.limit is not None else ""
        table.add_row(r.scenario, f"{r.figure:,.1f} {r.unit}", limit, ratio, r.formula, r.notes)
    console.print(table)


SCENARIOS: dict[str, Callable[[Bench, bool], None]] = {
    "read100k": lambda b, q: read_all(b, 20_000 if q else 100_000),
    "read500k": lambda b, q: read_all(b, 150_000 if q else 500_000),
    "servercost": lambda b, q: server_cost(b, 5_000 if q else 10_000),
    "update5k": lambda b, q: update(b, 1_000 if q else 5_000),
    "procs2read": lambda b, q: processes(b, "read", 2, 25_000 if q else 50_000),
    "procs4read": lambda b, q: processes(b, "read", 4, 25_000 if q else 50_000),
    "procs2write": lambda b, q: processes(b, "write", 2, 500 if q else 1_000),
    "procs4write": lambda b, q: processes(b, "write", 4, 500 if q else 1_000),
    "paced": lambda b, q: paced_export(b, 3.0 if q else 6.0),
    "portals200": lambda b, q: many_portals(b, 200, 10 if q else 20),
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", default="", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    chosen = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    console = Console(width=max(Console().width, 180))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 200 portals need many sockets
    portals = 200 if "portals200" in chosen else 1
    with SandboxServer(portals=portals, deals=20, startup_timeout=120) as sandbox:
        bench = Bench(sandbox=sandbox, redis_url=args.redis_url)
        for name in chosen:
            console.print(f"[dim]running {name}…[/dim]")
            started = time.monotonic()
            try:
                SCENARIOS[name](bench, args.quick)
            except Exception as e:  # one failing scenario must not hide the others' figures
                bench.rows.append(Row(name, 0.0, "", notes=f"FAILED: {type(e).__name__}: {e}"))
            console.print(f"[dim]  {name} took {time.monotonic() - started:.0f}s[/dim]")
        print_table(bench.rows, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
