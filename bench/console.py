"""Speed of the operator console's pages with a big store: 10,000 portals and 1,000,000 events.

Builds the data with SQL (portals in every state, events over two weeks with one busy portal
holding a tenth of them, the rollups those events imply, call errors on some portals), then asks
each page through Django's full request path in process (middleware, sessions, templates, the
database, Redis for bucket levels) as a logged-in superuser, and prints p50 / p95 / max per page
and the queries each made.

    .venv/bin/python bench/console.py [--portals 10000] [--events 1000000] [--requests 40] [--reuse]

Uses DATABASE_URL (default: the b24_console_bench database, created if missing) and REDIS_URL
(default db 5). ``--reuse`` keeps data built by an earlier run of the same size.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUSY_SHARE = 0.1  # of all events, on one portal: the portal page's worst case


def build(portals: int, events: int) -> None:
    from django.db import connection, transaction

    from portals.crypto import encrypt

    token = encrypt("bench-token-" + secrets.token_hex(8))
    busy = int(events * BUSY_SHARE)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "TRUNCATE console_portalrollup, console_totalrollup, console_portalhealth, "
            "console_portalpreferences, "
            "events_event, portals_portal RESTART IDENTITY CASCADE"
        )
        # States: 2% need re-authorisation, 2% payment, 1% uninstalled, the rest active.
        cur.execute(
            """
            INSERT INTO portals_portal (member_id, domain, client_endpoint, server_endpoint, client_id,
              client_secret, access_token, refresh_token, expires_at, refresh_token_issued_at, user_id, scope,
              application_token, app_status, plan, license, offline_events, state, state_reason,
              state_changed_at, installed_at, last_refreshed_at, last_used_at, created_at, updated_at)
            SELECT md5('portal' || i), 'p' || i || '.bitrix24.example',
              'https://p' || i || '.bitrix24.example/rest/',
              'https://oauth.bitrix.info/rest/', '', '', %(t)s, %(t)s,
                now() + (i %% 60) * interval '1 minute',
              now() - (i %% 25) * interval '1 day', 1, 'crm', %(t)s,
              (ARRAY['F','D','T','P','S'])[1 + i %% 5],
                CASE WHEN i %% 10 = 0 THEN 'enterprise' ELSE 'standard' END,
              '', false,
              CASE WHEN i %% 100 < 2 THEN 'reauth_required' WHEN i %% 100 < 4 THEN 'payment_required'
                   WHEN i %% 100 < 5 THEN 'uninstalled' ELSE 'active' END,
              CASE WHEN i %% 100 < 2 THEN 'invalid_grant' ELSE '' END,
              now() - interval '1 day', now() - interval '60 days', now() - (i %% 50) * interval '1 hour',
              now() - (i %% 90) * interval '1 minute', now(), now()
            FROM generate_series(1, %(n)s) AS i
            """,
            {"t": token, "n": portals},
        )
        # Events over 14 days: one portal holds BUSY_SHARE of them; 97% done, 2% failed, 1% pending.
        cur.execute(
            """
            INSERT INTO events_event (portal_id, event, object_key, ts, source, idempotency_key, shard,
              payload,
              status, attempts, available_at, last_error, received_at, processed_at)
            SELECT CASE WHEN i <= %(busy)s THEN 1 ELSE 1 + (i::bigint * 7919) %% %(portals)s END,
              (ARRAY['ONCRMDEALUPDATE','ONCRMDEALADD','ONCRMCONTACTUPDATE'])[1 + i %% 3],
              'ONCRMDEAL:' || (i %% 5000), at, 'online', md5('event' || i), i %% 8,
              '{"event": "ONCRMDEALUPDATE", "data": {"FIELDS": {"ID": "1"}}}'::jsonb,
              CASE WHEN i %% 100 < 97 THEN 'done' WHEN i %% 100 < 99 THEN 'failed' ELSE 'pending' END,
              CASE WHEN i %% 100 BETWEEN 97 AND 98 THEN 6 ELSE 0 END, at,
              CASE WHEN i %% 100 BETWEEN 97 AND 98 THEN 'RuntimeError: handler failed' ELSE '' END, at,
              CASE WHEN i %% 100 < 99 THEN at + interval '1 second' END
            FROM (SELECT i, now() - (i %% 20160) * interval '1 minute' AS at FROM generate_series(1,
              %(n)s) AS i) s
            """,
            {"busy": busy, "portals": portals, "n": events},
        )
        # The rollups the receiver and the drainer would have kept for those events.
        for resolution, unit, since in (("h", "hour", "8 days"), ("m", "minute", "2 hours")):
            cur.execute(
                f"""
                INSERT INTO console_portalrollup (portal_id, resolution, start, events_accepted,
                  events_duplicate,
                  events_refused, events_done, events_retried, events_failed, events_ignored,
                    dispatch_lag_sum,
                  dispatch_lag_max, rest_calls, rest_errors, rest_limited_503, rest_limited_429,
                  limiter_wait_seconds, operating_seconds, refreshes, refresh_failures)
                SELECT portal_id, '{resolution}', date_trunc('{unit}', received_at), count(*), 0, 0,
                  count(*) FILTER (WHERE status = 'done'), 0, count(*) FILTER (WHERE status = 'failed'), 0,
                  count(*), 2.0, 3 * count(*), count(*) FILTER (WHERE status = 'failed'), 0, 0,
                    0.1 * count(*),
                  0.05 * count(*), 0, 0
                FROM events_event WHERE received_at >= now() - interval '{since}'
                GROUP BY portal_id, date_trunc('{unit}', received_at)
                """
            )
            cur.execute(
                f"""
                INSERT INTO console_totalrollup (resolution, start, events_accepted, events_duplicate,
                  events_refused, events_done, events_retried, events_failed, events_ignored,
                    dispatch_lag_sum,
                  dispatch_lag_max, rest_calls, rest_errors, rest_limited_503, rest_limited_429,
                  limiter_wait_seconds, operating_seconds, refreshes, refresh_failures)
                SELECT resolution, start, sum(events_accepted), 0, 0, sum(events_done), 0,
                  sum(events_failed), 0,
                  sum(dispatch_lag_sum), max(dispatch_lag_max), sum(rest_calls), sum(rest_errors), 0, 0,
                  sum(limiter_wait_seconds), sum(operating_seconds), 0, 0
                FROM console_portalrollup WHERE resolution = '{resolution}' GROUP BY resolution, start
                """
            )
        # Call errors on 5% of the portals, a failed refresh on 1%.
        cur.execute(
            """
            INSERT INTO console_portalhealth (portal_id, last_call_at, last_error, last_error_at,
              recent_errors,
              refresh_failed_at, refresh_error, binding_failed_at, binding_error)
            SELECT id, now(), 'QUERY_LIMIT_EXCEEDED crm.deal.list', now() - interval '5 minutes',
              '[[1700000000, "QUERY_LIMIT_EXCEEDED crm.deal.list"]]'::jsonb,
              CASE WHEN id % 100 = 7 THEN now() END,
                CASE WHEN id % 100 = 7 THEN 'bitrix24_timeout' ELSE '' END,
              NULL, ''
            FROM portals_portal WHERE id % 20 = 7
            """
        )
    with connection.cursor() as cur:
        # What autovacuum does on a settled table: statistics and the visibility map (index-only scans).
        cur.execute("VACUUM ANALYZE")


def measure(client, url: str, requests: int) -> tuple[list[float], float, float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(3):
        assert client.get(url).status_code == 200, url
    times, cpu = [], []
    with CaptureQueriesContext(connection) as queries:
        for _ in range(requests):
            started, started_cpu = time.perf_counter(), time.process_time()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
            assert response.status_code == 200, url
    sql = sum(float(q["time"]) for q in queries.captured_queries) * 1000 / requests
    return times, statistics.mean(cpu), sql, len(queries) // requests


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--portals", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--reuse", action="store_true", help="keep the data of an earlier run of this size")
    args = parser.parse_args()
    from cryptography.fernet import Fernet

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/b24_console_bench")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/5")
    os.environ.setdefault("REDIS_KEY_PREFIX", "console-bench:")
    os.environ.setdefault("CELERY_QUEUE", "console-bench")
    key_file = ROOT / "var" / "console-bench.key"  # the same key across --reuse runs
    key_file.parent.mkdir(exist_ok=True)
    if not key_file.exists():
        key_file.write_text(Fernet.generate_key().decode())
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bitrix_app.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(32),
        DJANGO_ALLOWED_HOSTS="testserver",
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_SECURE_COOKIES="0",
        LOG_LEVEL="ERROR",
        BITRIX24_TOKEN_KEYS=key_file.read_text().strip(),
        BITRIX24_CONSOLE_FLUSH_SECONDS="0",
    )
    from bench.events_load import django_ready

    django_ready()
    from django.contrib.auth.models import User
    from django.test import Client

    from events.models import Event
    from portals.models import Portal

    have = (Portal.objects.count(), Event.objects.count())
    if not args.reuse or have != (args.portals, args.events):
        started = time.perf_counter()
        build(args.portals, args.events)
        print(
            f"built {args.portals:,} portals and {args.events:,} events "
            f"in {time.perf_counter() - started:.0f} s"
        )
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", "b@example.test", "x"
    )
    client = Client()
    client.force_login(user)
    busy = Portal.objects.get(pk=1)
    quiet = Portal.objects.order_by("pk")[args.portals // 2]
    pages = [
        ("dashboard (hour)", "/admin/"),
        ("dashboard (week)", "/admin/?period=week"),
        ("portal list", "/admin/portals/portal/"),
        ("portal list, needs action", "/admin/portals/portal/?attention=any"),
        ("portal list, failed in 24 h", "/admin/portals/portal/?events=failed"),
        ("portal list, search", "/admin/portals/portal/?q=p4242"),
        (
            f"portal page, busy ({args.events * BUSY_SHARE:,.0f} events)",
            f"/admin/portals/portal/{busy.pk}/change/",
        ),
        ("portal page, busy, week", f"/admin/portals/portal/{busy.pk}/change/?period=week"),
        ("portal page, typical", f"/admin/portals/portal/{quiet.pk}/change/"),
    ]
    print(
        f"\n{args.portals:,} portals, {args.events:,} events; "
        f"{args.requests} requests per page after 3 warm-ups\n"
    )
    # Wall time depends on what else the machine runs; CPU time is this process's own work
    # (Python and templates), SQL the database's answers as the process waited for them.
    print("target: p95 < 300 ms per page\n")
    print(f"| {'page':<40} | p50 ms | p95 ms | max ms | CPU ms | SQL ms | queries |")
    print(f"| {'-' * 40} | -----: | -----: | -----: | -----: | -----: | ------: |")
    for name, url in pages:
        times, cpu, sql, queries = measure(client, url, args.requests)
        p95 = statistics.quantiles(times, n=20)[18]
        row = [statistics.median(times), p95, max(times), cpu, sql]
        print(f"| {name:<40} | " + " | ".join(f"{v:6.1f}" for v in row) + f" | {queries:7d} |")


if __name__ == "__main__":
    main()
