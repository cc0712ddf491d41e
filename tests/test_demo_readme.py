"""bin/demo as a newcomer meets it: started from a clean environment, then every command of the
README's "The command line" run verbatim from a new, clean shell while it runs (only <member_id>
filled in and $URL set, as the README asks), and the production shape creating its database.

The demo runs on free loopback ports in the project's var/demo (the paths the README's commands rely
on); the test is skipped when a demo already runs here. Every wait is bounded; the demo's process
group is stopped at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import requests
from django.conf import settings

PROJECT = Path(__file__).resolve().parent.parent
DEMO = PROJECT / "var" / "demo"
STARTUP_TIMEOUT = 300.0  # a first run migrates a new database (and may install .venv)
COMMAND_TIMEOUT = 120.0

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """A new shell's environment: nothing of ours, the project's .venv first on PATH."""
    return {
        "PATH": f"{PROJECT / '.venv' / 'bin'}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only when HOME is unset
        "LANG": "C.UTF-8",
        **extra,
    }


def readme_commands() -> list[str]:
    """The README's command-line examples, exactly as printed (comments dropped)."""
    readme = (PROJECT / "README.md").read_text()
    block = readme.split("## The command line", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.strip()]


def demo_running() -> bool:
    pidfile = DEMO / "demo.pid"
    try:
        os.kill(int(pidfile.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


@contextmanager
def running_demo(log: Path, **env: str) -> Iterator[str]:
    """bin/demo on free ports with ``env``; yields its app URL once it says it is ready."""
    if demo_running():
        pytest.skip("a demo already runs in this project (var/demo)")
    web = f"127.0.0.1:{free_port()}"
    ports = {"WEB_BIND": web, "SANDBOX_PORT": str(free_port()), "SANDBOX_HTTP_PORT": str(free_port())}
    with open(log, "w") as out:
        process = subprocess.Popen(  # noqa: S603 - our own script
            [str(PROJECT / "bin" / "demo")],
            cwd=PROJECT,
            env=clean_env(**ports, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole below
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while "Ctrl-C stops everything." not in log.read_text():
            assert process.poll() is None, (
                f"bin/demo exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, f"bin/demo not ready in time:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield f"http://{web}"
    finally:
        stop(process)
    assert not (DEMO / "running.env").exists()  # its settings go with it


def stop(process: subprocess.Popen[Any]) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            time.sleep(1)  # the group's other members finish their own shutdown
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def shell(command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the README's own commands
        ["/bin/bash", "-c", command],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )


def demo_state() -> dict[str, Any]:
    return dict(json.loads((DEMO / "sandbox" / "state.json").read_text()))


def registrations(state: dict[str, Any], portal: int) -> dict[str, Any]:
    answer = requests.get(f"{state['control_url']}lifecycle/registrations?portal={portal}", timeout=10)
    return dict(answer.json())


def test_the_readmes_commands_work_from_a_new_shell_while_the_demo_runs(tmp_path):
    commands = readme_commands()
    assert len(commands) == 6 and all(c.startswith("python ") for c in commands)
    # A scratch directory for the commands' files (deals.jsonl, the stand-alone sandbox's state);
    # manage.py is the project's, through a link.
    work = tmp_path / "shell"
    work.mkdir()
    (work / "manage.py").symlink_to(PROJECT / "manage.py")
    (work / "updates.jsonl").write_text(
        json.dumps({"id": 7, "fields": {"TITLE": "Updated from the README"}}) + "\n"
    )
    log = tmp_path / "demo.log"
    standalone: subprocess.Popen[str] | None = None
    with running_demo(log) as app_url:
        ready = time.monotonic()
        state = demo_state()
        member_id = state["portals"][0]["member_id"]
        url = state["portals"][0]["webhook_url"]
        portal_page = state["portals"][1]["http_endpoint"].replace("/rest/", "/portal/")
        before = requests.get(portal_page, timeout=10).text
        assert "State: <strong>not installed</strong>" in before and ">Install the app</button>" in before
        try:
            outputs = {}
            for command in commands:
                command = command.replace("<member_id>", member_id)
                if "manage.py sandbox" in command:  # runs until stopped: start it, see it serve, keep it
                    standalone = subprocess.Popen(  # noqa: S603 - the README's own command
                        ["/bin/bash", "-c", f"exec {command}"],
                        cwd=work,
                        env=clean_env(URL=url),
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                    standalone_state = work / "var" / "sandbox" / "state.json"
                    deadline = time.monotonic() + 60
                    while not standalone_state.exists():
                        assert standalone.poll() is None, standalone.stdout.read()
                        assert time.monotonic() < deadline, "the stand-alone sandbox did not start"
                        time.sleep(0.2)
                    continue
                done = shell(command, work, URL=url)
                assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
                assert "Traceback" not in done.stderr, f"{command}\n{done.stderr}"
                outputs[command.split()[3] if "bitrix" in command else "lifecycle"] = done
        finally:
            if standalone is not None:
                standalone.terminate()
                standalone.communicate(timeout=20)

        assert json.loads(outputs["call"].stdout)["ID"] == "7"
        assert len((work / "deals.jsonl").read_text().splitlines()) == 500
        assert '"succeeded": 1' in outputs["import"].stdout
        assert "re-queued 0 event(s)" in outputs["events"].stdout
        # `python -m sandbox.lifecycle install --portal 2` installed on the demo's sandbox.
        installed = json.loads(outputs["lifecycle"].stdout)
        assert installed["portal"] == state["portals"][1]["member_id"] and installed["state"] == "installed"
        assert "State: <strong>installed</strong>" in requests.get(portal_page, timeout=10).text

        # The demo's deal-tab widget: bound on portal 1, listed on its page, and the app answers its frame.
        (placement,) = registrations(state, 1)["placements"]
        assert placement["placement"] == "CRM_DEAL_DETAIL_TAB"
        assert placement["handler"] == f"{app_url}/bitrix/placement/crm_deal_detail_tab/"
        page = requests.get(
            state["portals"][0]["http_endpoint"].replace("/rest/", "/portal/"), timeout=10
        ).text
        assert "/portal/placement/CRM_DEAL_DETAIL_TAB/?handler=0" in page
        frame = requests.post(
            f"{state['control_url']}lifecycle/frame",
            json={"portal": 1, "placement": "CRM_DEAL_DETAIL_TAB", "options": {"ID": "1"}},
            timeout=10,
        ).json()
        widget = requests.post(frame["url"], params=frame["query"], data=frame["body"], timeout=30)
        # The deal tab shows the deal, fetched through the client with the user's own token.
        assert widget.status_code == 200 and 'id="deal-fields"' in widget.text
        # A page and its static files, as a browser opening the admin fetches them.
        assert requests.get(f"{app_url}/admin/login/", timeout=10).status_code == 200
        assert requests.get(f"{app_url}/static/admin/css/base.css", timeout=10).status_code == 200
        time.sleep(max(0.0, 16 - (time.monotonic() - ready)))  # an events sweep ran at least once

    text = log.read_text()
    # The log keeps its fields, and routine work (the 15 s events sweep, static files) stays out.
    assert f"portal.installed member_id={member_id}" in text
    assert '"GET /admin/login/ HTTP/1.1" 200' in text
    assert "events_sweep" not in text and "/static/" not in text


def test_the_production_shape_creates_its_database(tmp_path):
    name = f"b24_demo_{secrets.token_hex(4)}"
    base = settings.DATABASES["default"]
    server = f"postgres://{base['USER']}@{base['HOST'] or '127.0.0.1'}:{base['PORT'] or 5432}"
    prefix = f"demo-{secrets.token_hex(4)}:"
    env = {
        "DATABASE_URL": f"{server}/{name}",
        "REDIS_URL": settings.REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        "CELERY_QUEUE": prefix.rstrip(":"),
    }
    log = tmp_path / "demo.log"
    try:
        with running_demo(log, **env):
            member_id = demo_state()["portals"][0]["member_id"]
            done = shell(f"python manage.py bitrix call crm.deal.get id=1 --portal {member_id}", PROJECT)
            assert done.returncode == 0 and json.loads(done.stdout)["ID"] == "1", done.stderr
        assert f"Created the database '{name}'." in log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client = redis.Redis.from_url(settings.REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()


def test_an_unreachable_database_is_one_line(tmp_path):
    if demo_running():
        pytest.skip("a demo already runs in this project (var/demo)")
    port = free_port()  # nothing listens there
    finished = subprocess.run(  # noqa: S603 - our own script
        [str(PROJECT / "bin" / "demo")],
        cwd=PROJECT,
        env=clean_env(DATABASE_URL=f"postgres://postgres@127.0.0.1:{port}/nowhere"),
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
    )
    assert finished.returncode == 1
    assert "Traceback" not in finished.stderr
    last = finished.stderr.strip().splitlines()[-1]  # (a first run's pip output may come before it)
    assert last.startswith("bin/demo: cannot connect to the database 'nowhere':") and "refused" in last
