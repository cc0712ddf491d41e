"""What a newcomer running the sandbox beside bin/demo meets: plain http on the HTTPS port is sent to
the http listener (browsers refuse the sandbox's CA), default ports that are taken give way to free
ones, and `python -m sandbox.lifecycle` finds the running demo's sandbox by itself."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from sandbox.config import Config
from sandbox.lifecycle import __main__ as lifecycle_cli

PROJECT = Path(__file__).resolve().parent.parent.parent


def test_plain_http_on_the_https_port_is_sent_to_the_http_listener(sandbox):
    portal = sandbox.portal(1)
    https_host = portal["domain"]
    http_host = portal["http_endpoint"].split("/")[2]
    url = f"http://{https_host}/oauth/authorize/?client_id=x&state=y"
    answer = requests.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 307
    assert answer.headers["location"] == f"http://{http_host}/oauth/authorize/?client_id=x&state=y"
    # TLS on the same port is served as before, on the portal and on the OAuth server.
    assert requests.get(
        f"https://{https_host}/rest/server.time", verify=sandbox.ca_bundle, timeout=10
    ).status_code
    token = requests.get(sandbox.state["oauth_server"] + "oauth/token/", verify=sandbox.ca_bundle, timeout=10)
    assert token.json()["error"] == "invalid_request"
    # A client that opens a connection and says nothing doesn't block anyone else.
    host, port = https_host.split(":")
    with socket.create_connection((host, int(port))):
        assert requests.get(
            f"https://{https_host}/rest/server.time", verify=sandbox.ca_bundle, timeout=10
        ).json()


def test_default_ports_taken_give_way_to_free_ones(tmp_path):
    defaults = Config()
    blockers = []
    for port in (defaults.port, defaults.http_port):
        blocker = socket.socket()
        try:
            blocker.bind(("127.0.0.1", port))
            blocker.listen()
            blockers.append(blocker)
        except OSError:
            blocker.close()  # taken already (a demo runs here): just as good
    state_file = tmp_path / "state.json"
    process = subprocess.Popen(  # noqa: S603 - our own module, fixed argv
        [sys.executable, "-m", "sandbox", "--portals", "1", "--state-file", str(state_file)],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not state_file.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state_file.exists(), process.stdout.read() if process.poll() is not None else "no state file"
        state = json.loads(state_file.read_text())
        assert f":{defaults.port}/" not in state["oauth_server"]
        assert requests.get(state["control_url"], timeout=10).json()["ready"]
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
        for blocker in blockers:
            blocker.close()
    assert (
        f"Port {defaults.port} or {defaults.http_port} is taken (another sandbox?): using free ports."
        in output
    )


def test_an_asked_for_port_that_is_taken_is_an_error(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        finished = subprocess.run(  # noqa: S603 - our own module, fixed argv
            [sys.executable, "-m", "sandbox", "--port", str(port), "--state-file", str(tmp_path / "s.json")],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert finished.returncode != 0 and "Address already in use" in finished.stderr


def test_the_lifecycle_cli_finds_the_running_sandbox(sandbox, tmp_path, monkeypatch):
    assert lifecycle_cli.STATE_FILES[0] == PROJECT / "var" / "demo" / "sandbox" / "state.json"
    stopped, running = tmp_path / "demo.json", tmp_path / "own.json"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}/_sandbox/"
    stopped.write_text(json.dumps({**sandbox.state, "control_url": dead_url}))
    running.write_text(json.dumps(sandbox.state))
    args = lifecycle_cli._parser().parse_args(["pages"])

    monkeypatch.setattr(lifecycle_cli, "STATE_FILES", (stopped, running))
    assert lifecycle_cli._state_path(args) == running  # the demo's file is stale: the one that answers
    monkeypatch.setattr(lifecycle_cli, "STATE_FILES", (running, stopped))
    assert lifecycle_cli._state_path(args) == running  # the demo's sandbox runs: it comes first
    monkeypatch.setattr(lifecycle_cli, "STATE_FILES", (tmp_path / "none.json", stopped))
    assert lifecycle_cli._state_path(args) == stopped  # none answers: the one that exists (a clear error)
    explicit = lifecycle_cli._parser().parse_args(["--state-file", str(running), "pages"])
    assert lifecycle_cli._state_path(explicit) == running
