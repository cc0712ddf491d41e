"""A small deployment on loopback, for the fault suite (bench/faults.py) and the two-host test
(tests/multihost): "hosts" that each run a web process as deploy/web.sh does (granian, the
bitrix_app.wsgi entry point) and a Celery worker as deploy/worker.sh does, one beat (deploy/beat.sh),
and PostgreSQL and Redis instances of our own that a fault may kill and restart.

Every process is started in a session of its own and stopped by its process group; nothing here
reaches beyond loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
# The dispatch records of bench/faults_recorder.py's handler. Kept here, not there: importing the
# handler's module registers the handler in the importing process.
TABLE = "faults_effect"
CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (portal_id bigint NOT NULL, object_id text NOT NULL, "
    "event_key text NOT NULL, host text NOT NULL, at timestamptz NOT NULL DEFAULT now())"
)

# A refresher in a process of its own (run with a host's environment): waits at a Redis barrier
# until all are ready, refreshes the stale token, prints "ok <access token>" or "error <class>".
REFRESHER = """
import sys, time, traceback
import django
django.setup()
import redis
from django.conf import settings
from portals.services.credentials import PortalCredentials

portal_id, stale, barrier, racers = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
credentials = PortalCredentials(portal_id)
client = redis.Redis.from_url(settings.REDIS_URL)
client.incr(barrier)
while int(client.get(barrier) or 0) < racers:
    time.sleep(0.005)
try:
    credentials.refresh(stale)
    print("ok", credentials.portal.access_token, flush=True)
