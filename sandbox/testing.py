"""``SandboxServer``: the sandbox in a subprocess on free ports, for tests and benchmarks.

    with SandboxServer(portals=2, deals=100) as sandbox:
        url = sandbox.portal(1)["webhook_url"]
        sandbox.control("faults", member_id=..., kind="query_limit", count=3)
        sandbox.counters()

The process gets a temporary state directory (its CA lives there: ``state["ca_bundle"]``) and
``--port 0 --http-port 0``; ``start()`` returns once the control API answers.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests


class SandboxError(RuntimeError):
    pass


class SandboxServer:
    #: The module run as ``python -m``: a test may run the sandbox with an extension of its own.
    module = "sandbox"

    def __init__(self, *, startup_timeout: float = 15.0, **options: Any) -> None:
        """``options`` become command-line flags: ``cost_scale=0`` → ``--cost-scale 0``;
        ``True`` gives a bare flag (``shared_address=True`` → ``--shared-address``)."""
        self.options = options
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.directory: Path | None = None
        self.state: dict[str, Any] = {}
        self.session = requests.Session()

    # --- process ------------------------------------------------------------------------------

    def start(self) -> SandboxServer:
        self.directory = Path(tempfile.mkdtemp(prefix="sandbox-"))
        state_file = self.directory / "state.json"
        argv = [
            sys.executable,
            "-m",
            self.module,
            "--port",
            "0",
            "--http-port",
            "0",
            "--quiet",
            "--state-file",
            str(state_file),
        ]
        for key, value in self.options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                argv.append(flag)
            elif value is not False and value is not None:  # 0 is a value (``cost_scale=0``)
                argv += [flag, str(value)]
        self._log = open(self.directory / "sandbox.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(  # noqa: S603 - our own module, fixed argv
            argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SandboxError(f"sandbox exited with {self.process.returncode}: {self.log_tail()}")
            if state_file.exists():
                try:
                    self.state = json.loads(state_file.read_text())
                    self.control_get("")
                    return self
                except (ValueError, requests.RequestException):
                    pass
            time.sleep(0.05)
        self.stop()
        raise SandboxError("sandbox did not start in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        self.session.close()

    def log_tail(self, chars: int = 4000) -> str:
        if self.directory is None:
            return ""
        path = self.directory / "sandbox.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- helpers ------------------------------------------------------------------------------

    @property
    def ca_bundle(self) -> str:
        return str(self.state["ca_bundle"])

    def portal(self, index: int = 1) -> dict[str, Any]:
        """The state-file entry of portal ``index`` (1-based)."""
        return dict(self.state["portals"][index - 1])

    def control(self, path: str, **payload: Any) -> Any:
        """POST ``payload`` as JSON to ``/_sandbox/<path>``; raises SandboxError on an error status."""
        response = self.session.post(self.state["control_url"] + path, json=payload, timeout=30)
        if response.status_code >= 400:
            raise SandboxError(f"control {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    def control_get(self, path: str) -> Any:
        response = self.session.get(self.state["control_url"] + path, timeout=30)
        response.raise_for_status()
        return response.json()

    def counters(self) -> dict[str, Any]:
        return dict(self.control_get("counters"))

    def reset(self) -> None:
        self.control("reset")

    def env(self) -> dict[str, str]:
        """Environment variables that make common HTTP clients trust the sandbox's CA."""
        return {
            "REQUESTS_CA_BUNDLE": self.ca_bundle,
            "SSL_CERT_FILE": self.ca_bundle,
            "BITRIX24_CA_BUNDLE": self.ca_bundle,
        }
