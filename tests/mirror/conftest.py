"""Fixtures of the mirror's tests: the app served through a proxy that drops a share of the events."""

from __future__ import annotations

import gc
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
import requests


@pytest.fixture(autouse=True)
def _collect_thread_connections() -> Iterator[None]:
    """list_all's reader threads open database connections of their own (the portal's tokens);
    collected after each test so the test database can be dropped at the end."""
    yield
    gc.collect()


class DroppingProxy:
    """Forwards every request to ``upstream``; answers ``rate`` of the CRM events with a 503 itself,
    as a receiver that failed would: Bitrix24 (and the sandbox) never delivers those again."""

    def __init__(self, upstream: str, *, rate: float, seed: int = 15):
        self.upstream = upstream.rstrip("/")
        self.rate = rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.dropped: list[tuple[str, str]] = []
        self.forwarded = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.drops(self.path, body):
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                answer = requests.request(
                    self.command,
                    proxy.upstream + self.path,
                    data=body,
                    headers=headers,
                    timeout=30,
                    allow_redirects=False,
                )
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def drops(self, path: str, body: bytes) -> bool:
        if not path.startswith("/bitrix/events/"):
            return False
        form = parse_qs(body.decode("utf-8", "replace"))
        event = (form.get("event") or [""])[0].upper()
        if not event.startswith("ONCRM"):
            return False
        object_id = (form.get("data[FIELDS][ID]") or [""])[0]
        with self.lock:
            if self.random.random() < self.rate:
                self.dropped.append((event, object_id))
                return True
            self.forwarded += 1
        return False

    def __enter__(self) -> DroppingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