except Exception as error:
    traceback.print_exc()
    print("error", type(error).__name__, flush=True)
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Any, *, timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = condition()
            if value:
                return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def _stop(proc: subprocess.Popen[Any] | None, *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Stop a process we started, with everything in its process group."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def _as_postgres_user() -> list[str]:
    # initdb and the server refuse to run as root.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class OwnRedis:
    """A redis-server of our own without persistence: a crash loses every key, the broker's queue too."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        wait_until(client.ping, timeout=10, what="redis-server answers")

    def crash(self) -> None:
        _stop(self.proc, sig=signal.SIGKILL)

    def stop(self) -> None:
        _stop(self.proc)


class OwnPostgres:
    """A PostgreSQL cluster of our own (initdb in the work directory), restartable at will."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "pg"
        self.port = free_port()

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.dir.parent, "postgres", "postgres")
        subprocess.run(
            [*_as_postgres_user(), "initdb", "-D", str(self.dir / "data"), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        )
        subprocess.run(
            [*_as_postgres_user(), "pg_ctl", "-D", str(self.dir / "data"), "-o", options, "-w",
             "-l", str(self.dir / "server.log"), "start"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def crash(self) -> None:
        """Stop at once, as a power cut would (immediate mode: no checkpoint, clients cut off)."""
        subprocess.run(
            [*_as_postgres_user(), "pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        subprocess.run(
            [*_as_postgres_user(), "pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop"],
            check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')


@dataclass
class Host:
    """One "machine": a web process and a Celery worker, both told their address."""

    name: str
    address: str
    port: int
    web: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"


@dataclass
class Cluster:
    """Hosts sharing one database, one Redis, one beat and the sandbox, as several machines would."""

    env: dict[str, str]
    workdir: Path
    addresses: tuple[str, ...] = ("127.0.0.11", "127.0.0.12")
    worker_concurrency: int = 4
    web_threads: int = 4
    hosts: list[Host] = field(default_factory=list)
    beat: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.hosts = [
            Host(name=f"host{n + 1}", address=address, port=free_port(address))
            for n, address in enumerate(self.addresses)
        ]
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def host_env(self, host: Host) -> dict[str, str]:
        return {**self.env, "FAULTS_HOST": host.name, "WEB_BIND": f"{host.address}:{host.port}"}

    def _spawn(self, command: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        with open(self.logs / log, "ab") as out:
            return subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start_web(self, host: Host) -> None:
        env = {**self.host_env(host), "WEB_CONCURRENCY": "1", "WEB_THREADS": str(self.web_threads)}
        host.web = self._spawn(["bash", "deploy/web.sh"], env, f"{host.name}-web.log")

    def start_worker(self, host: Host) -> None:
        # deploy/worker.sh's command, with the host's name as the node name (two nodes may not share one).
        host.worker = self._spawn(
            [sys.executable, "-m", "celery", "-A", "bitrix_app", "worker", "--loglevel", "WARNING",
             "--queues", self.env["CELERY_QUEUE"], "--concurrency", str(self.worker_concurrency),
             "--without-gossip", "--without-mingle", "--hostname", f"{host.name}@{host.address}"],
            self.host_env(host), f"{host.name}-worker.log",
        )  # fmt: skip

    def kill_worker(self, host: Host) -> None:
        """SIGKILL to the worker and its pool, as the kernel's OOM killer or a power cut would."""
        _stop(host.worker, sig=signal.SIGKILL)

    def start_beat(self) -> None:
        env = {**self.env, "CELERY_BEAT_SCHEDULE_FILE": str(self.workdir / "celerybeat-schedule")}
        self.beat = self._spawn(["bash", "deploy/beat.sh"], env, "beat.log")

    def start(self) -> None:
        for host in self.hosts:
            self.start_web(host)
            self.start_worker(host)
        self.start_beat()
        for host in self.hosts:
            self.wait_web(host)

    def wait_web(self, host: Host, timeout: float = 60.0) -> None:
        # The receiver answers a GET with 405 once Django is up behind granian.
        wait_until(
            lambda: requests.get(f"{host.url}/bitrix/events/", timeout=2).status_code == 405,
            timeout=timeout,
            what=f"{host.name}'s web process answers",
        )

    def idle(self, client: redis.Redis) -> bool:
        """Whether nothing waits in the broker's queue and no worker holds a message."""
        prefix = self.env["REDIS_KEY_PREFIX"]
        return not client.llen(f"{prefix}{self.env['CELERY_QUEUE']}") and not client.hlen(f"{prefix}unacked")

    def wait_idle(self, client: redis.Redis, timeout: float = 60.0) -> None:
        """Until :meth:`idle` holds on two looks in a row (a message moves between the two places)."""
        seen = 0
        deadline = time.monotonic() + timeout
        while seen < 2:
            seen = seen + 1 if self.idle(client) else 0
            if time.monotonic() > deadline:
                raise TimeoutError(f"the workers were still busy after {timeout:.0f} s")
            time.sleep(0.1)

    def stop(self) -> None:
        for host in self.hosts:
            _stop(host.web)
            _stop(host.worker)
        _stop(self.beat)

    def log_tail(self, lines: int = 40) -> str:
        """The end of every process's log, for a failure's report."""
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)


def app_env(
    *, database_url: str, redis_url: str, prefix: str, queue: str, sandbox_state: dict[str, Any]
) -> dict[str, str]:
    """The production settings module on plain http over loopback, trusting the sandbox."""
    env = dict(os.environ)
    for name in list(env):
        if name.startswith(("BITRIX24_", "DJANGO_", "CELERY_")):
            del env[name]
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "bitrix_app.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECURE_SSL_REDIRECT": "0",  # plain http on loopback: no TLS proxy in front here
            "DJANGO_SECRET_KEY": "faults-secret-key-only-for-loopback-runs-0123456789",
            "DJANGO_ALLOWED_HOSTS": "*",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": prefix,
            "CELERY_QUEUE": queue,
            "LOG_LEVEL": "WARNING",
            "BITRIX24_TOKEN_KEYS": "dGVzdC1rZXktMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=",
            "BITRIX24_CLIENT_ID": sandbox_state["client_id"],
            "BITRIX24_CLIENT_SECRET": sandbox_state["client_secret"],
            "BITRIX24_OAUTH_SERVERS": sandbox_state["oauth_server"],
            "BITRIX24_CA_BUNDLE": sandbox_state["ca_bundle"],
            "BITRIX24_ALLOW_HTTP": "1",
            "BITRIX24_EVENT_HANDLER_MODULES": "bench.faults_recorder",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env
