"""Entry points: ``python manage.py sandbox`` prints what a developer needs; ``--shared-address``
serves many portals from one wildcard listener."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from sandbox.testing import SandboxServer

ROOT = Path(__file__).resolve().parents[2]

PORTAL_LINE = re.compile(
    r"(127\.0\.0\.\d+:\d+)\s+member_id=([0-9a-f]{32})\s+webhook=(https://\S+/rest/1/\w+/)"
)


def test_manage_py_sandbox_prints_portals_and_app_credentials():
    with tempfile.TemporaryDirectory() as directory:
        state = Path(directory) / "state.json"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "BITRIX24_CLIENT_ID": "app.0123abcd.42",
            "BITRIX24_CLIENT_SECRET": "shared-secret-for-the-demo",
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "sandbox",
                "--portals",
                "2",
                "--port",
                "0",
                "--http-port",
                "0",
                "--state-file",
                str(state),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            lines = []
            deadline = time.monotonic() + 30
            # Read until the summary is complete, whatever log lines come before or between it.
            while time.monotonic() < deadline:
                line = process.stdout.readline()
                if not line:
                    break
                lines.append(line)
                output = "".join(lines)
                if "client_secret=" in output and len(PORTAL_LINE.findall(output)) >= 2:
                    break
            output = "".join(lines)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
        assert "client_id=app.0123abcd.42" in output and "client_secret=shared-secret-for-the-demo" in output
        portals = PORTAL_LINE.findall(output)
        assert len(portals) == 2
        assert portals[0][0].startswith("127.0.0.2:") and portals[1][0].startswith("127.0.0.3:")
        assert process.returncode == 0


def test_shared_address_mode_tells_portals_apart():
    with SandboxServer(portals=3, deals=5, shared_address=True, cost_scale=0) as sandbox:
        titles = {}
        for index in (1, 2, 3):
            url = sandbox.portal(index)["webhook_url"]
            new_id = requests.post(
                url + "crm.deal.add", json={"fields": {"TITLE": f"p{index}"}}, verify=sandbox.ca_bundle
            ).json()["result"]
            titles[index] = requests.get(
                url + "crm.deal.get", params={"id": new_id}, verify=sandbox.ca_bundle
            ).json()["result"]["TITLE"]
        assert titles == {1: "p1", 2: "p2", 3: "p3"}
        counters = sandbox.counters()["requests"]["by_portal"]
        assert sorted(counters.values()) == [2, 2, 2]


def test_enterprise_plan_from_the_command_line():
    with SandboxServer(portals=1, deals=3, plan="enterprise", cost_scale=0) as sandbox:
        portal = sandbox.portal(1)
        assert portal["plan"] == "enterprise"
        pair = sandbox.control("oauth/issue", member_id=portal["member_id"])
        info = requests.get(
            portal["client_endpoint"] + "app.info",
            params={"auth": pair["access_token"]},
            verify=sandbox.ca_bundle,
        ).json()["result"]
        assert info["LICENSE_FAMILY"] == "ent" and info["LICENSE_TYPE"] == "ent250"
        # 250-request bucket: 60 quick requests all pass where a standard portal would refuse some.
        session = requests.Session()
        codes = [
            session.get(portal["webhook_url"] + "server.time", verify=sandbox.ca_bundle).status_code
            for _ in range(60)
        ]
        assert codes == [200] * 60
