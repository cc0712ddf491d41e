"""CPU cost of one event through Django's full request path, in process (no HTTP server).

Complements bench/events_load.py on a busy machine: CPU time per request (time.process_time)
barely depends on what else runs, while throughput does. Runs the web process's WSGI entry point
(bitrix_app.wsgi: the receiver's lean middleware lane, the real view, PostgreSQL INSERT + durable
commit, the Redis wake-up) and, for comparison, Django's plain WSGI handler with every middleware
(the full site), for accepted and forged events, and prints CPU and wall time per request and
the implied ceiling on 2 cores.

    .venv/bin/python bench/events_hotpath.py [--requests 2000]

Uses DATABASE_URL (default: the b24_events_bench database) and REDIS_URL (default db 4).
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.events_load import django_ready, in_process_environ  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/b24_events_bench")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/4")
    os.environ.setdefault("REDIS_KEY_PREFIX", "events-bench:")
    os.environ.setdefault("CELERY_QUEUE", "events-bench-hotpath")  # no worker: tasks just queue
    in_process_environ(BITRIX24_EVENT_HANDLER_MODULES="bench.events_recorder")
    django_ready()
    from django.core.handlers.wsgi import WSGIHandler
    from qs_codec import encode

    from events.models import Event
    from portals.models import Portal

    member_id, token = secrets.token_hex(16), secrets.token_hex(16)
    portal = Portal.objects.create(
        member_id=member_id,
        domain="hotpath.bench.test",
        client_endpoint="https://hotpath.bench.test/rest/",
        server_endpoint="https://oauth.bitrix.info/rest/",
        application_token=token,
    )
    ts = str(int(time.time()))

    def body(i: int, application_token: str) -> bytes:
        auth = {
            "access_token": "a" * 32, "expires": ts, "expires_in": "3600", "scope": "crm",
            "domain": "hotpath.bench.test", "server_endpoint": "https://oauth.bitrix.info/rest/",
            "status": "F", "client_endpoint": "https://hotpath.bench.test/rest/", "member_id": member_id,
            "user_id": "1", "application_token": application_token,
        }  # fmt: skip
        return encode(
            {"event": "ONCRMACTIVITYUPDATE", "event_handler_id": "17", "data": {"FIELDS": {"ID": str(i)}},
             "ts": ts, "auth": auth}
        ).encode()  # fmt: skip

    from bitrix_app.wsgi import application as lean_entry

    full_site = WSGIHandler()  # every middleware
    statuses: list[str] = []

    def run(bodies: list[bytes], handler=lean_entry) -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        for raw in bodies:
            environ = {
                "REQUEST_METHOD": "POST", "PATH_INFO": "/bitrix/events/", "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1", "wsgi.input": io.BytesIO(raw),
                "CONTENT_LENGTH": str(len(raw)), "CONTENT_TYPE": "application/x-www-form-urlencoded",
                "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            }  # fmt: skip
            b"".join(handler(environ, lambda status, headers: statuses.append(status)))
        n = len(bodies)
        return (time.process_time() - cpu) / n * 1000, (time.perf_counter() - wall) / n * 1000

    try:
        run([body(i, token) for i in range(100)])  # warm-up
        run([body(100 + i, token) for i in range(100)], full_site)
        results = {}
        for name, entry in (("lean lane", lean_entry), ("full site", full_site)):
            offset = 10_000 if name == "lean lane" else 20_000
            results[f"accepted, {name}"] = run([body(offset + i, token) for i in range(args.requests)], entry)
            assert statuses[-1].startswith("200"), statuses[-1]
            results[f"forged, {name}"] = run([body(i, "f" * 32) for i in range(args.requests)], entry)
            assert statuses[-1].startswith("403"), statuses[-1]
        stored = Event.objects.filter(portal=portal).count()
    finally:
        Event.objects.filter(portal=portal).delete()
        portal.delete()
    load = os.getloadavg()[0]
    print(f"\nOne process, {args.requests} requests per path, load average {load:.1f}; "
          f"stored {stored} (= {2 * args.requests + 200} accepted)\n")  # fmt: skip
    print("| path, entry point | CPU ms/request | wall ms/request | CPU ceiling on 2 cores (req/s) |")
    print("|---|---:|---:|---:|")
    for name, (cpu, wall) in sorted(results.items()):
        print(f"| {name} | {cpu:.3f} | {wall:.3f} | {2000 / cpu:.0f} |")


if __name__ == "__main__":
    main()
