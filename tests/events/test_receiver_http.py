"""The receiver over a real socket: the size check happens before the body is read."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_oversized_event_is_refused_without_reading_the_body(live_server, settings):
    settings.BITRIX24_EVENT_MAX_BYTES = 4096
    parts = urlsplit(live_server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        # Announce 50 MB and send none of it: an answer can only come from the header check.
        sock.sendall(
            b"POST /bitrix/events/ HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 52428800\r\n\r\n"
        )
        started = time.monotonic()
        answer = b""
        while b"}" not in answer and time.monotonic() - started < 5:  # the JSON body has arrived
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"EventTooLarge" in answer
    assert time.monotonic() - started < 5
