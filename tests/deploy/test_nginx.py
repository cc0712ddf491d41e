"""deploy/nginx: accepted by Debian's nginx (`nginx -t`), and in front of deploy/web.sh it keeps the
receiver answering through 50 stalled uploads, limits bodies and /api/, speaks only TLS 1.2+, and
tells the app who the client is the way the app's settings expect."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import requests

from portals.conf import AppSettings

from .conftest import DEPLOY, RunningNginx, WebServer, nginx_command, render_nginx

STALLED = 50
# nginx's client_body_timeout is 10 s: everything below happens while the uploads are still held.
ANSWER_WITHIN = 5.0


def test_nginx_accepts_the_config(nginx_binary, tmp_path):
    rendered = render_nginx(tmp_path, upstream="127.0.0.1:9")
    done = subprocess.run(nginx_command(rendered, "-t"), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr
    # The control: the same check refuses a config missing one of its include files.
    (tmp_path / "bitrix24" / "allow-admin.conf").unlink()
    broken = subprocess.run(nginx_command(rendered, "-t"), capture_output=True, text=True, timeout=30)
    assert broken.returncode != 0 and "allow-admin.conf" in broken.stderr


def _events_location() -> str:
    site = (DEPLOY / "nginx" / "bitrix24.conf").read_text()
    match = re.search(r"location = /bitrix/events/ \{(.*?)\}", site, re.S)
    assert match, "no location for the event receiver"
    return match.group(1)


def test_event_body_limit_equals_the_receivers():
    limit = re.search(r"client_max_body_size (\d+);", _events_location())
    assert limit and int(limit.group(1)) == AppSettings().event_max_bytes


def _tls(nginx: RunningNginx, source: str = "127.0.0.1", timeout: float = 10.0) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=nginx.ca)
    raw = socket.create_connection(
        ("127.0.0.1", nginx.rendered.https_port), timeout=timeout, source_address=(source, 0)
    )
    return context.wrap_socket(raw, server_hostname="localhost")


@contextmanager
def stalled_uploads(connect, count: int, headers: bytes = b"") -> Iterator[list[socket.socket]]:
    """``count`` connections that sent an event's headers and a sliver of its body, then stall."""
    with ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(connect())
            sock.sendall(
                b"POST /bitrix/events/ HTTP/1.1\r\nHost: localhost\r\n"
                + headers
                + b"Content-Type: application/x-www-form-urlencoded\r\n"
                + b"Content-Length: 60000\r\n\r\nevent=ONCRM"
            )
            sockets.append(sock)
        yield sockets


def test_the_receiver_answers_through_50_stalled_uploads(nginx: RunningNginx):
    with stalled_uploads(lambda: _tls(nginx), STALLED) as sockets:
        started = time.monotonic()
        event = requests.post(
            f"{nginx.https}/bitrix/events/",
            data={"event": "ONCRMDEALUPDATE"},
            verify=nginx.ca,
            timeout=ANSWER_WITHIN,
        )
        admin = requests.get(f"{nginx.https}/admin/login/", verify=nginx.ca, timeout=ANSWER_WITHIN)
        elapsed = time.monotonic() - started
        # The app itself answered (its refusal of an event without auth), not nginx.
        assert event.status_code == 400 and event.json()["error"] == "InvalidEventPayload"
        assert admin.status_code == 200 and b"csrfmiddlewaretoken" in admin.content
        assert elapsed < ANSWER_WITHIN
        # The uploads were still held open by nginx meanwhile (not refused).
        still_open = 0
        for sock in sockets:
            sock.setblocking(False)
            try:
                still_open += sock.recv(1) == b""  # closed
            except (ssl.SSLWantReadError, BlockingIOError):
                still_open += 1
        assert still_open == STALLED


