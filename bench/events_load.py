"""Load test of the event receiver, served as in production.

Starts the web server as deploy/web.sh does (granian, the bitrix_app.wsgi entry point; --server gunicorn
to compare), a Celery worker and, from a second process, a load generator on loopback (wrk, installed
when missing, else the Python generator); N portals; a recording no-op handler
(bench/events_recorder.py). Three passes: accepted events as fast as the server answers them
(throughput), accepted events arriving at --rate per second (latency at the target rate), forged
events. Prints a table: events/s, the slowest whole second, latency percentiles, CPU per request of
each part, and the after-run check stored = sent = dispatched exactly once.

    .venv/bin/python bench/events_load.py [--events 20000] [--rate 1000] [--portals 200]
        [--connections 16] [--web-workers 2] [--web-threads 4] [--forged 5000]
        [--server granian|gunicorn] [--generator auto|wrk|python] [--app MODULE:ATTR]

Uses DATABASE_URL (default: the b24_events_bench database, created if missing) and REDIS_URL
(default db 4, key prefix events-bench:, queue events-bench).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _env(args: argparse.Namespace) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/b24_events_bench")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/4")
    env.setdefault("REDIS_KEY_PREFIX", "events-bench:")
    env.setdefault("CELERY_QUEUE", "events-bench")
    env.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(32))
    env.setdefault("BITRIX24_TOKEN_KEYS", Fernet.generate_key().decode())
    env["DJANGO_DEBUG"] = "0"
    env["DJANGO_SECURE_SSL_REDIRECT"] = "0"  # plain http on loopback: no TLS proxy in front here
    env["DJANGO_SETTINGS_MODULE"] = "bitrix_app.settings"
    env["DJANGO_ALLOWED_HOSTS"] = "127.0.0.1"
    env["LOG_LEVEL"] = "WARNING"
    env["BITRIX24_EVENT_HANDLER_MODULES"] = "bench.events_recorder"
    env["PYTHONPATH"] = str(ROOT)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_process_environ(**overrides: str) -> None:
    """The environment of a benchmark that runs the Django app in its own process (no server):
    production settings on plain http, a fresh secret and token key, quiet logs; ``overrides``
    on top. DATABASE_URL, REDIS_URL and their neighbours are the caller's (setdefault them)."""
    from cryptography.fernet import Fernet

    os.environ.update(
        DJANGO_SETTINGS_MODULE="bitrix_app.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(32),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="0",  # plain http in process: no TLS proxy in front here
        LOG_LEVEL="ERROR",
        BITRIX24_TOKEN_KEYS=Fernet.generate_key().decode(),
        **overrides,
    )


def _ensure_database(url: str) -> None:
    from urllib.parse import urlsplit

    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def django_ready(*, empty: str = "") -> None:
    """Django set up in this process on the benchmark's own database (os.environ's DATABASE_URL:
    created if missing, migrated). With ``empty`` (tables, as TRUNCATE lists them), those tables
    and every Redis key under REDIS_KEY_PREFIX are emptied first: a run starts from nothing."""
    _ensure_database(os.environ["DATABASE_URL"])
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    import django

    django.setup()
    if not empty:
        return
    import redis
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {empty} CASCADE")
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    for key in client.scan_iter(match=f"{os.environ['REDIS_KEY_PREFIX']}*", count=1000):
        client.delete(key)


def _setup(env: dict[str, str], portals: int) -> list[tuple[str, str]]:
    """Migrate, reset the bench data and create ``portals`` portals; returns (member_id, token)."""
    os.environ.update(env)
    django_ready(empty="events_event, portals_portal")
    import redis

    from bench import events_recorder
    from portals.models import Portal

    redis.Redis.from_url(env["REDIS_URL"]).delete(*events_recorder.keys())
    pairs = [(secrets.token_hex(16), secrets.token_hex(16)) for _ in range(portals)]
    Portal.objects.bulk_create(
        Portal(
            member_id=member_id,
            domain=f"b{i}.bench.test",
            client_endpoint=f"https://b{i}.bench.test/rest/",
            server_endpoint="https://oauth.bitrix.info/rest/",
            application_token=token,
        )
        for i, (member_id, token) in enumerate(pairs)
    )
    return pairs


