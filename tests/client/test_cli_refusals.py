"""`manage.py bitrix`: bad arguments and non-Bitrix answers end in one error line and a non-zero exit.

Nothing is sent for a refused argument (the sandbox's request counter proves it), and no
traceback reaches the operator.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from portals.cli.common import MAX_JSON_DEPTH, check_method, parse_pairs

pytestmark = pytest.mark.django_db


@pytest.fixture
def cli_env(settings, sandbox_portal, redis_client):
    settings.BITRIX24_CA_BUNDLE = sandbox_portal.ca_bundle
    settings.BITRIX24_ALLOW_HTTP = False
    return sandbox_portal


def refused(*args: str) -> tuple[int, str]:
    """Run ``bitrix <args>`` expecting a failure: (exit code, stderr)."""
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("bitrix", *args, stdout=out, stderr=err)
    assert out.getvalue() == ""
    return failed.value.returncode, err.getvalue()


def requests_seen(sandbox) -> int:
    return int(sandbox.counters()["requests"]["total"])


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_deeply_nested_json_is_one_error_line(cli_env, sandbox, depth) -> None:
    # 100 000 levels was a RecursionError traceback from the JSON parser.
    before = requests_seen(sandbox)
    code, err = refused(
        "call", "crm.deal.add", f"fields=json:{nested(depth)}", "--webhook", cli_env.webhook_url
    )
    assert code == 1
    assert err == f"error: fields: JSON nested deeper than {MAX_JSON_DEPTH} levels\n"
    assert requests_seen(sandbox) == before


def test_json_within_the_depth_is_taken() -> None:
    assert parse_pairs([f"fields=json:{nested(MAX_JSON_DEPTH - 1)}"])["fields"] is not None
    with pytest.raises(argparse.ArgumentTypeError, match="invalid JSON"):
        parse_pairs(["fields=json:{oops"])


@pytest.mark.parametrize(
    "method",
    ["crm.deal.list?auth=x#", "crm.deal.list/../../oauth", "crm..deal", ".crm", "crm.deal.", "crm deal", ""],
)
def test_a_method_name_that_is_not_one_is_refused(cli_env, sandbox, method) -> None:
    before = requests_seen(sandbox)
    for args in (
        ("call", method),
        ("export", method, "--out", "-"),
        ("import", method, "--in", os.devnull),
    ):
        code, err = refused(*args, "--webhook", cli_env.webhook_url)
        assert code in (1, 2) and err.startswith("error: not a method name") and err.count("\n") == 1
    assert requests_seen(sandbox) == before


def test_method_names_of_the_rest_api_pass() -> None:
    for method in ("crm.deal.list", "catalog.product.getFieldsByFilter", "im.dialog.messages.get", "batch"):
        assert check_method(method) == method


def test_an_http_webhook_is_refused_without_allow_http(cli_env, sandbox, tmp_path: Path) -> None:
    secret = cli_env.webhook_url.rstrip("/").rsplit("/", 1)[-1]
    http_url = "http://" + cli_env.webhook_url.split("://", 1)[1]
    before = requests_seen(sandbox)
    code, err = refused("call", "crm.deal.get", "id=1", "--webhook", http_url)
    assert code == 1 and err.count("\n") == 1 and "https://" in err
    assert secret not in err  # the URL holds the webhook's secret: never echoed
    # export refuses it before opening (and truncating) its output file
    out = tmp_path / "deals.jsonl"
    out.write_text("kept\n")
    code, err = refused("export", "crm.deal.list", "--webhook", http_url, "--out", str(out))
    assert code == 2 and out.read_text() == "kept\n"
    assert requests_seen(sandbox) == before


class EmptyObject(BaseHTTPRequestHandler):
    """A loopback server that is not Bitrix24: every POST is answered 200 ``{}``."""

    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def not_bitrix() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EmptyObject)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/rest/1/not0a0secret/"
    finally:
        server.shutdown()
        server.server_close()


def test_an_answer_without_result_is_an_error(settings, not_bitrix) -> None:
    settings.BITRIX24_ALLOW_HTTP = True  # the test server is plain http
    for extra in ((), ("--raw",)):
        code, err = refused("call", "crm.deal.get", "id=1", "--webhook", not_bitrix, *extra)
        assert code == 1
        assert err == "error: the answer has no 'result': not a Bitrix24 REST answer\n"


def test_out_of_range_numbers_are_refused() -> None:
    with pytest.raises(CommandError, match="expected an integer from 1 to 64"):
        call_command("bitrix", "call", "crm.deal.get", "--concurrency", "0", stderr=StringIO())
    with pytest.raises(CommandError, match="expected an integer from 1 to 64"):
        call_command("bitrix", "export", "crm.deal.list", "--parallel", "9" * 400, stderr=StringIO())


def test_an_unknown_portal_is_one_error_line() -> None:
    code, err = refused("call", "crm.deal.get", "--portal", "no-such-portal")
    assert code == 1 and err == "error: no portal with member_id 'no-such-portal'\n"


def test_the_real_command_line_prints_no_traceback(tmp_path: Path) -> None:
    db = django_settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "BITRIX24_WEBHOOK_URL": "https://portal.example.test/rest/1/secret/",
    }
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "bitrix",
            "call",
            "crm.deal.add",
            f"fields=json:{nested(20_000)}",
        ],  # an argument is at most 128 KiB
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr
    assert f"error: fields: JSON nested deeper than {MAX_JSON_DEPTH} levels" in done.stderr.splitlines()
    assert json.dumps(done.stdout) == '""'
