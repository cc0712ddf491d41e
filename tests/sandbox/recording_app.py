"""A tiny app that records every request it gets, for asserting what the sandbox put on the wire.

A threaded http.server on a free loopback port; each request is stored with method, path, query,
headers and raw body. Per-path behaviour (status, delay) is settable so tests can make a handler
slow or failing. Import the `recording_app` fixture into a test module to use it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sandbox.lifecycle.forms import php_form_decode


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    received_at: float

    @property
    def form(self) -> dict[str, Any]:
        """The body decoded PHP-style (nested dicts), as the app's event parser would see it."""
        return php_form_decode(self.body)

    @property
    def flat_form(self) -> dict[str, list[str]]:
        """The body as raw key → values, brackets kept (what is literally on the wire)."""
        return parse_qs(self.body.decode(), keep_blank_values=True)


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0
    body: bytes = b"OK"


@dataclass
class RecordingApp:
    host: str
    port: int
    requests: list[Recorded] = field(default_factory=list)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def behave(self, path: str, *, status: int = 200, delay: float = 0.0) -> None:
        self.behaviours[path] = Behaviour(status=status, delay=delay)

    def received(self, path: str | None = None, *, event: str | None = None) -> list[Recorded]:
        with self.lock:
            items = list(self.requests)
        if path is not None:
            items = [r for r in items if r.path == path]
        if event is not None:
            items = [r for r in items if r.form.get("event") == event]
        return items

    def wait_for(
        self, count: int, *, path: str | None = None, event: str | None = None, timeout: float = 10.0
    ):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = self.received(path, event=event)
            if len(items) >= count:
                return items
            time.sleep(0.02)
        raise AssertionError(
            f"expected {count} request(s) to {path} {event}, got {len(self.received(path, event=event))}"
        )

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
        self.behaviours.clear()


def _handler_for(app: RecordingApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with app.lock:
                app.requests.append(
                    Recorded(
                        method=self.command,
                        path=parts.path,
                        query=parse_qs(parts.query, keep_blank_values=True),
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                        received_at=time.monotonic(),
                    )
                )
            behaviour = app.behaviours.get(parts.path, Behaviour())
            if behaviour.delay:
                time.sleep(behaviour.delay)
            self.send_response(behaviour.status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(behaviour.body)))
            self.end_headers()
            self.wfile.write(behaviour.body)

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            return

    return Handler


@pytest.fixture
def recording_app() -> Iterator[RecordingApp]:
    """A recording app on 127.0.0.1 and a free port (port 0: the OS picks)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(RecordingApp("127.0.0.1", 0)))
    app = RecordingApp("127.0.0.1", server.server_address[1])
    server.RequestHandlerClass = _handler_for(app)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app
    server.shutdown()
    server.server_close()
