"""`manage.py bitrix` as a newcomer meets it: no database yet, a typo in --portal, a certificate
the machine doesn't trust, a mistyped host, and an export whose bar should say how far it is.

Failures that cannot heal end at once, in one line that says what is wrong; the real command line
runs in a subprocess where the terminal or the database matters.
"""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import sys
import threading
import time
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from portals.bitrix.credentials import WebhookCredentials
from portals.bitrix.exceptions import Bitrix24ConfigError, Bitrix24TransportError
from portals.bitrix.transport import Transport, TransportConfig
from portals.cli.export import row_count
from portals.services.client import client_for_webhook

pytestmark = pytest.mark.django_db

UNKNOWN = "no-such-portal"


def refused(*args: str) -> tuple[int, str, float]:
    """Run ``bitrix <args>`` expecting a failure: (exit code, stderr, seconds it took)."""
    out, err = StringIO(), StringIO()
    started = time.monotonic()
    with pytest.raises(CommandError) as failed:
        call_command("bitrix", *args, stdout=out, stderr=err)
    assert out.getvalue() == ""
    return failed.value.returncode, err.getvalue(), time.monotonic() - started


def cli_env(tmp_path: Path, ca_bundle: str) -> dict[str, str]:
    """The environment of a fresh checkout: SQLite that nobody migrated, the sandbox's CA."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'never-migrated.sqlite3'}",
        "BITRIX24_CA_BUNDLE": ca_bundle,
    }


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "bitrix", *args],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def manage_on_a_terminal(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (so rich draws its bar): (exit code, stdout, terminal)."""
    leader, follower = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:  # read while it runs: a full terminal buffer would block the command
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the follower side is closed: the command has exited
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    done = subprocess.run(
        [sys.executable, "manage.py", "bitrix", *args],
        cwd=django_settings.BASE_DIR,
        env={**env, "TERM": "xterm-256color", "COLUMNS": "160"},
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
        timeout=120,
    )
    os.close(follower)
    reader.join(timeout=10)
    os.close(leader)
    return done.returncode, done.stdout, b"".join(chunks).decode(errors="replace")


# --- 1. no database ------------------------------------------------------------------------------


def test_a_webhook_needs_no_database(sandbox_portal, redis_client, tmp_path: Path) -> None:
    env = cli_env(tmp_path, sandbox_portal.ca_bundle)
    exported = tmp_path / "deals.jsonl"
    done = manage(
        "export", "crm.deal.list", "--webhook", sandbox_portal.webhook_url, "--out", str(exported), env=env
    )
    assert done.returncode == 0, done.stderr
    assert len(exported.read_text().splitlines()) == 200

    updates = tmp_path / "updates.jsonl"
    updates.write_text('{"id": 1, "fields": {"TITLE": "renamed"}}\n')
    done = manage(
        "import", "crm.deal.update", "--webhook", sandbox_portal.webhook_url, "--in", str(updates), env=env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"method": "crm.deal.update", "succeeded": 1, "failed": 0}


@pytest.mark.parametrize(
    "args",
    [
        ("call", "crm.deal.get", "id=1", "--portal", "some-portal"),
        ("events", "replay", "--failed"),
        ("events", "stats"),
    ],
)
def test_what_needs_the_database_says_to_migrate(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = manage(*args, env=cli_env(tmp_path, ""))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "python manage.py migrate" in errors[0], done.stderr
    assert done.stdout == ""


# --- 2. an unknown --portal ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("call", "crm.deal.get", "id=1"),
        ("export", "crm.deal.list", "--out", "-"),
        ("import", "crm.deal.update", "--in", os.devnull),
        ("events", "list"),
        ("events", "replay", "--failed"),
        ("events", "replay", "--id", "1"),
        ("events", "bind"),
        ("events", "reconcile"),
        ("events", "drain-offline"),
    ],
)
def test_an_unknown_portal_is_one_line_and_a_failure(args: tuple[str, ...]) -> None:
    code, err, _ = refused(*args, "--portal", UNKNOWN)
    assert code != 0
    assert err == f"error: no portal with member_id {UNKNOWN!r}\n"


