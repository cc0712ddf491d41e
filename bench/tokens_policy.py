"""Token lifecycle at scale: N portals through a simulated month against the sandbox.

    python bench/tokens_policy.py [--portals 10000] [--days 30] [--access-lifetime 3600]

What it drives, on a simulated clock (the sandbox's clock offset and the services' injected clock
move together, one sweep interval per step):

* the beat sweep (portals_sweep_plan) every step, timed: its database time per run;
* the sweep's refreshes (warm-ups, keep-alives) as the worker would run them;
* background work: "busy" portals sync on a schedule (work_due_at), through the real client;
* people: "occasional" portals are used at random moments, sometimes by two workers at once;
* "dormant" portals are never used after the install: only keep-alives touch them.

It reports calls that failed for an expired token, refresh-token reuse seen by the OAuth server
(a double refresh), portals that lost their authorisation, refresh grants per portal against
what the policy allows, and the sweep's database time. Needs PostgreSQL and Redis
(DATABASE_URL, REDIS_URL; defaults: a b24_portals_bench database and Redis db 3).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--portals", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--busy", type=float, default=0.005, help="share of portals with scheduled syncs")
    parser.add_argument("--occasional", type=float, default=0.02, help="share of portals used now and then")
    parser.add_argument("--sync-hours", type=float, default=6.0, help="interval of the busy portals' syncs")
    parser.add_argument("--uses", type=float, default=8.0, help="uses per occasional portal in the period")
    parser.add_argument("--access-lifetime", type=float, default=3600.0, help="the OAuth server's expires_in")
    parser.add_argument("--step", type=float, default=300.0, help="sweep interval (simulated seconds)")
    parser.add_argument("--workers", type=int, default=16, help="threads standing in for Celery workers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--oauth-latency", type=float, default=0.2, help="seconds the OAuth server takes to answer (0: none)"
    )
    return parser.parse_args()


def ensure_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def main() -> int:  # noqa: C901 - one linear script, read top to bottom
    args = parse_args()
    rng = random.Random(args.seed)
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/b24_portals_bench")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/3")
    os.environ.setdefault("REDIS_KEY_PREFIX", "portals-bench:")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    os.environ.setdefault("BITRIX24_CLIENT_ID", "app.bench00000000000.00000000")
    os.environ.setdefault("BITRIX24_CLIENT_SECRET", "bench-client-secret")
    ensure_database(os.environ["DATABASE_URL"])

    from sandbox.testing import SandboxServer

    print(f"starting the sandbox with {args.portals} portals…", flush=True)
    sandbox = SandboxServer(
        portals=args.portals, deals=0, leads=0, contacts=0, companies=0, users=2,
        shared_address=True, cost_scale=0, access_lifetime=args.access_lifetime,
        client_id=os.environ["BITRIX24_CLIENT_ID"], client_secret=os.environ["BITRIX24_CLIENT_SECRET"],
        startup_timeout=180,
    )  # fmt: skip
    sandbox.start()
    try:
        state = sandbox.state
        os.environ["BITRIX24_OAUTH_SERVERS"] = state["oauth_server"]
        os.environ["BITRIX24_CA_BUNDLE"] = state["ca_bundle"]
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bitrix_app.settings")
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        return simulate(args, rng, sandbox)
    finally:
        sandbox.stop()


def simulate(args: argparse.Namespace, rng: random.Random, sandbox) -> int:  # noqa: C901
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from bitrix_app.redis_client import redis_client
    from portals.bitrix.exceptions import Bitrix24Error, Bitrix24InvalidToken, Bitrix24TokenExpired
    from portals.conf import app_settings
    from portals.models import Portal
    from portals.services.credentials import PortalCredentials
    from portals.services.shared_client import client_for_credentials
    from portals.services.sweep import dormant_age, portals_sweep_plan, warm_window
    from portals.services.tokens import RefreshWhen, portal_tokens_refresh

    with connection.cursor() as cursor:  # one run at a time: each run starts by emptying the table
        cursor.execute("SELECT pg_try_advisory_lock(730013)")
        if not cursor.fetchone()[0]:
            print("another tokens_policy run is using this database", file=sys.stderr)
            return 2
    client = redis_client()
    if client is not None:
        for key in client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}*", count=1000):
            client.delete(key)
    Portal.objects.all().delete()

    offset = {"seconds": 0.0}

    def clock():
        return timezone.now() + timedelta(seconds=offset["seconds"])

    # --- install every portal: a fresh pair from the sandbox's OAuth server ------------------
    print("installing…", flush=True)
    started = time.perf_counter()
    rows = []
    now = clock()
    lifetime = timedelta(seconds=args.access_lifetime)
    with ThreadPoolExecutor(args.workers) as pool:
        entries = sandbox.state["portals"]
        issued = list(pool.map(lambda p: sandbox.control("oauth/issue", member_id=p["member_id"]), entries))
    for entry, tokens in zip(sandbox.state["portals"], issued, strict=True):
        rows.append(
            Portal(
                member_id=entry["member_id"], domain=entry["domain"],
                client_endpoint=entry["client_endpoint"],
                server_endpoint=tokens["server_endpoint"], access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"], application_token=tokens["application_token"],
                expires_at=now + lifetime, refresh_token_issued_at=now, installed_at=now, user_id=1,
                app_status="F",
            )
        )  # fmt: skip
    Portal.objects.bulk_create(rows, batch_size=1000)
    print(f"  {len(rows)} portals in {time.perf_counter() - started:.1f}s", flush=True)

    ids = list(Portal.objects.order_by("pk").values_list("pk", flat=True))
    member_of = dict(Portal.objects.values_list("pk", "member_id"))
    rng.shuffle(ids)
    n_busy = round(len(ids) * args.busy)
    n_occasional = round(len(ids) * args.occasional)
    busy = ids[:n_busy]
    occasional = ids[n_busy : n_busy + n_occasional]
    dormant = ids[n_busy + n_occasional :]
    kind = (
        dict.fromkeys(busy, "busy")
        | dict.fromkeys(occasional, "occasional")
        | dict.fromkeys(dormant, "dormant")
    )

    period = args.days * 86400
    sync_every = args.sync_hours * 3600
    next_sync = {pk: rng.uniform(0, sync_every) for pk in busy}
    for pk, first in next_sync.items():
        Portal.objects.filter(pk=pk).update(work_due_at=now + timedelta(seconds=first))
    uses: dict[int, list[int]] = defaultdict(list)  # step index → portal ids used in that step
    use_count: Counter[int] = Counter()
    for pk in occasional:
        for _ in range(max(1, round(rng.expovariate(1 / args.uses)))):
            uses[int(rng.uniform(0, period) // args.step)].append(pk)
            use_count[pk] += 1

    expired_failures = 0
    rotated_in_flight = 0
    other_failures: Counter[str] = Counter()
    calls = 0
    lock = threading.Lock()

    def call(pk: int) -> None:
        nonlocal expired_failures, calls, rotated_in_flight
        try:
            credentials = PortalCredentials(pk, clock=clock)
            client_for_credentials(credentials=credentials, concurrency=1).call("profile")
            with lock:
                calls += 1
        except Bitrix24TokenExpired:
            with lock:
                expired_failures += 1
        except Bitrix24InvalidToken:
            # The token was rotated by a concurrent refresh while this request was in flight;
            # the client surfaces it instead of reloading the credentials and retrying.
            with lock:
                rotated_in_flight += 1
        except Bitrix24Error as e:
            with lock:
                other_failures[type(e).__name__] += 1

    def refresh(pk: int, when) -> None:
        try:
            portal_tokens_refresh(portal_id=pk, when=when, reason="sweep", clock=clock)
        except Bitrix24Error as e:
            with lock:
                other_failures["refresh:" + type(e).__name__] += 1

    sweep_ms: list[float] = []
    swept: Counter[str] = Counter()
    steps = int(period // args.step)
    if args.oauth_latency > 0:
        # Refreshes hold the portal's lock for a real round trip to a distant OAuth server.
        sandbox.control("faults", scope="oauth", kind="oauth_latency", delay=args.oauth_latency)
    print(f"simulating {args.days:g} days in {steps} sweeps of {args.step:g}s…", flush=True)
    started = time.perf_counter()
    # A step's jobs run in parallel and finish before the clocks move on: a job must see the same
    # time on both sides, or the simulation itself would create expired tokens.
    pending: deque[Future[None]] = deque()

    def submit(fn, *fn_args) -> None:
        pending.append(pool.submit(fn, *fn_args))

    with ThreadPoolExecutor(args.workers) as pool:
        for step in range(steps):
            while pending:
                pending.popleft().result()
            offset["seconds"] = step * args.step
            sim_now = clock()
            clock_set = False

            def sync_sandbox_clock() -> None:
                # Only when requests follow: most steps of a quiet month make none.
                nonlocal clock_set
                if not clock_set:
                    sandbox.control("clock", offset=offset["seconds"])
                    clock_set = True

            t0 = time.perf_counter()
            plan = portals_sweep_plan(now=sim_now)
            sweep_ms.append((time.perf_counter() - t0) * 1000)
            swept["warm"] += len(plan.warm)
            swept["keepalive"] += len(plan.keepalive)
            warm_when = RefreshWhen(expiring_within=warm_window())
            keep_when = RefreshWhen(issued_before=sim_now - dormant_age())
            if plan.warm or plan.keepalive:
                sync_sandbox_clock()
            for pk in plan.warm:
                submit(refresh, pk, warm_when)
            for pk in plan.keepalive:
                submit(refresh, pk, keep_when)

            # Work is due on the simulated clock, which also advances with the real time the
            # run takes: scheduling by step count alone let the syncs lag behind the warm-ups.
            elapsed = (sim_now - now).total_seconds()
            for pk in busy:
                if next_sync[pk] <= elapsed:
                    sync_sandbox_clock()
                    submit(call, pk)
                    if rng.random() < 0.25:
                        submit(call, pk)  # a second worker on the same portal at the same moment
                    next_sync[pk] += sync_every
                    Portal.objects.filter(pk=pk).update(work_due_at=now + timedelta(seconds=next_sync[pk]))
            for pk in uses.get(step, ()):
                sync_sandbox_clock()
                submit(call, pk)
                if rng.random() < 0.3:
                    submit(call, pk)  # a second tab / a task at the same moment
            if step and step % max(1, steps // 10) == 0:
                print(f"  day {elapsed / 86400:5.1f}  {time.perf_counter() - started:6.1f}s", flush=True)
        while pending:
            pending.popleft().result()
    wall = time.perf_counter() - started
    connection.close()

    # --- results --------------------------------------------------------------------------
    counters = sandbox.counters()
    grants = counters.get("token_grants", {})
    reuse = counters.get("refresh_token_reuse", {}).get("total", 0)
    expired_answers = counters.get("answers", {}).get("by_code", {}).get("expired_token", 0)
    lost = Portal.objects.exclude(state=Portal.State.ACTIVE).count()
    keepalives = math.ceil(args.days / app_settings.dormant_refresh_days) - 1 if args.days else 0
    keepalives = max(keepalives, 0)

    by_kind: dict[str, list[int]] = defaultdict(list)
    over_policy = 0
    for pk, group in kind.items():
        n = int(grants.get(member_of[pk], {}).get("refresh_token", 0))
        by_kind[group].append(n)
        if group == "busy":
            allowed = math.ceil(args.days * 86400 / sync_every) + 1  # at most one per sync run
        elif group == "occasional":
            allowed = use_count[pk] + keepalives + 1  # one per use, plus keep-alives between uses
        else:
            allowed = keepalives  # keep-alive only
        over_policy += n > allowed

    print()
    dormant_days = app_settings.dormant_refresh_days
    lifetime_s = args.access_lifetime
    print(
        f"Token lifecycle: {len(kind)} portals, {args.days:g} simulated days, expires_in {lifetime_s:g}s, "
        f"OAuth latency {args.oauth_latency:g}s"
    )
    print(f"sweep every {args.step:g}s, keep-alive after {dormant_days:g} days, {args.workers} workers")
    print(f"wall time {wall:.0f}s")
    print()
    print(f"{'portals':<12}{'count':>8}{'refreshes':>11}{'min':>6}{'mean':>8}{'max':>6}")
    for group in ("busy", "occasional", "dormant"):
        values = by_kind[group] or [0]
        print(
            f"{group:<12}{len(by_kind[group]):>8}{sum(values):>11}{min(values):>6}"
            f"{statistics.fmean(values):>8.2f}{max(values):>6}"
        )
    print()
    sorted_ms = sorted(sweep_ms)
    p95 = sorted_ms[int(len(sorted_ms) * 0.95) - 1] if sorted_ms else 0.0
    rows = [
        ("REST calls made", calls),
        ("calls failed for an expired token", expired_failures),
        ("expired_token answers seen (recovered)", expired_answers),
        ("invalid_token: token rotated in flight (not retried)", rotated_in_flight),
        ("other call/refresh failures", sum(other_failures.values())),
        ("refresh-token reuse at the OAuth server", reuse),
        ("portals not active at the end", lost),
        ("portals over the refresh policy", over_policy),
        # A portal still waiting for its refresh is picked again by the next sweep; the duplicate
        # finds the pair already fresh under the lock and makes no grant.
        ("portals queued by sweeps: warm-up / keep-alive", f"{swept['warm']} / {swept['keepalive']}"),
        ("sweep DB time per run, ms: mean / p95 / max",
         f"{statistics.fmean(sweep_ms):.2f} / {p95:.2f} / {max(sweep_ms):.2f}"),
    ]  # fmt: skip
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    if other_failures:
        print("  failures:", dict(other_failures))
    ok = expired_failures == 0 and reuse == 0 and lost == 0 and over_policy == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
