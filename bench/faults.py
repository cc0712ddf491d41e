"""The fault suite: the production shape on loopback, one fault at a time, one table row per fault.

Runs the two-host deployment of bench/faults_cluster.py (two web processes and two Celery workers,
one beat) on a PostgreSQL cluster and a Redis server of its own (so it may kill and restart them),
with the sandbox portal, and for each fault prints: sent, accepted, stored, dispatched exactly
once, duplicated, lost, and the seconds to recover once the cause has gone. What each column
counts for each kind of work is in docs/faults.md. Exits 1 when a requirement fails: an accepted
event or a row lost, a write or a dispatch duplicated, an export that doesn't finish, a portal that
doesn't return to Active.

    .venv/bin/python bench/faults.py                  # every fault, a few minutes
    .venv/bin/python bench/faults.py --only offline   # rows whose name contains any of the words
    .venv/bin/python bench/faults.py --quick          # smaller counts
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import requests  # noqa: E402
from qs_codec import EncodeOptions, encode  # noqa: E402

from bench.faults_cluster import (  # noqa: E402
    CREATE,
    REFRESHER,
    Cluster,
    Host,
    OwnPostgres,
    OwnRedis,
    app_env,
    wait_until,
)
from sandbox.testing import SandboxServer  # noqa: E402

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
DATABASE = "faults"

# A drain of one portal's offline queue in a process of its own that dies (SIGKILL) at one step:
# just before or just after one Bitrix24 method, or midway through storing the batch.
OFFLINE_DRAIN = """
import os, signal, sys
import django
django.setup()
from events.services import intake, offline
from portals.bitrix.client import Bitrix24Client

portal_id, method, when = int(sys.argv[1]), sys.argv[2], sys.argv[3]
real_call, real_store = Bitrix24Client.call, intake.event_store
stored = []

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def call(client, name, params=None, **options):
    if name == method and when == "before":
        die()
    result = real_call(client, name, params, **options)
    if name == method and when == "after":
        die()
    return result

def store(**kwargs):
    stored.append(1)
    if method == "store" and len(stored) == 2:
        die()
    return real_store(**kwargs)

if method != "none":
    Bitrix24Client.call = call
    offline.event_store = store