# --- 3. failures that never heal end at once -----------------------------------------------------


def permanent_failures(webhook_url: str, tmp_path: Path) -> list[tuple[str, ...]]:
    updates = tmp_path / "updates.jsonl"
    updates.write_text('{"id": 1, "fields": {"TITLE": "x"}}\n')
    return [
        ("call", "crm.deal.get", "id=1", "--webhook", webhook_url),
        ("export", "crm.deal.list", "--webhook", webhook_url, "--out", "-"),
        ("import", "crm.deal.update", "--webhook", webhook_url, "--in", str(updates)),
    ]


def test_an_untrusted_certificate_fails_at_once(
    settings, sandbox_portal, sandbox, redis_client, tmp_path
) -> None:
    settings.BITRIX24_CA_BUNDLE = ""  # the sandbox's CA is not in the default bundle
    before = sandbox.counters()["requests"]["total"]
    for args in permanent_failures(sandbox_portal.webhook_url, tmp_path):
        code, err, seconds = refused(*args)
        assert code == 1 and err.count("\n") == 1
        assert "certificate" in err and "not trusted" in err and "BITRIX24_CA_BUNDLE" in err, err
        assert seconds < 1.0, f"{args[0]}: {seconds:.1f}s (retried as if transient)"
    assert sandbox.counters()["requests"]["total"] == before


def test_a_host_that_does_not_exist_fails_at_once(redis_client, tmp_path) -> None:
    url = "https://nonexistent.invalid/rest/1/not0the0secret/"  # .invalid never resolves
    for args in permanent_failures(url, tmp_path):
        code, err, seconds = refused(*args)
        assert code == 1 and err.count("\n") == 1
        assert "DNS: the host 'nonexistent.invalid' does not exist" in err, err
        assert "not0the0secret" not in err
        assert seconds < 1.0, f"{args[0]}: {seconds:.1f}s (retried as if transient)"


def test_a_refused_connection_stays_retryable() -> None:
    # What heals (the portal's server restarting) is still a transport error, which the client retries.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    credentials = WebhookCredentials(f"http://127.0.0.1:{port}/rest/1/secret/")
    with pytest.raises(Bitrix24TransportError) as failed:
        Transport(TransportConfig(connect_timeout=2)).post(credentials, "crm.deal.get", {"id": 1})
    assert not isinstance(failed.value, Bitrix24ConfigError) and failed.value.sent is False


# --- 4. the export's progress and summary --------------------------------------------------------


def test_row_count_is_the_lists_total(settings, sandbox_portal, redis_client) -> None:
    settings.BITRIX24_CA_BUNDLE = sandbox_portal.ca_bundle
    client = client_for_webhook(url=sandbox_portal.webhook_url)
    assert row_count(client, "crm.deal.list", {}) == 200
    assert row_count(client, "crm.deal.list", {"filter": {"<=ID": 7}}) == 7


def test_export_shows_its_total_and_a_plain_summary(sandbox_portal, redis_client, tmp_path: Path) -> None:
    env = cli_env(tmp_path, sandbox_portal.ca_bundle)
    target = tmp_path / "deals.jsonl"
    code, out, terminal = manage_on_a_terminal(
        "export", "crm.deal.list", "--webhook", sandbox_portal.webhook_url, "--out", str(target), env=env
    )
    assert code == 0, terminal
    assert "200 of 200 rows" in terminal
    assert out == "exported 200 rows of crm.deal.list\n"  # on stdout: a success is no error

    updates = tmp_path / "updates.jsonl"
    updates.write_text('{"id": 1, "fields": {"TITLE": "renamed"}}\n')
    code, _, terminal = manage_on_a_terminal(
        "import", "crm.deal.update", "--webhook", sandbox_portal.webhook_url, "--in", str(updates), env=env
    )
    assert code == 0, terminal
    summary = next(line for line in terminal.splitlines() if "rows succeeded" in line)
    assert "\x1b[31;1m" not in summary  # Django's style for stderr: bold red, as for an error