def _bodies(pairs: list[tuple[str, str]], count: int, *, forged: bool, first_id: int = 0) -> list[bytes]:
    from qs_codec import encode

    ts = str(int(time.time()))
    bodies = []
    for i in range(first_id, first_id + count):
        member_id, token = pairs[i % len(pairs)]
        payload = {
            "event": "ONCRMACTIVITYUPDATE",
            "event_handler_id": "17",
            "data": {"FIELDS": {"ID": str(i)}},
            "ts": ts,
            "auth": {
                "access_token": "a" * 32,
                "expires": ts,
                "expires_in": "3600",
                "scope": "crm",
                "domain": "bench.test",
                "server_endpoint": "https://oauth.bitrix.info/rest/",
                "status": "F",
                "client_endpoint": "https://bench.test/rest/",
                "member_id": member_id,
                "user_id": "1",
                "application_token": ("f" * 32) if forged else token,
            },
        }
        bodies.append(encode(payload).encode())
    return bodies


# --- the load generator (second process) ------------------------------------------------------------
# A bare keep-alive HTTP/1.1 client on asyncio streams: an HTTP library would spend the CPU the
# server under test needs (both share the machine's two cores).


class _Schedule:
    """Send times at a steady ``rate`` per second (0: no pacing), shared by all connections."""

    def __init__(self, rate: float):
        self.rate = rate
        self.start = time.perf_counter()
        self.slots = 0

    async def wait_turn(self) -> None:
        if not self.rate:
            return
        due = self.start + self.slots / self.rate
        self.slots += 1
        if due > time.perf_counter():
            await asyncio.sleep(due - time.perf_counter())


async def _connection(
    port: int, bodies: list[bytes], results: list[tuple[float, int, float]], schedule: _Schedule
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /bitrix/events/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n"
    )
    for body in bodies:
        await schedule.wait_turn()
        started = time.perf_counter()
        writer.write(head.format(len(body)).encode() + body)
        status_line = await reader.readline()
        length = 0
        close = False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        await reader.readexactly(length)
        results.append((time.time(), int(status_line.split()[1]), time.perf_counter() - started))
        if close:
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()


async def _generate(port: int, bodies: list[bytes], connections: int, rate: float) -> dict[str, Any]:
    results: list[tuple[float, int, float]] = []
    chunks = [bodies[i::connections] for i in range(connections)]
    started = time.perf_counter()
    schedule = _Schedule(rate)
    await asyncio.gather(*(_connection(port, chunk, results, schedule) for chunk in chunks))
    elapsed = time.perf_counter() - started
    latencies = sorted(r[2] for r in results)
    per_second: dict[int, int] = {}
    for answered_at, _, _ in results:
        per_second[int(answered_at)] = per_second.get(int(answered_at), 0) + 1
    statuses: dict[int, int] = {}
    for _, status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "sent": len(results),
        "elapsed": elapsed,
        "rate": len(results) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "p999_ms": latencies[int(len(latencies) * 0.999) - 1] * 1000,
        "max_ms": latencies[-1] * 1000,
        "slowest_second": _slowest_second(per_second),
        "statuses": statuses,
    }


def _generator_main(port: int, connections: int, path: str, rate: float) -> None:
    bodies = [bytes.fromhex(line) for line in Path(path).read_text().split()]
    print(json.dumps(asyncio.run(_generate(port, bodies, connections, rate))))