report = offline.offline_events_drain(portal_id=portal_id)
print(report.recovered, report.stored, report.duplicates, flush=True)
"""


@dataclass
class Row:
    fault: str
    during: str
    sent: int
    accepted: int
    stored: int
    once: int
    duplicated: int
    lost: int
    recover: float | None
    ok: bool
    note: str = ""


class Suite:
    """The deployment, the sandbox and the bench's own view of the database."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="faults-"))
        self.redis = OwnRedis(self.workdir)
        self.pg = OwnPostgres(self.workdir)
        self.sandbox = SandboxServer(portals=3, deals=args.deals, cost_scale=0.05, users=3)
        self.cluster: Cluster | None = None
        self.tokens: dict[int, dict[str, Any]] = {}
        self.next_id = 10_000  # event object ids: unique over the whole run

    # --- set-up ------------------------------------------------------------------------------

    def start(self) -> None:
        self.pg.init()
        self.pg.start()
        self.pg.create_database(DATABASE)
        self.redis.start()
        self.sandbox.start()
        env = app_env(
            database_url=self.pg.url(DATABASE),
            redis_url=self.redis.url,
            prefix="faults:",
            queue="faults",
            sandbox_state=self.sandbox.state,
        )
        env["FAULTS_HANDLER_SECONDS"] = "0.01"
        env["BITRIX24_REFRESH_CONNECT_ATTEMPTS"] = "2"
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        os.environ.update(env)
        import django

        django.setup()
        self.sql(CREATE)
        self.cluster = Cluster(env=env, workdir=self.workdir)
        self.cluster.env["BITRIX24_APP_URL"] = self.cluster.hosts[0].url
        self.cluster.start()
        for index in (1, 2, 3):
            self.install(index, self.cluster.hosts[index % 2])
        self.cluster.wait_idle(self.broker())

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        self.sandbox.stop()
        self.redis.stop()
        self.pg.stop()
        if self.args.keep:
            print(f"logs: {self.workdir / 'logs'}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def broker(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url, socket_timeout=5)

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement on the bench's connection, reconnecting after a database restart."""
        from django.db import connection
        from django.db.utils import InterfaceError, OperationalError

        for attempt in range(30):
            try:
                with connection.cursor() as cursor:
                    cursor.execute(query, params or [])
                    return list(cursor.fetchall()) if cursor.description else []
            except (OperationalError, InterfaceError):
                connection.close()
                if attempt == 29:
                    raise
                time.sleep(1)
        return []

    def install(self, index: int, host: Host) -> None:
        from tests.fixtures.portals import event_claim_payload

        member_id = self.sandbox.portal(index)["member_id"]
        tokens = self.sandbox.control("oauth/issue", member_id=member_id)
        body = encode(event_claim_payload(tokens), options=EncodeOptions(encode=True))
        answer = requests.post(f"{host.url}/bitrix/install/", data=body, headers=FORM, timeout=30)
        answer.raise_for_status()
        self.tokens[index] = tokens

    def portal_id(self, index: int) -> int:
        member_id = self.tokens[index]["member_id"]
        return int(self.sql("SELECT id FROM portals_portal WHERE member_id = %s", [member_id])[0][0])

    def portal_state(self, index: int) -> str:
        return str(self.sql("SELECT state FROM portals_portal WHERE id = %s", [self.portal_id(index)])[0][0])

    # --- events --------------------------------------------------------------------------------

    def event_body(self, index: int, object_id: int) -> bytes:
        from tests.fixtures.events import form_body, load_payload

        tokens = self.tokens[index]
        auth = {"member_id": tokens["member_id"], "application_token": tokens["application_token"]}
        payload = load_payload("oncrmdealupdate__basic", data={"FIELDS": {"ID": str(object_id)}}, auth=auth)
        return form_body(payload)

    def ids(self, count: int) -> list[int]:
        first = self.next_id
        self.next_id += count
        return list(range(first, first + count))

    def send(self, ids: list[int], rate: float) -> tuple[set[int], Callable[[], None]]:
        """Send one event per id, ``rate`` a second, alternating the hosts, from a thread.

        Returns the set of ids answered "accepted" (filled as answers come) and a join function.
        """
        assert self.cluster is not None
        hosts = self.cluster.hosts
        accepted: set[int] = set()
        sessions = [requests.Session() for _ in hosts]

        def run() -> None:
            started = time.monotonic()
            for n, object_id in enumerate(ids):
                delay = started + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                host = n % len(hosts)
                try:
                    answer = sessions[host].post(
                        f"{hosts[host].url}/bitrix/events/", data=self.event_body(1 + n % 2, object_id),
                        headers=FORM, timeout=5,
                    )  # fmt: skip
                except requests.RequestException:
                    continue
                if answer.status_code == 200 and answer.json().get("result") == "accepted":
                    accepted.add(object_id)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return accepted, lambda: thread.join(timeout=120)

    def outcome(self, ids: list[int]) -> tuple[int, Counter[str]]:
        """How many of ``ids`` are stored as events, and the dispatches of each."""
        keys = [f"ONCRMDEAL:{i}" for i in ids]
        stored = self.sql("SELECT count(*) FROM events_event WHERE object_key = ANY(%s)", [keys])[0][0]
        rows = self.sql(
            "SELECT object_id FROM faults_effect WHERE object_id = ANY(%s)", [[str(i) for i in ids]]
        )
        return int(stored), Counter(str(r[0]) for r in rows)

    def event_row(self, fault: str, during: str, ids: list[int], accepted: set[int], since: float) -> Row:
        """Wait until every accepted event is dispatched (bounded), then count."""
        wanted = {str(i) for i in accepted}

        def all_dispatched() -> bool:
            return wanted <= set(self.outcome(ids)[1])

        try:
            wait_until(
                all_dispatched, timeout=self.args.recover_timeout, what="every accepted event dispatched"
            )
            recover: float | None = time.monotonic() - since
        except TimeoutError:
            recover = None
        stored, dispatches = self.outcome(ids)
        once = sum(1 for n in dispatches.values() if n == 1)
        duplicated = sum(1 for n in dispatches.values() if n > 1)
        lost = len(wanted - set(dispatches))
        ok = lost == 0 and duplicated == 0 and recover is not None
        return Row(fault, during, len(ids), len(accepted), stored, once, duplicated, lost, recover, ok)

    def intake_with(
        self, fault: str, during: str, crash: Callable[[], None], restart: Callable[[], None]
    ) -> Row:
        """Events sent steadily while ``crash`` happens and ``restart`` ends it."""
        count = self.args.events
        rate = count / 6.0
        ids = self.ids(count)
        accepted, join = self.send(ids, rate)
        time.sleep(2.0)
        crash()
        time.sleep(2.0)
        restart()
        back = time.monotonic()
        join()
        return self.event_row(fault, during, ids, accepted, back)

    # --- the faults ----------------------------------------------------------------------------

    def worker_kill(self) -> Row:
        assert self.cluster is not None
        host = self.cluster.hosts[0]
        ids = self.ids(self.args.events)
        accepted, join = self.send(ids, rate=self.args.events / 2.0)
        # Kill once a fifth of the events is dispatched: batches are in flight on both workers.
        wait_until(lambda: sum(self.outcome(ids)[1].values()) >= len(ids) // 5, timeout=60, what="draining")
        self.cluster.kill_worker(host)
        time.sleep(1.0)
        self.cluster.start_worker(host)
        back = time.monotonic()
        join()
        return self.event_row("worker SIGKILL", "draining", ids, accepted, back)

    def redis_intake(self) -> Row:
        return self.intake_with("Redis restart", "intake", self.redis.crash, self.redis.start)

    def postgres_intake(self) -> Row:
        return self.intake_with("PostgreSQL restart", "intake", self.pg.crash, self.pg.start)

    def export(
        self, fault: str, during: str, inject: Callable[[], None], heal: Callable[[], None] | None
    ) -> Row:
        """`manage.py bitrix export crm.deal.list` of portal 1, resumed with --resume until done."""
        assert self.cluster is not None
        out = self.workdir / f"export-{secrets.token_hex(4)}.jsonl"
        member_id = self.tokens[1]["member_id"]
        command = [sys.executable, "manage.py", "bitrix", "export", "crm.deal.list", "--portal", member_id,
                   "--out", str(out), "--parallel", "2", "--select", "ID,TITLE"]  # fmt: skip
        env = self.cluster.host_env(self.cluster.hosts[0])
        # Each page stays a while at the portal, so the export is still running when the fault comes.
        self.sandbox.control("faults", member_id=member_id, kind="latency", delay=0.15)
        log = open(self.workdir / "logs" / "export.log", "ab")  # noqa: SIM115 - closed below

        def start(*extra: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen([*command, *extra], cwd=ROOT, env=env, stdout=log, stderr=log)

        proc = start()
        time.sleep(1.5)
        inject()
        back: float | None = None
        if heal is not None:
            time.sleep(2.0)
            heal()
            back = time.monotonic()
        finished = False
        runs = 0
        for _ in range(8):
            code = proc.wait(timeout=300)
            runs += 1
            if back is None:  # the cause ends by itself: count from the first run's end
                back = time.monotonic()
            if code == 0:
                finished = True
                break
            time.sleep(1.0)
            proc = start("--resume")
        done = time.monotonic()
        log.close()
        self.sandbox.control("faults/clear", member_id=member_id)
        assert back is not None
        expected = self.deal_ids(1)
        lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        exported = Counter(str(row["ID"]) for row in lines)
        once = sum(1 for n in exported.values() if n == 1)
        duplicated = sum(1 for n in exported.values() if n > 1)
        lost = len(expected - set(exported))
        active = self.portal_state(1) == "active"
        ok = finished and lost == 0 and duplicated == 0 and active
        note = f"{runs} run(s)" + ("" if active else ", portal not Active")
        return Row(fault, during, len(expected), len(exported), len(lines), once, duplicated, lost,
                   max(0.0, done - back) if finished else None, ok, note)  # fmt: skip

    def deal_ids(self, index: int) -> set[str]:
        from portals.services.client import client_for_portal

        client = client_for_portal(member_id=self.tokens[index]["member_id"])
        return {str(row["ID"]) for row in client.list_all("crm.deal.list", {"select": ["ID"]})}

    def redis_export(self) -> Row:
        return self.export("Redis restart", "export", self.redis.crash, self.redis.start)

    def revoked_export(self) -> Row:
        member_id = self.tokens[1]["member_id"]

        def revoke() -> None:
            self.sandbox.control("faults", member_id=member_id, kind="revoked", count=3)

        return self.export("token revoked", "export", revoke, None)

    def refresh_with(
        self, fault: str, inject: Callable[[], None], heal: Callable[[], None], index: int
    ) -> Row:
        """Eight refreshers on the two hosts race on portal ``index``'s expired token while ``inject``
        breaks something and ``heal`` ends it; then one ordinary call must go through."""
        from django.utils import timezone

        from portals.services.client import client_for_portal

        assert self.cluster is not None
        portal_id = self.portal_id(index)
        member_id = self.tokens[index]["member_id"]
        stale = self.stored_access_token(portal_id)
        self.sql(
            "UPDATE portals_portal SET expires_at = %s WHERE id = %s",
            [timezone.now() - timedelta(seconds=5), portal_id],
        )
        grants_before = self.grants(member_id)
        barrier = f"faults:barrier:{secrets.token_hex(4)}"
        racers = 8
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", REFRESHER, str(portal_id), stale, barrier, str(racers)],
                cwd=ROOT,
                env=self.cluster.host_env(self.cluster.hosts[n % 2]),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for n in range(racers)
        ]
        wait_until(lambda: int(self.broker().get(barrier) or 0) >= racers, timeout=60, what="racers ready")
        inject()
        time.sleep(2.0)
        heal()
        back = time.monotonic()
        outputs = [p.communicate(timeout=180) for p in procs]
        with open(self.workdir / "logs" / "refreshers.log", "a") as log:
            log.write("".join(err for _, err in outputs))
        answers = [out.split() for out, _ in outputs]
        succeeded = sum(1 for a in answers if a and a[0] == "ok")

        def call_works() -> bool:
            client_for_portal(member_id=member_id).call("profile")
            return self.portal_state(index) == "active"

        try:
            wait_until(
                call_works, timeout=self.args.recover_timeout, what="a call after the fault", every=0.5
            )
            recover: float | None = time.monotonic() - back
        except TimeoutError:
            recover = None
        grants = self.grants(member_id) - grants_before
        reuse = self.sandbox.counters()["refresh_token_reuse"]["by_portal"].get(member_id, 0)
        active = self.portal_state(index) == "active"
        ok = recover is not None and reuse == 0 and active
        errors = Counter(a[1] for a in answers if len(a) > 1 and a[0] == "error")
        note = f"{grants} grant(s), {reuse} refresh token(s) reused"
        if errors:
            note += ", callers refused: " + ", ".join(f"{n}× {name}" for name, n in errors.items())
        return Row(fault, "refresh", racers, succeeded, 1 if grants else 0, 1 if grants == 1 else 0,
                   max(0, grants - 1), 0 if active else 1, recover, ok, note)  # fmt: skip

    def stored_access_token(self, portal_id: int) -> str:
        from portals.models import Portal

        return str(Portal.objects.get(pk=portal_id).access_token)

    def grants(self, member_id: str) -> int:
        return int(self.sandbox.counters()["token_grants"].get(member_id, {}).get("refresh_token", 0))

    def redis_refresh(self) -> Row:
        # Refreshes take a second at the OAuth server, so Redis dies while they are in flight.
        self.sandbox.control("faults", scope="oauth", kind="oauth_latency", delay=1.0)
        try:
            return self.refresh_with("Redis restart", self.redis.crash, self.redis.start, 2)
        finally:
            self.sandbox.control("faults/clear", scope="oauth")

    def oauth_down_refresh(self) -> Row:
        def down() -> None:
            self.sandbox.control("faults", scope="oauth", kind="oauth_down", mode="refuse")

        def up() -> None:
            self.sandbox.control("faults/clear", scope="oauth")

        return self.refresh_with("OAuth server down", down, up, 3)

    def client_storm(self, name: str, faults: list[dict[str, Any]]) -> Row:
        """20 deal writes from 4 threads through the app's client while the portal refuses or stalls;
        the same job without faults first gives the time the faults cost."""
        from concurrent.futures import ThreadPoolExecutor

        from portals.services.client import client_for_portal

        member_id = self.tokens[2]["member_id"]
        client = client_for_portal(member_id=member_id)
        writes = 20

        def job(tag: str) -> tuple[list[Any], float]:
            started = time.monotonic()

            def add(n: int) -> Any:
                try:
                    return client.call("crm.deal.add", {"fields": {"TITLE": f"{tag}-{n}"}})
                except Exception as error:  # noqa: BLE001 - counted as not accepted
                    return error

            with ThreadPoolExecutor(4) as pool:
                results = list(pool.map(add, range(writes)))
            return results, time.monotonic() - started

        # Each job starts with the portal's bucket empty (burst / drain seconds after any other
        # traffic), so the clean run and the faulty one differ only by the faults.
        time.sleep(25.0)
        _, baseline = job("clean")
        before = self.sandbox.counters()["writes"].get(member_id, {}).get("crm.deal.add", 0)
        time.sleep(25.0)
        for fault in faults:
            self.sandbox.control("faults", member_id=member_id, **fault)
        results, took = job("storm")
        self.sandbox.control("faults/clear", member_id=member_id)
        ran = self.sandbox.counters()["writes"].get(member_id, {}).get("crm.deal.add", 0) - before
        ids = [r for r in results if not isinstance(r, Exception)]
        distinct = len(set(map(str, ids)))
        ok = len(ids) == writes and ran == writes
        note = f"{took:.1f} s against {baseline:.1f} s clean"
        return Row(name, "client work", writes, len(ids), ran, distinct, max(0, ran - writes),
                   writes - len(ids), max(0.0, took - baseline), ok, note)  # fmt: skip

    def storms(self) -> list[Row]:
        rows = [self.client_storm("sandbox 503 storm", [{"kind": "query_limit", "count": 16}])]
        # A 429 blocks the method until its oldest minute of operating time drops out of the window
        # (the answers' operating_reset_at), up to ten minutes: a window of 20 s keeps that bounded.
        self.sandbox.control("config", operating_window=20.0)
        try:
            rows.append(self.client_storm("sandbox 429 storm", [{"kind": "operation_limit", "count": 8}]))
        finally:
            self.sandbox.control("config", operating_window=600.0)
        rows.append(
            self.client_storm("sandbox added latency", [{"kind": "latency", "delay": 0.5, "count": 20}])
        )
        return rows

    def offline_steps(self) -> list[Row]:
        """A drain killed at each step of offline draining; the next drain must recover."""
        from portals.services.client import client_for_portal

        assert self.cluster is not None
        index = 1
        member_id = self.tokens[index]["member_id"]
        portal_id = self.portal_id(index)
        self.sql("UPDATE portals_portal SET offline_events = true WHERE id = %s", [portal_id])
        client = client_for_portal(member_id=member_id)
        client.call("event.bind", {"event": "ONCRMDEALUPDATE", "event_type": "offline"}, read=False)
        # Changes reach us through the offline queue only, as on a portal whose events are bound offline.
        handler = f"{self.cluster.hosts[0].url}/bitrix/events/"
        client.call("event.unbind", {"event": "ONCRMDEALUPDATE", "handler": handler}, read=False)
        env = self.cluster.host_env(self.cluster.hosts[0])
        steps = [
            ("before event.offline.get", "event.offline.get", "before"),
            ("after event.offline.get", "event.offline.get", "after"),
            ("midway through the store", "store", "-"),
            ("before event.offline.clear", "event.offline.clear", "before"),
            ("after event.offline.clear", "event.offline.clear", "after"),
        ]
        rows = []
        deal = 0
        for label, method, when in steps:
            deals = list(range(deal + 1, deal + 6))
            deal += 5
            for n in deals:
                self.sandbox.control("lifecycle/crm", portal=index, action="deal-update", id=n)
            drain = [sys.executable, "-c", OFFLINE_DRAIN, str(portal_id)]
            crashed = subprocess.run([*drain, method, when], cwd=ROOT, env=env, capture_output=True,
                                     text=True, timeout=120)  # fmt: skip
            killed = crashed.returncode == -9
            started = time.monotonic()
            # An empty reservation may be a get still in flight: the drain keeps it ten minutes.
            # Nothing arrives late here, so age the dead drain's rows rather than wait.
            self.sql("UPDATE events_offlinereservation SET created_at = now() - interval '1 hour'")
            recovery = subprocess.run([*drain, "none", "-"], cwd=ROOT, env=env, capture_output=True,
                                      text=True, timeout=120)  # fmt: skip
            left = client.call("event.offline.list") or []
            reservations = self.sql("SELECT count(*) FROM events_offlinereservation")[0][0]
            keys = [f"ONCRMDEAL:{n}" for n in deals]
            stored = self.sql(
                "SELECT count(*) FROM events_event WHERE portal_id = %s AND source = 'offline'"
                " AND object_key = ANY(%s)",
                [portal_id, keys],
            )[0][0]
            wanted = {str(n) for n in deals}

            def dispatched(wanted: set[str] = wanted) -> Counter[str]:
                rows = self.sql(
                    "SELECT f.object_id FROM faults_effect f JOIN events_event e"
                    " ON e.portal_id = f.portal_id AND e.idempotency_key = f.event_key"
                    " WHERE e.source = 'offline' AND f.portal_id = %s AND f.object_id = ANY(%s)",
                    [portal_id, list(wanted)],
                )
                return Counter(str(r[0]) for r in rows)

            try:
                wait_until(
                    lambda wanted=wanted: wanted <= set(dispatched()),  # type: ignore[misc]
                    timeout=self.args.recover_timeout,
                    what="dispatch",
                )
                recover: float | None = time.monotonic() - started
            except TimeoutError:
                recover = None
            seen = dispatched()
            once = sum(1 for n in seen.values() if n == 1)
            duplicated = sum(1 for n in seen.values() if n > 1)
            lost = len(wanted - set(seen))
            ok = (
                killed
                and recovery.returncode == 0
                and not left
                and not reservations
                and lost == 0
                and not duplicated
            )
            note = "" if killed else "the drain was not killed"
            if recovery.returncode:
                note = recovery.stderr.strip().splitlines()[-1][:80]
            rows.append(Row("offline drain killed", label, len(deals), len(deals) - len(left), int(stored),
                            once, duplicated, lost, recover, ok, note))  # fmt: skip
        return rows


SCENARIOS: dict[str, Callable[[Suite], Row | list[Row]]] = {
    "worker-kill": Suite.worker_kill,
    "redis-intake": Suite.redis_intake,
    "postgres-intake": Suite.postgres_intake,
    "redis-export": Suite.redis_export,
    "redis-refresh": Suite.redis_refresh,
    "storms": Suite.storms,
    "oauth-down": Suite.oauth_down_refresh,
    "revoked-export": Suite.revoked_export,
    "offline": Suite.offline_steps,
}


def table(rows: list[Row]) -> str:
    head = ("| fault | during | sent | accepted | stored | dispatched exactly once | duplicated | lost "
            "| seconds to recover | |")  # fmt: skip
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        recover = f"{r.recover:.1f}" if r.recover is not None else "—"
        verdict = "ok" if r.ok else "FAILED"
        note = f" ({r.note})" if r.note else ""
        lines.append(f"| {r.fault} | {r.during} | {r.sent} | {r.accepted} | {r.stored} | {r.once} "
                     f"| {r.duplicated} | {r.lost} | {recover} | {verdict}{note} |")  # fmt: skip
    return "\n".join(lines)


@contextmanager
def running(args: argparse.Namespace) -> Iterator[Suite]:
    suite = Suite(args)
    try:
        suite.start()
        yield suite
    finally:
        suite.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="comma-separated words; rows whose name holds one")
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (the processes' logs)")
    parser.add_argument("--recover-timeout", type=float, default=90.0, help="seconds a recovery may take")
    args = parser.parse_args(argv)
    args.events = 120 if args.quick else 400
    args.deals = 400 if args.quick else 1500
    words = [w for w in args.only.split(",") if w]
    chosen = [name for name in SCENARIOS if not words or any(w in name for w in words)]
    rows: list[Row] = []
    with running(args) as suite:
        for name in chosen:
            started = time.monotonic()
            result = SCENARIOS[name](suite)
            done = result if isinstance(result, list) else [result]
            rows.extend(done)
            print(f"{name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
            print(table(done), file=sys.stderr, flush=True)
        if not all(r.ok for r in rows):
            print(suite.cluster.log_tail(20) if suite.cluster else "", file=sys.stderr)
    print(table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
