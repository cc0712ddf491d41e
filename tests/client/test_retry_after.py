"""A server's Retry-After is honoured by the one retry seam (a floor on the backoff, never past its cap)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from portals.bitrix.client import Bitrix24Client, RetryPolicy
from portals.bitrix.credentials import WebhookCredentials
from portals.bitrix.retry import Backoff, retry_after_seconds

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("99999999999999999", 3600.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
        ("", None),
        (None, None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("٣", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date(header, seconds):
    assert retry_after_seconds(header, now=NOW) == seconds


class _Portal(BaseHTTPRequestHandler):
    """Answers the first request 503 with Retry-After: 2, then the call's result."""

    answered = 0

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).answered += 1
        if type(self).answered == 1:
            body, status, extra = b"<html>maintenance</html>", 503, {"Retry-After": "2"}
        else:
            body, status, extra = json.dumps({"result": {"ok": True}, "time": {}}).encode(), 200, {}
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **extra}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_client_waits_at_least_what_the_server_asked_for():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Portal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    slept: list[float] = []
    try:
        client = Bitrix24Client(
            WebhookCredentials(f"http://127.0.0.1:{server.server_port}/rest/1/secret/"),
            retry=RetryPolicy(backoff=Backoff(base=0.01, cap=5.0)),
            sleep=slept.append,
        )
        assert client.call("profile") == {"ok": True}
    finally:
        server.shutdown()
        server.server_close()
    # Without the header the backoff would wait at most 0.01 s; the server asked for 2.
    assert max(slept) >= 2.0
    assert _Portal.answered == 2