def _run_generator(
    port: int, connections: int, bodies: list[bytes], tag: str, generator: str, rate: float = 0.0
) -> dict[str, Any]:
    """Send every body once over ``connections`` keep-alive connections, at ``rate`` per second
    (0: each connection sends its next request as soon as the previous one is answered)."""
    path = ROOT / f"var/bench-events-{tag}.txt"
    path.parent.mkdir(exist_ok=True)
    try:
        if generator == "wrk":
            # Bodies are form-encoded: no newline inside one, so one body per line.
            path.write_bytes(b"\n".join(bodies) + b"\n")
            return _run_wrk(port, connections, path, len(bodies), rate)
        path.write_text("\n".join(b.hex() for b in bodies))
        out = subprocess.run(
            [sys.executable, __file__, "--generate", str(port), str(connections), str(path), str(rate)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout)
    finally:
        path.unlink(missing_ok=True)


# wrk (C, one event loop per thread) costs a fraction of the Python generator's CPU, which matters
# when the generator and the server share two cores. Each wrk thread sends its own slice of the
# pre-built bodies exactly once (every body is a distinct event: sent = stored is checked after the
# run), then holds its connections idle (delay) until its last answer arrives and stops. wrk itself
# runs for its -d duration whatever its threads do, so it says when each thread is done and is
# interrupted (SIGINT: it still prints its summary) once all are.
_WRK_SCRIPT = r"""
-- A monotonic clock for pacing (LuaJIT's FFI; wrk's own Lua API has none finer than os.time).
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local threads = {}
local counter = 0
function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  nthreads = tonumber(args[2])
  rate = tonumber(args[3]) / nthreads  -- this thread's share, requests per second (0: unpaced)
  slots, started_ms = 0, nil
  bodies = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == id then table.insert(bodies, line) end
    i = i + 1
  end
  sent, answered = 0, 0
  statuses = {}
  wrk.method = "POST"
  wrk.path = "/bitrix/events/"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

-- wrk calls request() once on its own before the run, to check the request; that one is not sent.
-- A connection always asks delay() before its first real request, so calls before any delay()
-- are such checks.
local running = false

-- Paced: the n-th request of the thread is due at start + n / rate, whichever connection sends it;
-- a connection whose turn is past sends at once (so a slow server is not given a lighter load).
function delay()
  running = true
  if sent >= #bodies then return 3600000 end
  if rate <= 0 then return 0 end
  local now = now_ms()
  started_ms = started_ms or now
  local due = started_ms + slots * 1000 / rate
  slots = slots + 1
  if due > now then return due - now end
  return 0
end

-- A reconnected connection asks request() again without delay(): past the last body that sends a
-- request without one (answered 400 by the receiver). Such extras are counted apart, and a 400 (no
-- pre-built body can get one) is taken as an extra's answer, not a body's.
extra = 0

function request()
  if not running then return wrk.format(nil, nil, nil, bodies[1]) end
  if sent >= #bodies then
    extra = extra + 1
    return wrk.format(nil, nil, nil, nil)
  end
  sent = sent + 1
  return wrk.format(nil, nil, nil, bodies[sent])
end

-- Answers per wall-clock second: a stall (the server, the database or the host) shows as a gap.
per_second = {}

function response(status, headers, body)
  local second = os.time()
  per_second[second] = (per_second[second] or 0) + 1
  if status == 400 and extra > 0 then
    extra_answered = (extra_answered or 0) + 1
    return
  end
  answered = answered + 1
  statuses[status] = (statuses[status] or 0) + 1
  if answered == #bodies then
    io.stderr:write("WRK-THREAD-DONE\n")
    io.stderr:flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local counts = {}
  local extras = 0
  local seconds = {}
  for _, thread in ipairs(threads) do
    extras = extras + thread:get("extra")
    for second, n in pairs(thread:get("per_second")) do
      seconds[second] = (seconds[second] or 0) + n
    end
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do table.insert(parts, string.format('"%d": %d', status, n)) end
  local timeline = {}
  for second, n in pairs(seconds) do table.insert(timeline, string.format('[%d, %d]', second, n)) end
  local errors = summary.errors
  io.write(string.format(
    'WRK-JSON {"sent": %d, "elapsed": %f, "p50_ms": %f, "p99_ms": %f, "p999_ms": %f, "max_ms": %f, ' ..
    '"errors": %d, "extra": %d, "statuses": {%s}, "per_second": [%s]}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000,
    errors.connect + errors.read + errors.write + errors.timeout, extras, table.concat(parts, ", "),
    table.concat(timeline, ", ")))
end
"""


def _run_wrk(port: int, connections: int, path: Path, count: int, rate: float) -> dict[str, Any]:
    threads = 1  # one event loop keeps up with the server here and leaves it the other core
    script = path.with_suffix(".lua")
    script.write_text(_WRK_SCRIPT)
    try:
        proc = subprocess.Popen(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{60 + count // 50}s", "-T", "30s",
             "-s", str(script), f"http://127.0.0.1:{port}", "--", str(path), str(threads), str(rate)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stderr is not None
        finished, problems = 0, []
        for line in proc.stderr:
            if line.strip() == "WRK-THREAD-DONE":
                finished += 1
                if finished == threads:
                    proc.send_signal(signal.SIGINT)
                    break
            else:
                problems.append(line)
        stdout, rest = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed: {''.join(problems)}{rest}")
    finally:
        script.unlink(missing_ok=True)
    line = next(x for x in stdout.splitlines() if x.startswith("WRK-JSON "))
    result = json.loads(line.removeprefix("WRK-JSON "))
    if result["extra"]:
        print(f"wrk sent {result['extra']} extra request(s) without a body after a reconnect "
              "(answered 400, not counted)", file=sys.stderr)  # fmt: skip
    answered = sum(result["statuses"].values())
    if answered != count or result["errors"]:
        raise RuntimeError(f"wrk got {answered} answers for {count} bodies, {result['errors']} errors")
    result["sent"] = count
    result["rate"] = result["sent"] / result["elapsed"]
    result["slowest_second"] = _slowest_second(dict(result.pop("per_second")))
    return result


def _slowest_second(per_second: dict[int, int]) -> int | None:
    """Fewest answers in one whole wall-clock second of the run (the first and last are partial)."""
    if len(per_second) < 3:
        return None
    first, last = min(per_second), max(per_second)
    return min(per_second.get(second, 0) for second in range(first + 1, last))


def _pick_generator(wanted: str) -> str:
    """wrk when asked for (or "auto") and present, installing it with apt-get when possible."""
    if wanted == "python":
        return "python"
    if shutil.which("wrk") is None and shutil.which("apt-get") is not None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, check=False)
    if shutil.which("wrk") is not None:
        return "wrk"
    if wanted == "wrk":
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    print("wrk not available: falling back to the Python generator", file=sys.stderr)
    return "python"


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (gunicorn's workers, celery's pool)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process tree: what the work cost, whatever else runs."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for each in _descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _cpu_of_services() -> dict[int, float]:
    """CPU seconds per PostgreSQL and Redis process (shared servers: other clients count too)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, tail = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        if head.split("(", 1)[1] in ("postgres", "redis-server"):
            fields = tail.split()
            found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def _services_delta(before: dict[int, float]) -> float:
    """CPU the services spent since ``before`` (backends that exited meanwhile are not counted)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in _cpu_of_services().items())


def _server_command(args: argparse.Namespace, port: int) -> list[str]:
    """The web server as deploy/web.sh runs it (granian), or gunicorn gthread for comparison."""
    if args.server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "wsgi", args.app,
                "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.web_workers),
                "--blocking-threads", str(args.web_threads), "--http", "1", "--no-ws",
                "--backlog", "2048", "--log-level", "warning"]  # fmt: skip
    return [sys.executable, "-m", "gunicorn", args.app,
            "--bind", f"127.0.0.1:{port}", "--workers", str(args.web_workers),
            "--threads", str(args.web_threads), "--worker-class",
            "gthread" if args.web_threads > 1 else "sync", "--backlog", "2048",
            "--keep-alive", "30", "--log-level", "warning"]  # fmt: skip


