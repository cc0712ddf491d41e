"""The event path in single-process mode (SQLite, no Redis), run in its own process.

test_single_process.py starts this with ``python -m tests.events.single_process_flow DB_PATH``: the
test session's own database is PostgreSQL, and Django can't switch engines within a process. It
prints one JSON object of observations for the test to assert on.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any


def main(database: str) -> dict[str, Any]:
    os.environ.update(
        DATABASE_URL=f"sqlite:///{database}",
        DJANGO_SETTINGS_MODULE="bitrix_app.settings",
        DJANGO_ALLOWED_HOSTS="testserver",
        DJANGO_SECRET_KEY="single-process-flow-key-not-a-secret-0123456789",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from events import registry
    from events.models import Event
    from events.services.shards import shard_lock
    from portals.models import Portal
    from tests.fixtures.events import form_body, load_payload

    call_command("migrate", verbosity=0)
    seen: list[str] = []
    release = threading.Event()

    @registry.on_event("ONCRMCONTACTUPDATE")
    def record(*, portal: Portal, payload: Any) -> None:
        release.wait(10)  # the handler is slow until the check below lets it finish
        seen.append(payload.object_id)

    payload = load_payload("oncrmcontactupdate__basic", data={"FIELDS": {"ID": "5"}})
    auth = payload["auth"]
    Portal.objects.create(
        member_id=auth["member_id"],
        domain=auth["domain"],
        client_endpoint=auth["client_endpoint"],
        server_endpoint=auth["server_endpoint"],
        application_token=auth["application_token"],
    )
    client = Client()

    def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = client.post(
            "/bitrix/events/", form_body(body), content_type="application/x-www-form-urlencoded"
        )
        return response.status_code, response.json()

    accepted = post(payload)  # answered while the handler is still held
    after_accepted = list(Event.objects.values_list("status", flat=True))
    handled_at_answer = list(seen)
    release.set()
    deadline = time.monotonic() + 10
    while Event.objects.exclude(status="done").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    after_handler = list(Event.objects.values_list("status", flat=True))
    duplicate = post(payload)
    forged = post({**payload, "auth": {**auth, "application_token": "f" * 32}})

    # The shard lock excludes a second holder (another thread here; the flock works the same
    # across processes) and is free again once released.
    shard = Event.objects.get().shard
    others: list[bool] = []

    def try_lock() -> None:
        with shard_lock(shard) as acquired:
            others.append(acquired)

    # The drain that just finished may hold the shard for its last look: take the lock once free.
    deadline = time.monotonic() + 10
    while True:
        with shard_lock(shard) as first:
            if first or time.monotonic() > deadline:
                thread = threading.Thread(target=try_lock)
                thread.start()
                thread.join()
                break
        time.sleep(0.05)
    try_lock()
    return {
        "accepted": accepted,
        "status_at_answer": after_accepted,
        "handled_at_answer": handled_at_answer,
        "status_after_handler": after_handler,
        "duplicate": duplicate,
        "forged": forged,
        "stored": Event.objects.count(),
        "handled": seen,
        "lock": [first, *others],
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
