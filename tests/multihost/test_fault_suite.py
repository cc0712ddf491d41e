"""A small, bounded configuration of the fault suite (bench/faults.py, docs/faults.md) on every run:
a worker killed while draining, Redis and PostgreSQL restarted during intake, Redis restarted under a
token refresh. Each row must hold: nothing accepted lost, nothing dispatched twice, recovered."""

from __future__ import annotations

import signal
import subprocess
import sys

from bench.faults_cluster import ROOT

FAULTS = "worker-kill,redis-intake,postgres-intake,redis-refresh"
ROWS = ("worker SIGKILL", "Redis restart | intake", "PostgreSQL restart | intake", "Redis restart | refresh")


def test_the_quick_fault_suite_passes_every_row():
    suite = subprocess.Popen(
        [sys.executable, "bench/faults.py", "--quick", "--only", FAULTS, "--recover-timeout", "60"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = suite.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        suite.send_signal(signal.SIGINT)  # its own clean-up stops the deployment it started
        out, err = suite.communicate(timeout=60)
        raise AssertionError(f"the fault suite ran past 240 s\n{err[-3000:]}") from None
    rows = [line for line in out.splitlines() if line.startswith("| ") and "| fault |" not in line]
    assert suite.returncode == 0, f"{out}\n{err[-3000:]}"
    assert len(rows) == len(ROWS) and all(
        row.rstrip().endswith("| ok |") or "| ok (" in row for row in rows
    ), out
    for expected, row in zip(ROWS, rows, strict=True):
        assert row.startswith(f"| {expected}"), row