def _wait_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--forged", type=int, default=5_000)
    parser.add_argument("--portals", type=int, default=200)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--rate", type=float, default=1000.0,
        help="events per second of the paced accepted pass (0: only the as-fast-as-possible pass)",
    )  # fmt: skip
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--celery-concurrency", type=int, default=2)
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--server", choices=["granian", "gunicorn"], default="granian")
    parser.add_argument("--app", default="bitrix_app.wsgi:application", help="the WSGI entry point to serve")
    parser.add_argument(
        "--generator", choices=["auto", "wrk", "python"], default="auto",
        help="wrk (installed with apt-get if missing), the Python generator, or auto: wrk if possible",
    )  # fmt: skip
    args = parser.parse_args()

    env = _env(args)
    args.generator = _pick_generator(args.generator)
    pairs = _setup(env, args.portals)
    port = _free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(_server_command(args, port), cwd=ROOT, env=env))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "bitrix_app", "worker",
                 "--loglevel", "WARNING", "--queues", env["CELERY_QUEUE"],
                 "--concurrency", str(args.celery_concurrency),
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=ROOT, env=env,
            )
        )  # fmt: skip
        _wait_ready(port)
        # Warm-up: imports, connections.
        _run_generator(port, 8, _bodies(pairs, 200, forged=True), "warmup", args.generator)
        web, worker = procs[0].pid, procs[1].pid
        # Throughput: every connection sends as soon as its previous event is answered. Latency at
        # the target: events arrive at --rate per second, as a portal fleet sends them.
        passes = [("accepted", 0.0)] + ([(f"accepted at {args.rate:g}/s", args.rate)] if args.rate else [])
        results: dict[str, dict[str, Any]] = {}
        for number, (name, rate) in enumerate(passes):
            bodies = _bodies(pairs, args.events, forged=False, first_id=number * args.events)
            before = (_cpu_seconds(web), _cpu_seconds(worker), _cpu_of_services(), os.times())
            results[name] = _run_generator(port, args.connections, bodies, "accepted", args.generator, rate)
            results[name]["drained_s"] = _wait_drained(args.drain_timeout)
            _cpu_per_event(results[name], before, web, worker, args.events)
        check = _after_run(sent=len(passes) * args.events, results=results.values())
        forged_bodies = _bodies(pairs, args.forged, forged=True)
        before = (_cpu_seconds(web), _cpu_seconds(worker), _cpu_of_services(), os.times())
        results["forged"] = _run_generator(port, args.connections, forged_bodies, "forged", args.generator)
        _cpu_per_event(results["forged"], before, web, worker, args.forged)
        load = os.getloadavg()[0]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    _print_table(args, results, check, load)


