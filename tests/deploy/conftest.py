"""Fixtures for the deploy kit: deploy/nginx rendered for loopback ports and run with Debian's nginx,
in front of the web process started by deploy/web.sh. Everything listens on 127.0.0.1 and stops
with the fixture."""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_answering(url: str, timeout: float = 30.0, **kwargs: object) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, timeout=2, **kwargs)  # type: ignore[arg-type]
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def make_certificate(directory: Path) -> None:
    """A self-signed certificate for localhost/127.0.0.1 as certs/fullchain.pem and certs/privkey.pem."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certs = directory / "certs"
    certs.mkdir()
    (certs / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (certs / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


@dataclass
class RenderedNginx:
    directory: Path
    conf: Path
    https_port: int
    http_port: int


def render_nginx(directory: Path, *, upstream: str) -> RenderedNginx:
    """deploy/nginx as shipped, with only its listen ports and upstream changed for loopback.

    nginx.conf is the minimal main file a distribution provides around conf.d (events, http, pid,
    logs); deploy/nginx/bitrix24.conf is included into its http block unchanged otherwise.
    """
    https_port, http_port = free_port(), free_port()
    shutil.copytree(DEPLOY / "nginx" / "bitrix24", directory / "bitrix24")
    (directory / "bitrix24" / "upstream.conf").write_text(f"server {upstream};\n")
    site = (DEPLOY / "nginx" / "bitrix24.conf").read_text()
    replacements = {
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
    }
    for old, new in replacements.items():
        assert old in site, old
        site = site.replace(old, new)
    (directory / "bitrix24.conf").write_text(site)
    make_certificate(directory)
    (directory / "logs").mkdir()
    # As root, nginx's workers would run as "nobody", who can't reach a private temporary directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = (
        f"{user}worker_processes 1;\npid nginx.pid;\nerror_log logs/error.log warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n  access_log off;\n  client_body_temp_path body;\n  proxy_temp_path proxy;\n"
        "  include bitrix24.conf;\n}\n"
    )
    conf = directory / "nginx.conf"
    conf.write_text(main)
    return RenderedNginx(directory, conf, https_port, http_port)


def nginx_command(rendered: RenderedNginx, *args: str) -> list[str]:
    assert NGINX is not None
    return [NGINX, "-p", f"{rendered.directory}/", "-c", str(rendered.conf), *args]


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    if NGINX is None:
        pytest.skip("nginx is not installed (.ci/run installs Debian's nginx-light)")
    return NGINX


@dataclass
class WebServer:
    url: str
    port: int


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """deploy/web.sh (granian, 1 process, 4 threads) with production settings, on a loopback port.

    Single-process mode (no Redis) and a scratch SQLite database: the requests these tests send are
    refused or answered before any table is read. nginx on 127.0.0.1 is the trusted proxy; the
    scraper is 127.0.0.5.
    """
    port = free_port()
    scratch = tmp_path_factory.mktemp("web")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(scratch),
        "PYTHON": sys.executable,
        "DJANGO_SETTINGS_MODULE": "bitrix_app.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "deploy-test-" + "x9" * 30,
        "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
        "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
        "BITRIX24_TOKEN_KEYS": "dGVzdC1rZXktMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=",
        "TRUSTED_PROXIES": "127.0.0.1/32",
        "METRICS_ALLOWED_IPS": "127.0.0.5/32",
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "4",
        "LOG_LEVEL": "WARNING",
    }
    log = open(scratch / "web.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(DEPLOY / "web.sh")], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/healthz")
        yield WebServer(f"http://127.0.0.1:{port}", port)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@dataclass
class RunningNginx:
    rendered: RenderedNginx

    @property
    def https(self) -> str:
        return f"https://localhost:{self.rendered.https_port}"

    @property
    def ca(self) -> str:
        return str(self.rendered.directory / "certs" / "fullchain.pem")


@pytest.fixture(scope="module")
def nginx(
    nginx_binary: str, web_server: WebServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningNginx]:
    """deploy/nginx in front of :func:`web_server`, in the foreground, stopped with the module."""
    rendered = render_nginx(tmp_path_factory.mktemp("nginx"), upstream=f"127.0.0.1:{web_server.port}")
    process = subprocess.Popen(nginx_command(rendered, "-g", "daemon off;"), stderr=subprocess.PIPE)
    running = RunningNginx(rendered)
    try:
        wait_until_answering(f"{running.https}/healthz", verify=running.ca)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