def test_without_nginx_the_same_stalled_uploads_starve_the_receiver(web_server: WebServer):
    """The control: granian hands a request to a thread before its body is read, so the web
    process's four threads wait on stalled bodies and nothing else is answered."""

    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", web_server.port), timeout=10)

    # Sent as nginx would (X-Forwarded-Proto), so the production settings read the body instead
    # of redirecting plain http to https first.
    https = {"X-Forwarded-Proto": "https"}
    alone = requests.post(f"{web_server.url}/bitrix/events/", data={"event": "X"}, headers=https, timeout=5)
    assert alone.status_code == 400
    with stalled_uploads(connect, STALLED, headers=b"X-Forwarded-Proto: https\r\n"):
        time.sleep(0.5)
        with pytest.raises(requests.Timeout):
            requests.post(f"{web_server.url}/bitrix/events/", data={"event": "X"}, headers=https, timeout=3)


def test_event_bodies_above_the_limit_are_refused_by_nginx(nginx: RunningNginx):
    limit = AppSettings().event_max_bytes
    body = b"event=" + b"x" * (limit - 6)
    at_limit = requests.post(
        f"{nginx.https}/bitrix/events/",
        data=body,
        verify=nginx.ca,
        timeout=10,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    over = requests.post(
        f"{nginx.https}/bitrix/events/",
        data=body + b"x",
        verify=nginx.ca,
        timeout=10,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert at_limit.status_code == 400 and "X-Request-ID" in at_limit.headers  # the app's answer
    assert over.status_code == 413 and "X-Request-ID" not in over.headers  # nginx's


def test_tls_below_1_2_is_refused_and_hsts_is_sent_once(nginx: RunningNginx):
    context = ssl.create_default_context(cafile=nginx.ca)
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with socket.create_connection(("127.0.0.1", nginx.rendered.https_port), timeout=10) as raw:
            context.wrap_socket(raw, server_hostname="localhost")
    with _tls(nginx) as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
    response = requests.get(f"{nginx.https}/bitrix/install/", verify=nginx.ca, timeout=10)
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"  # one header, nginx's
    plain = requests.get(
        f"http://localhost:{nginx.rendered.http_port}/bitrix/app/", allow_redirects=False, timeout=10
    )
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://localhost/")


def test_the_app_sees_https_and_the_client_nginx_saw(nginx: RunningNginx, web_server: WebServer):
    # X-Forwarded-Proto: the production settings redirect plain http, but not what nginx says was https.
    direct = requests.get(f"{web_server.url}/bitrix/install/", allow_redirects=False, timeout=10)
    assert direct.status_code == 301
    proxied = requests.get(
        f"{nginx.https}/bitrix/install/", verify=nginx.ca, allow_redirects=False, timeout=10
    )
    assert proxied.status_code != 301

    def metrics_from(source: str, forged: str = "") -> int:
        with _tls(nginx, source=source) as sock:
            forged_header = f"X-Forwarded-For: {forged}\r\n" if forged else ""
            request = f"GET /metrics HTTP/1.1\r\nHost: localhost\r\n{forged_header}Connection: close\r\n\r\n"
            sock.sendall(request.encode())
            head = sock.recv(64).decode()
        return int(head.split()[1])

    # The scraper (127.0.0.5) is let in; another address claiming to be it is not: nginx overwrites
    # X-Forwarded-For, and the app believes it only from nginx.
    assert metrics_from("127.0.0.5") == 200
    assert metrics_from("127.0.0.6", forged="127.0.0.5") == 403


def test_admin_allow_list_and_api_rate_limit(nginx: RunningNginx):
    # allow-admin.conf lets 127.0.0.1 in and denies the rest.
    with _tls(nginx, source="127.0.0.7") as sock:
        sock.sendall(b"GET /admin/login/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert sock.recv(64).split()[1] == b"403"
    # /api/: 100 r/min (one every 0.6 s) with a burst of 20, per address: 21 at once pass, then 429
    # until the bucket refills, which a few more requests at once can't wait for.
    with requests.Session() as session:
        statuses = [
            session.get(f"{nginx.https}/api/ping", verify=nginx.ca, timeout=10).status_code for _ in range(30)
        ]
    assert 429 not in statuses[:21] and statuses[21:].count(429) >= 5, statuses
