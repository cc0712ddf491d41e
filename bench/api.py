"""The outward API and the mirror under load, served as in production, against the sandbox.

Starts the sandbox (real limits: standard plan, 2 requests/s, burst 50, the cost model at scale 1),
the web server as deploy/web.sh runs it (granian, 2 processes x 4 threads), a Celery worker, and
installs the app on every sandbox portal through the sandbox's own install flow (so the CRM
events are bound and delivered). Then:

1. **initial sync**: portal 1 (--share-deals rows) alone through the mirror's share of its bucket,
   the share's burst spent first, so its rate is the sustained pace, as a share of the portal's
   limit (2/s); then the other portals' deals, two at a time (as a worker of concurrency 2);
2. **lists**: wrk on loopback, --connections keep-alive connections for --seconds each pass, the
   per-key limit raised (the limit is tested, not benchmarked): cached (a fixed set of 50-row pages,
   warmed), uncached (filtered pages and cursor pages, no URL asked twice), and a detail; each
   pass --rounds times (every cached answer made stale between rounds), the median round shown;
3. **freshness**: a deal changed on the sandbox through REST, the API asked every 10 ms until the
   answer shows the change: seconds from the change to a fresh answer.

    .venv/bin/python bench/api.py [--portals 10] [--deals 20000] [--share-deals 250000]
        [--seconds 10] [--connections 16] [--rounds 3] [--trials 20] [--passes sync,lists,freshness]

Uses DATABASE_URL (default: the b24_api_bench database, created if missing) and REDIS_URL
(default db 9, key prefix api-bench:, queue api-bench).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.events_load import _free_port, _pick_generator, _wait_ready, django_ready  # noqa: E402

WRK_SCRIPT = """
local paths = {}
for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
local counter = 0
local offset = 0
-- Each of the %(threads)d threads walks its own part of the list: no URL asked twice until the
-- list is spent.
function setup(thread)
  thread:set("offset", counter * math.floor(#paths / %(threads)d))
  counter = counter + 1
end
function init(args)
  offset = tonumber(wrk.thread:get("offset")) or 0
  wrk.headers["X-API-Key"] = "%(key)s"
end
local i = 0
function request()
  i = i + 1
  return wrk.format("GET", paths[((offset + i) %% #paths) + 1])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"errors": %%d, "non2xx": %%d}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def _env(state: dict[str, Any], app_url: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/b24_api_bench")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
    env.setdefault("REDIS_KEY_PREFIX", "api-bench:")
    env.setdefault("CELERY_QUEUE", "api-bench")
    env.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(32))
    env.setdefault("BITRIX24_TOKEN_KEYS", Fernet.generate_key().decode())
    env.update(
        {
            "DJANGO_DEBUG": "0",
            "DJANGO_SECURE_SSL_REDIRECT": "0",  # plain http on loopback: no TLS proxy in front here
            "DJANGO_SETTINGS_MODULE": "bitrix_app.settings",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            "BITRIX24_APP_URL": app_url,
            "BITRIX24_ALLOW_HTTP": "1",
            "BITRIX24_CLIENT_ID": state["client_id"],
            "BITRIX24_CLIENT_SECRET": state["client_secret"],
            "BITRIX24_OAUTH_SERVERS": state["oauth_server"],
            "BITRIX24_CA_BUNDLE": state["ca_bundle"],
            "BITRIX24_API_RATE_LIMIT": str(10**9),
        }
    )
    return env


def _setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    django_ready(empty="portals_portal, api_apikey")


def _install(sandbox: Any, portals: int, app_url: str) -> list[Any]:
    from portals.models import Portal
    from tests.fixtures.portals import app_card_urls

    sandbox.control("lifecycle", urls=app_card_urls(app_url), finish_mode="auto")
    for index in range(1, portals + 1):
        sandbox.control("lifecycle/install", portal=index)
    sandbox.control("lifecycle/deliveries/wait", timeout=120)
    members = [sandbox.portal(i)["member_id"] for i in range(1, portals + 1)]
    deadline = time.monotonic() + 120
    while Portal.objects.filter(member_id__in=members, state="active").count() < portals:
        if time.monotonic() > deadline:
            raise RuntimeError("the portals were not installed within 2 minutes")
        time.sleep(0.5)
    return [Portal.objects.get(member_id=m) for m in members]


class SendTimes:
    """A limiter wrapper recording when each request may leave (after its reserved wait).

    It spends the mirror's whole burst before the first request: a sync whose reads keep up with
    its share would otherwise run on the unspent burst for minutes (a slice of 40 requests drains
    at the excess of our pace over the share), and its rate would measure the burst, not the pace
    it can sustain. With the burst gone, every request leaves at the sustained pace from the start.
    """

    def __init__(self, inner: Any):
        self.inner = inner
        self.times: list[float] = []
        self.lock = threading.Lock()
        self.burst_spent = False

    def reserve(self, bucket_key: str, params: Any, cost: float = 1.0) -> float:
        if bucket_key.endswith(":mirror"):  # the mirror's slice, not the portal's own bucket
            with self.lock:
                if not self.burst_spent:
                    self.burst_spent = True
                    time.sleep(self.inner.reserve(bucket_key, params, params.capacity))
            return self.inner.reserve(bucket_key, params, cost)
        wait = self.inner.reserve(bucket_key, params, cost)
        with self.lock:
            self.times.append(time.monotonic() + wait)
        return wait

    def refused(self, bucket_key: str, params: Any) -> None:
        self.inner.refused(bucket_key, params)


def _sync_all(portals: list[Any], share_deals: int) -> dict[str, Any]:
    from mirror.services import sync
    from portals.conf import app_settings

    recorded: dict[int, SendTimes] = {}
    plain = sync.mirror_client

    def recording_client(*, portal: Any) -> Any:
        client = plain(portal=portal)
        if portal.pk == portals[0].pk:
            # Inside the mirror's share: the portal-wide slots it takes, as they leave.
            client.limiter.inner = recorded.setdefault(portal.pk, SendTimes(client.limiter.inner))
        return client

    sync.mirror_client = recording_client
    results: dict[int, tuple[float, int]] = {}

    resumed = [0]

    def run(portal: Any) -> None:
        started = time.monotonic()
        for attempt in range(5):
            try:
                state = sync.mirror_sync(portal_id=portal.pk, entity="deal")
                break
            except Exception as e:  # as the beat's sweep does: the next run resumes from the checkpoint
                print(f"portal {portal.pk}: {type(e).__name__}, resuming (attempt {attempt + 2})")
                resumed[0] += 1
        else:
            raise RuntimeError(f"the sync of portal {portal.pk} failed five times")
        results[portal.pk] = (time.monotonic() - started, state.rows)

    # Portal 1 alone first: its sustained rate is the figure (one sync's pace against its share,
    # not ten syncs sharing one interpreter); then the others, to load the dataset.
    run(portals[0])
    started = time.monotonic()
    # Two at a time, as a worker with --concurrency 2 runs them.
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(run, portals[1:]))
    wall = time.monotonic() - started
    sync.mirror_client = plain
    sends = sorted(recorded[portals[0].pk].times) if portals[0].pk in recorded else []
    # The slice's burst was spent before the first request (SendTimes): every send is sustained.
    rate = (len(sends) - 1) / (sends[-1] - sends[0]) if len(sends) > 2 else float("nan")
    share_rate = 2.0 * app_settings.mirror_sync_share
    return {
        "wall": wall,
        "rows": sum(r for pk, (_, r) in results.items() if pk != portals[0].pk),
        "others": len(portals) - 1,
        "resumed": resumed[0],
        "portal1": results[portals[0].pk],
        "requests": len(sends),
        "sustained_rate": rate,
        "share_rate": share_rate,
        "share_deals": share_deals,
    }


def _vacuum() -> None:
    """The steady state autovacuum reaches a minute after a bulk load: the visibility map (index-only
    counts) and planner statistics. Freshly loaded, COUNTs and deep pages read the heap row by row
    (ten times slower, measured: docs/api.md)."""
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE mirror_deal")
        # The load's dirty pages written out now, not by a checkpoint in the middle of a pass.
        conn.execute("CHECKPOINT")


def _cpu_times() -> list[int]:
    """The machine's CPU time counters (/proc/stat): user nice system idle iowait irq softirq steal."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def _wrk(port: int, key: str, paths: list[str], seconds: int, connections: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "paths.txt"
        listing.write_text("\n".join(paths) + "\n")
        script = Path(tmp) / "api.lua"
        threads = min(2, connections)
        script.write_text(WRK_SCRIPT % {"paths": listing, "key": key, "threads": threads})
        before = _cpu_times()
        answer = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
             "-s", str(script), f"http://127.0.0.1:{port}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    spent = [after - then for after, then in zip(_cpu_times(), before, strict=True)]
    line = next(x for x in answer.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    # A virtual machine's CPU the host gave to others meanwhile: the same code measures slower.
    result["steal"] = spent[7] / max(1, sum(spent))
    return result


def _freshness(port: int, key: str, portal: Any, trials: int) -> list[float]:
    import requests

    from portals.services.client import client_for_portal

    client = client_for_portal(member_id=portal.member_id)
    session = requests.Session()
    session.headers["X-API-Key"] = key
    seconds = []
    for trial in range(trials):
        deal = 1000 + trial
        url = f"http://127.0.0.1:{port}/api/v1/portals/{portal.member_id}/deals/{deal}"
        session.get(url, timeout=10)  # cached before the change
        title = f"fresh {trial} {secrets.token_hex(4)}"
        started = time.monotonic()
        client.call("crm.deal.update", {"id": deal, "fields": {"TITLE": title}})
        while time.monotonic() - started < 30:
            if session.get(url, timeout=10).json().get("title") == title:
                break
            time.sleep(0.01)
        seconds.append(time.monotonic() - started)
        time.sleep(0.2)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--portals", type=int, default=10)
    parser.add_argument(
        "--deals", type=int, default=20_000, help="deals per portal (the full figure: 100000)"
    )
    parser.add_argument(
        "--share-deals", type=int, default=250_000, help="deals of portal 1 (the sync-rate figure)"
    )
    parser.add_argument("--seconds", type=int, default=10, help="each wrk pass")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument(
        "--rounds", type=int, default=3, help="each wrk pass this many times; the median run is shown"
    )
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument(
        "--passes",
        default="sync,lists,freshness",
        help="which parts to run, comma-separated: sync, lists, freshness (lists and freshness "
        "need the sync)",
    )
    args = parser.parse_args()
    passes = set(args.passes.split(","))
    if _pick_generator("wrk") != "wrk":
        raise SystemExit("wrk is needed (apt-get install wrk)")

    from sandbox.testing import SandboxServer

    port = _free_port()
    app_url = f"http://127.0.0.1:{port}"
    sandbox = SandboxServer(portals=args.portals, deals=args.deals, app_url=app_url, startup_timeout=120)
    procs: list[subprocess.Popen[bytes]] = []
    with sandbox:
        sandbox.control("seed", portal=1, deals=args.share_deals)
        env = _env(sandbox.state, app_url)
        _setup(env)
        try:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "granian", "--interface", "wsgi", "bitrix_app.wsgi:application",
                     "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.web_workers),
                     "--blocking-threads", str(args.web_threads), "--http", "1", "--no-ws",
                     "--backlog", "2048", "--log-level", "warning"],
                    cwd=ROOT, env=env,
                )
            )  # fmt: skip
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "bitrix_app", "worker", "--loglevel", "WARNING",
                     "--queues", env["CELERY_QUEUE"], "--concurrency", "2",
                     "--without-gossip", "--without-mingle", "--without-heartbeat"],
                    cwd=ROOT, env=env,
                )
            )  # fmt: skip
            _wait_ready(port)
            portals = _install(sandbox, args.portals, app_url)
            sync = _sync_all(portals, args.share_deals)
            load = os.getloadavg()[0]
            results: dict[str, Any] = {}
            if "lists" in passes or "freshness" in passes:
                _vacuum()
                results = _passes(args, port, portals, lists="lists" in passes)
                load = os.getloadavg()[0]
            if "freshness" in passes:
                results["freshness"] = _freshness(port, results["_key"], portals[1], args.trials)
            results.pop("_key", None)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    _print(args, sync, results, load)


def _passes(args: argparse.Namespace, port: int, portals: list[Any], *, lists: bool) -> dict[str, Any]:
    import requests

    from api.services.keys import apikey_create

    key = apikey_create(name="bench", portals=portals)[1]
    if not lists:
        return {"_key": key}
    from mirror.services.versions import mirror_versions_bump

    members = [p.member_id for p in portals]
    cached = [f"/api/v1/portals/{m}/deals?page={page}&limit=50" for m in members for page in (1, 2, 3, 4, 5)]
    session = requests.Session()

    def warm() -> None:  # the cached set (and every web process's key and portal caches)
        for path in cached:
            for _ in range(4):
                session.get(f"http://127.0.0.1:{port}{path}", headers={"X-API-Key": key}, timeout=30)

    # Uncached: answers nobody asked for yet. First pages of filtered listings (stage x
    # responsible x order), each request a new filter set or order (its total counted once per
    # filter set), and cursor pages (after=<id>: every request its own total above the cursor).
    from mirror.models import Deal

    stages = sorted(set(Deal.objects.values_list("stage_id", flat=True).distinct()))
    users = sorted(set(Deal.objects.values_list("assigned_by_id", flat=True).distinct()))
    orders = [f"{sign}{o}" for o in ("id", "date_modify", "opportunity", "date_create") for sign in ("", "-")]
    uncached = [
        f"/api/v1/portals/{m}/deals?limit=50&stage={stage}&assigned={user}&order={order}&page={page}"
        for m in members[1:]
        for stage in stages
        for user in users
        for order in orders
        for page in (1, 2, 3)
    ]
    cursor = [
        f"/api/v1/portals/{m}/deals?limit=50&after={after}"
        for after in range(1, args.deals - 50, 3)
        for m in members[1:]
    ]
    details = [f"/api/v1/portals/{m}/deals/{i}" for m in members[1:] for i in range(1, args.deals + 1, 7)]
    passes = {
        "cached list": cached,
        "uncached list: filtered first pages (50 rows + total)": uncached,
        "uncached list: cursor pages (50 rows + total)": cursor,
        "detail (first asked: uncached)": details,
        "detail (cached)": details[:50],
    }
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in passes}
    for _ in range(args.rounds):
        # Every earlier answer out of date, as after a mirror write: each round starts uncached.
        for portal in portals:
            mirror_versions_bump(portal_id=portal.pk, entities=["deal"])
        warm()
        for name, paths in passes.items():
            rounds[name].append(_wrk(port, key, paths, args.seconds, args.connections))
    results: dict[str, Any] = {
        name: {
            **sorted(runs, key=lambda r: r["rps"])[len(runs) // 2],
            "all": [(r["rps"], r["p99_us"] / 1000, r["steal"]) for r in runs],
        }
        for name, runs in rounds.items()
    }
    results["_key"] = key
    print(
        f"distinct URLs: cached {len(cached)}, filtered {len(uncached)}, cursor {len(cursor)}, "
        f"details {len(details)} (an uncached pass asking more than its distinct URLs would meet "
        "its own cached answers)"
    )
    return results


def _print(args: argparse.Namespace, sync: dict[str, Any], results: dict[str, Any], load: float) -> None:
    print(f"\nbench/api.py: {args.portals} portals, {args.deals:,} deals each "
          f"({args.share_deals:,} on portal 1), "
          f"wrk {args.connections} connections x {args.seconds} s, load average {load:.1f}\n")  # fmt: skip
    seconds, rows = sync["portal1"]
    print("| initial sync | figure |")
    print("|---|---:|")
    print(
        f"| portal 1 alone: rows, time, requests | {rows:,} rows in {seconds:.1f} s, "
        f"{sync['requests']} requests |"
    )
    print(f"| portal 1, the slice's burst spent first: requests/s | {sync['sustained_rate']:.3f} |")
    print(f"| the mirror's share of the limit (2/s x share) | {sync['share_rate']:.2f} |")
    print(f"| sustained rate / share | {sync['sustained_rate'] / sync['share_rate']:.1%} |")
    print(f"| sustained rate / portal's limit (2/s) | {sync['sustained_rate'] / 2.0:.1%} |")
    if sync["others"]:
        print(
            f"| then the other {sync['others']} portals, two at a time: rows, wall time | {sync['rows']:,} "
            f"rows in {sync['wall']:.1f} s ({sync['rows'] / sync['wall']:,.0f} rows/s), "
            f"{sync['resumed']} resumed after an error |"
        )
    print()
    passes = [name for name in results if name != "freshness"]
    if passes:
        print(
            "| requests (median round) | req/s | p50 ms | p99 ms | errors | non-2xx "
            "| every round: req/s, p99 ms (CPU the host took) |"
        )
        print("|---|---:|---:|---:|---:|---:|---|")
    for name in passes:
        r = results[name]
        every = "; ".join(f"{rps:,.0f}, {p99:.0f} ({steal:.0%})" for rps, p99, steal in r["all"])
        print(
            f"| {name} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.1f} | {r['p99_us'] / 1000:.1f} "
            f"| {r['errors']} | {r['non2xx']} | {every} |"
        )
    if "freshness" not in results:
        return
    fresh = sorted(results["freshness"])
    print(
        f"\n| change on the sandbox → fresh API answer ({len(fresh)} trials) "
        f"| p50 {statistics.median(fresh):.2f} s | max {fresh[-1]:.2f} s |"
    )


if __name__ == "__main__":
    main()
