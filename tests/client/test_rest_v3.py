"""REST 3.0 writes retried safely with an Idempotency-Key.

The sandbox does not serve REST 3.0 (/rest/api/), so this one test runs against a minimal local
HTTP endpoint implementing exactly the documented Idempotency-Key contract (protocol §11): the
first successful answer per key is stored and replayed with ``Idempotent-Replayed: true``
without running the method again. The first answer is lost (connection closed after the method
ran), which is the case the key exists for.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from portals.bitrix.client import Bitrix24Client
from portals.bitrix.credentials import WebhookCredentials
from portals.bitrix.exceptions import Bitrix24AccessDenied, Bitrix24WriteOutcomeUnknown
from portals.bitrix.transport import method_url
from tests.fixtures.client import RecordingSleep


class Portal3:
    def __init__(self) -> None:
        self.created: list[dict] = []
        self.stored: dict[str, dict] = {}
        self.seen: list[tuple[str, str | None]] = []
        self.lose_next_answer = True


def make_server(state: Portal3) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = self.headers.get("Idempotency-Key")
            state.seen.append((self.path, key))
            if self.path.endswith("/tasks.task.delete"):
                return self.answer(
                    403,
                    {
                        "error": {
                            "code": "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION",
                            "message": "Access denied",
                        }
                    },
                )
            if key and key in state.stored:
                return self.answer(200, state.stored[key], replayed=True)
            state.created.append(body["fields"])
            envelope = {
                "result": {"item": {"id": len(state.created), **body["fields"]}},
                "time": {"operating": 0.1},
            }
            if key:
                state.stored[key] = envelope
            if state.lose_next_answer:
                state.lose_next_answer = False
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)  # ran, but the answer never leaves
                return
            self.answer(200, envelope)

        def answer(self, status: int, payload: dict, replayed: bool = False) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if replayed:
                self.send_header("Idempotent-Replayed", "true")
            self.end_headers()
            self.wfile.write(data)

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def portal3():
    state = Portal3()
    server = make_server(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/rest/7/s3cr3t/"
    server.shutdown()
    server.server_close()


def test_rest3_addresses() -> None:
    assert method_url("https://p.example/rest/7/abc/", "tasks.task.add", v3=True) == (
        "https://p.example/rest/api/7/abc/tasks.task.add"
    )
    assert (
        method_url("https://p.example/rest/", "tasks.task.add", v3=True)
        == "https://p.example/rest/api/tasks.task.add"
    )


def test_a_lost_rest3_write_is_retried_once_with_the_same_key(portal3) -> None:
    state, url = portal3
    client = Bitrix24Client(WebhookCredentials(url), sleep=RecordingSleep(cap=0))
    result = client.call("tasks.task.add", {"fields": {"title": "exactly once"}}, v3=True)
    assert result["item"]["title"] == "exactly once"
    assert len(state.created) == 1  # the retry was answered from the stored first answer
    paths = {p for p, _ in state.seen}
    keys = [k for _, k in state.seen]
    assert paths == {"/rest/api/7/s3cr3t/tasks.task.add"}
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0]


def test_the_same_write_on_rest2_is_not_resent(portal3) -> None:
    state, url = portal3
    client = Bitrix24Client(WebhookCredentials(url), sleep=RecordingSleep(cap=0))
    with pytest.raises(Bitrix24WriteOutcomeUnknown):
        client.call("tasks.task.add", {"fields": {"title": "maybe"}}, idempotency_key=None)
    assert len(state.seen) == 1 and state.seen[0][1] is None


def test_rest3_errors_map_by_status_when_the_code_is_new(portal3) -> None:
    _, url = portal3
    client = Bitrix24Client(WebhookCredentials(url))
    with pytest.raises(Bitrix24AccessDenied) as denied:
        client.call("tasks.task.delete", {"id": 1}, v3=True)
    assert denied.value.code == "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION"
