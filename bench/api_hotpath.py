"""CPU cost of one /api/v1 request through the web process's WSGI entry point, in process.

Complements bench/api.py on a busy machine: CPU time per request (time.process_time) barely
depends on what else runs, while throughput does. Builds one portal of --deals deals in the
mirror's table with SQL (vacuumed, as autovacuum leaves a loaded table), makes a key, then calls
``bitrix_app.wsgi.application`` (the lean lane, the real views, PostgreSQL and Redis) for each kind
of request and prints the CPU of this process and of its PostgreSQL backend per request, the wall
time, and the ceiling they imply on 2 cores.

    .venv/bin/python bench/api_hotpath.py [--deals 20000] [--requests 2000]

Kinds: a cached list page (five pages asked over and over), uncached filtered pages (stage x
responsible x order x page, each asked once), uncached cursor pages, a cached detail. Uses
DATABASE_URL (default: the b24_api_hotpath database) and REDIS_URL (default db 10).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.events_load import django_ready, in_process_environ  # noqa: E402

STAGES = ("NEW", "PREPARATION", "EXECUTING", "WON", "LOSE")
USERS = 10
ORDERS = [f"{sign}{o}" for o in ("id", "date_modify", "opportunity", "date_create") for sign in ("", "-")]


def _build(deals: int) -> tuple[str, str]:
    """One portal with ``deals`` deals; returns (member_id, a key)."""
    from django.db import connection

    from api.services.keys import apikey_create
    from portals.crypto import encrypt
    from portals.models import Portal

    token = encrypt("bench-token-" + secrets.token_hex(8))
    portal = Portal.objects.create(
        member_id=secrets.token_hex(16),
        domain="hotpath.bitrix24.example",
        client_endpoint="https://hotpath.bitrix24.example/rest/",
        server_endpoint="https://oauth.bitrix.info/rest/",
        access_token=token,
        refresh_token=token,
        application_token=token,
        state="active",
    )
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO mirror_deal (portal_id, bitrix_id, data, synced_at, assigned_by_id, date_create,
              date_modify, title, stage_id, category_id, opportunity, currency_id, company_id, contact_id,
              closed)
            SELECT %(portal)s, i,
              jsonb_build_object('COMMENTS', 'about deal ' || i, 'SOURCE_ID', 'WEB', 'PROBABILITY', i %% 100,
                'UF_CRM_1', repeat('x', 20), 'BEGINDATE', '2026-01-01T00:00:00+03:00'),
              now(), 1 + i %% %(users)s, now() - i * interval '1 minute', now() - i * interval '1 second',
              'Deal ' || i, (%(stages)s::text[])[1 + (i * 7919) %% %(n_stages)s], 0,
              ((i * 104729) %% 1000000)::numeric / 100, 'USD', i %% 100, i %% 300, false
            FROM generate_series(1, %(deals)s) AS i
            """,
            {
                "portal": portal.pk,
                "users": USERS,
                "stages": list(STAGES),
                "n_stages": len(STAGES),
                "deals": deals,
            },
        )
    subprocess.run(
        ["psql", os.environ["DATABASE_URL"], "-qc", "VACUUM ANALYZE mirror_deal"], check=True
    )  # outside any transaction, as autovacuum runs
    return portal.member_id, apikey_create(name="hotpath", portals=[portal])[1]


def _backend_cpu() -> float:
    """CPU seconds of this connection's PostgreSQL backend (same machine)."""
    from django.db import connection

    connection.ensure_connection()
    fields = Path(f"/proc/{connection.connection.info.backend_pid}/stat").read_text().rsplit(")", 1)[1]
    user, system = fields.split()[11:13]
    return (int(user) + int(system)) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/b24_api_hotpath")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/10")
    os.environ.setdefault("REDIS_KEY_PREFIX", "api-hotpath:")
    os.environ.setdefault("CELERY_QUEUE", "api-hotpath")  # no worker: nothing is queued here
    # The per-key limit raised: the limit is tested, not benchmarked.
    in_process_environ(BITRIX24_API_RATE_LIMIT=str(10**9))
    django_ready(empty="portals_portal, api_apikey")
    member_id, key = _build(args.deals)
    from bitrix_app.wsgi import application

    statuses: list[str] = []

    def call(path: str, query: str) -> None:
        environ = {
            "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1", "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_X_API_KEY": key,
        }  # fmt: skip
        b"".join(application(environ, lambda status, headers: statuses.append(status)))

    base = f"/api/v1/portals/{member_id}/deals"
    filtered = [
        (base, f"limit=50&stage={stage}&assigned={user}&order={order}&page={page}")
        for stage in STAGES
        for user in range(1, USERS + 1)
        for order in ORDERS
        for page in (1, 2, 3)
    ]
    random.Random(7).shuffle(filtered)
    kinds: dict[str, list[tuple[str, str]]] = {
        "cached list page": [(base, f"page={1 + i % 5}&limit=50") for i in range(args.requests)],
        "uncached filtered page (50 rows + total)": filtered[: args.requests],
        "uncached cursor page (50 rows + total)": [
            (base, f"limit=50&after={a}") for a in range(1, args.deals - 50, 7)
        ][: args.requests],
        "cached detail": [(f"{base}/{1 + i % 50}", "") for i in range(args.requests)],
    }
    for path, query in [*kinds["cached list page"][:5], *kinds["cached detail"][:50]]:
        call(path, query)  # warm: the cached kinds' answers, the key and portal caches
    results: dict[str, tuple[int, float, float, float]] = {}
    for name, requests in kinds.items():
        statuses.clear()
        cpu, wall, database = time.process_time(), time.perf_counter(), _backend_cpu()
        for path, query in requests:
            call(path, query)
        n = len(requests)
        results[name] = (
            n,
            (time.process_time() - cpu) / n * 1e6,
            (_backend_cpu() - database) / n * 1e6,
            (time.perf_counter() - wall) / n * 1e6,
        )
        failed: Any = [s for s in statuses if not s.startswith("200")]
        assert not failed, f"{name}: {failed[:3]}"
    print(f"\nbench/api_hotpath.py: one portal of {args.deals:,} deals, in process\n")
    print("| request | n | CPU µs (web) | CPU µs (PostgreSQL) | wall µs | ceiling on 2 cores, req/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (n, cpu_us, database_us, wall_us) in results.items():
        print(
            f"| {name} | {n:,} | {cpu_us:,.0f} | {database_us:,.0f} | {wall_us:,.0f} "
            f"| {2e6 / (cpu_us + database_us):,.0f} |"
        )


if __name__ == "__main__":
    main()