def _cpu_per_event(result: dict[str, Any], before: tuple, web: int, worker: int, count: int) -> None:
    """CPU ms per request: web server, Celery worker, PostgreSQL + Redis, the load generator."""
    after = os.times()
    result["web_cpu_ms"] = (_cpu_seconds(web) - before[0]) / count * 1000
    result["worker_cpu_ms"] = (_cpu_seconds(worker) - before[1]) / count * 1000
    result["services_cpu_ms"] = _services_delta(before[2]) / count * 1000
    generator = after.children_user + after.children_system
    generator -= before[3].children_user + before[3].children_system
    result["generator_cpu_ms"] = generator / count * 1000
    result["total_cpu_ms"] = sum(
        result[k] for k in ("web_cpu_ms", "worker_cpu_ms", "services_cpu_ms", "generator_cpu_ms")
    )


def _wait_drained(timeout: float) -> float:
    """Seconds until the outbox is empty (every accepted event dispatched), at most ``timeout``."""
    from events.models import Event

    started = time.monotonic()
    while Event.objects.pending().exists() and time.monotonic() - started < timeout:
        time.sleep(0.2)
    return time.monotonic() - started


def _after_run(*, sent: int, results: Any) -> dict[str, Any]:
    import redis
    from django.conf import settings

    from bench import events_recorder
    from events.models import Event

    client = redis.Redis.from_url(settings.REDIS_URL)
    calls_key, ids_key = events_recorder.keys()
    return {
        "sent": sent,
        "accepted_200": sum(r["statuses"].get("200", 0) for r in results),
        "stored": Event.objects.count(),
        "done": Event.objects.filter(status=Event.Status.DONE).count(),
        "dispatched_calls": int(client.get(calls_key) or 0),
        "dispatched_unique": int(client.scard(ids_key)),
    }


def _print_table(
    args: argparse.Namespace, results: dict[str, dict[str, Any]], check: dict, load: float
) -> None:
    cores = os.cpu_count()
    print(f"\nEvent receiver load test: {args.events} events per accepted pass over {args.portals} portals, "
          f"{args.connections} connections, {args.server} {args.web_workers}x{args.web_threads}, "
          f"generator {args.generator}, celery x{args.celery_concurrency}, {cores} cores, "
          f"load average {load:.1f} at the end\n")  # fmt: skip
    print("Latency from each request's send to its answer. CPU in ms per request: web server, Celery "
          "worker, PostgreSQL + Redis (all their clients), load generator, total\n")  # fmt: skip
    print("| pass | requests | events/s | slowest second | p50 ms | p99 ms | p99.9 ms | max ms | web "
          "| worker | pg+redis | generator | total | statuses |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        print(f"| {name} | {r['sent']} | {r['rate']:.0f} | {r['slowest_second'] or '-'} | {r['p50_ms']:.1f} "
              f"| {r['p99_ms']:.1f} | {r['p999_ms']:.1f} | {r['max_ms']:.1f} "
              f"| {r['web_cpu_ms']:.2f} | {r['worker_cpu_ms']:.2f} | {r['services_cpu_ms']:.2f} "
              f"| {r['generator_cpu_ms']:.2f} | {r['total_cpu_ms']:.2f} | {r['statuses']} |")  # fmt: skip
    ok = (
        check["sent"]
        == check["accepted_200"]
        == check["stored"]
        == check["done"]
        == check["dispatched_calls"]
        == check["dispatched_unique"]
    )
    drained = ", ".join(f"{r['drained_s']:.1f} s" for r in results.values() if "drained_s" in r)
    print(f"\nafter the run: sent {check['sent']}, answered 200 {check['accepted_200']}, "
          f"stored {check['stored']}, done {check['done']}, handler calls {check['dispatched_calls']} "
          f"(distinct {check['dispatched_unique']}), outbox drained {drained} after each pass "
          f"→ {'OK: nothing lost, nothing twice' if ok else 'MISMATCH'}")  # fmt: skip
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--generate":
        _generator_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
    else:
        main()
