"""`manage.py bitrix call|export|import` against the sandbox, as an operator would run them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def cli_env(settings, sandbox_portal, redis_client):
    settings.BITRIX24_CA_BUNDLE = sandbox_portal.ca_bundle
    return sandbox_portal


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("bitrix", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_call_prints_the_result(cli_env) -> None:
    out, _ = run(
        "call",
        "crm.deal.list",
        "filter[>ID]=2",
        "filter[<=ID]=4",
        "select[]=ID",
        "--webhook",
        cli_env.webhook_url,
    )
    assert [row["ID"] for row in json.loads(out)] == ["3", "4"]


def test_call_takes_the_webhook_from_the_environment(cli_env, monkeypatch) -> None:
    monkeypatch.setenv("BITRIX24_WEBHOOK_URL", cli_env.webhook_url)
    out, _ = run("call", "crm.deal.get", "id=2", "--raw")
    envelope = json.loads(out)
    assert envelope["result"]["ID"] == "2" and "time" in envelope


def test_call_reports_errors_without_the_secret(cli_env) -> None:
    secret = cli_env.webhook_url.rstrip("/").rsplit("/", 1)[-1]
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as failed:
        call_command(
            "bitrix",
            "call",
            "crm.deal.get",
            "id=999999999",
            "--webhook",
            cli_env.webhook_url,
            stdout=out,
            stderr=err,
        )
    assert failed.value.returncode == 1
    assert "Not found" in err.getvalue() and secret not in err.getvalue()


def test_export_writes_json_lines(cli_env, sandbox, tmp_path: Path) -> None:
    sandbox.control("seed", member_id=cli_env.member_id, deals=3_000)
    target = tmp_path / "deals.jsonl"
    out, _ = run(
        "export",
        "crm.deal.list",
        "--webhook",
        cli_env.webhook_url,
        "--select",
        "ID,STAGE_ID",
        "--filter",
        "STAGE_ID=WON",
        "--out",
        str(target),
    )
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert rows and all(r["STAGE_ID"] == "WON" for r in rows)
    assert len({r["ID"] for r in rows}) == len(rows)
    assert f"exported {len(rows):,} rows" in out
    assert not Path(f"{target}.checkpoint.json").exists()


@pytest.mark.slow
def test_export_resumes_after_the_process_is_killed(
    cli_env, sandbox, tmp_path: Path, transactional_db
) -> None:
    n = 20_000
    sandbox.control("seed", member_id=cli_env.member_id, deals=n)
    sandbox.control("config", cost={"scale": 4.0})  # slow enough to kill it half-way
    target = tmp_path / "deals.jsonl"
    checkpoint = Path(f"{target}.checkpoint.json")
    db = django_settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "BITRIX24_CA_BUNDLE": cli_env.ca_bundle,
        "BITRIX24_WEBHOOK_URL": cli_env.webhook_url,
    }
    cmd = [
        sys.executable,
        "manage.py",
        "bitrix",
        "export",
        "crm.deal.list",
        "--select",
        "ID",
        "--out",
        str(target),
    ]
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if checkpoint.exists() and json.loads(checkpoint.read_text())["rows"] >= 2_500:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        partial = json.loads(checkpoint.read_text())["rows"]
        assert 0 < partial < n
        sandbox.control("config", cost={"scale": 1.0})
        done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=120)
    finally:
        sandbox.control("config", cost={"scale": 1.0})
    assert done.returncode == 0, done.stderr
    ids = [int(json.loads(line)["ID"]) for line in target.read_text().splitlines()]
    assert sorted(ids) == list(range(1, n + 1))  # nothing lost, nothing twice


def test_import_runs_one_call_per_line_and_reports_failures(cli_env, sandbox, tmp_path: Path) -> None:
    source = tmp_path / "updates.jsonl"
    lines = [json.dumps({"id": i, "fields": {"TITLE": f"imported {i}"}}) for i in range(1, 121)]
    lines.insert(30, "{not json")
    lines.append(json.dumps({"id": 10**9, "fields": {"TITLE": "nobody"}}))
    source.write_text("\n".join(lines) + "\n")
    report = tmp_path / "failed.jsonl"
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as failed:
        call_command(
            "bitrix",
            "import",
            "crm.deal.update",
            "--webhook",
            cli_env.webhook_url,
            "--in",
            str(source),
            "--report",
            str(report),
            stdout=out,
            stderr=err,
        )
    assert failed.value.returncode == 1
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert summary == {"method": "crm.deal.update", "succeeded": 120, "failed": 2}
    failures = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(f["line"] for f in failures) == [31, 122]
    by_line = {f["line"]: f for f in failures}
    assert by_line[31]["error"] == "INVALID_LINE"
    assert by_line[122]["error"] == "Bitrix24NotFound" and "Not found" in by_line[122]["description"]
    assert "120 rows succeeded, 2 failed" in err.getvalue()
    from portals.services.client import client_for_webhook

    client = client_for_webhook(url=cli_env.webhook_url)
    assert client.call("crm.deal.get", {"id": 77})["TITLE"] == "imported 77"
    assert sandbox.counters()["writes"][cli_env.member_id]["crm.deal.update"] == 121  # 120 + the missing id


def test_call_with_a_stored_portal(install_portal, redis_client) -> None:
    portal = install_portal(1)
    out, _ = run("call", "crm.deal.get", "id=5", "--portal", portal.member_id)
    assert json.loads(out)["ID"] == "5"
