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


# --- the sandbox under test ------------------------------------------------------------------------------


@dataclass
class Life:
    """Test helper: the sandbox's control API and REST, plus the recording app its URLs point at."""

    server: Any
    app: RecordingApp

    @property
    def control_url(self) -> str:
        return str(self.server.state["control_url"])

    def portal(self, index: int = 1) -> dict[str, Any]:
        return self.server.state["portals"][index - 1]

    def control(
        self, path: str, *, expect: int = 200, method: str = "POST", **payload: Any
    ) -> dict[str, Any]:
        import requests

        url = self.control_url + path
        response = (
            requests.get(url, params=payload, timeout=30)
            if method == "GET"
            else requests.post(url, json=payload, timeout=30)
        )
        assert response.status_code == expect, (path, response.status_code, response.text)
        return response.json()

    def wait(self) -> None:
        self.control("lifecycle/deliveries/wait", timeout=20)

    def frame(self, index: int = 1, **payload: Any) -> dict[str, Any]:
        return self.control("lifecycle/frame", portal=index, **payload)

    def token(self, index: int = 1, user_id: int | None = None) -> str:
        return self.frame(index, **({"user_id": user_id} if user_id else {}))["body"]["AUTH_ID"]

    def rest(self, method: str, token: str, index: int = 1, **params: Any):
        import requests

        return requests.post(
            f"{self.portal(index)['http_endpoint']}{method}.json", json={**params, "auth": token}, timeout=30
        )

    def crm(self, action: str, index: int = 1, **fields: Any) -> dict[str, Any]:
        return self.control("lifecycle/crm", portal=index, action=action, **fields)

    def deliveries(self, **query: Any) -> list[dict[str, Any]]:
        return self.control("lifecycle/deliveries", method="GET", **query)["deliveries"]


@pytest.fixture
def life(sandbox, recording_app) -> Iterator[Life]:
    """The (freshly reset) session sandbox, its app URLs pointed at this test's recording app."""
    helper = Life(sandbox, recording_app)
    helper.control(
        "lifecycle",
        urls={
            "installer": f"{recording_app.url}/bitrix/install/",
            "install_event": f"{recording_app.url}/bitrix/install/",
            "app_page": f"{recording_app.url}/bitrix/app/",
            "placement": f"{recording_app.url}/bitrix/placement/{{name}}/",
            "events": f"{recording_app.url}/bitrix/events/",
        },
        finish_mode="auto",
        delivery_timeout=10,
    )
    yield helper
    helper.wait()
    # Point the session sandbox's app card back at its own app_url for the tests that follow.
    base = str(sandbox.state["app_url"]).rstrip("/")
    helper.control(
        "lifecycle",
        urls={
            "installer": f"{base}/bitrix/install/",
            "install_event": f"{base}/bitrix/install/",
            "app_page": f"{base}/bitrix/app/",
            "placement": f"{base}/bitrix/placement/{{name}}/",
            "events": f"{base}/bitrix/events/",
        },
        finish_mode="auto",
        offline_extended={str(i + 1): True for i in range(len(sandbox.state["portals"]))},
    )
