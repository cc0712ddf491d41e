"""Single-process mode (the demo's default: SQLite, no Redis) receives, stores and dispatches events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_events_on_sqlite_without_redis(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "tests.events.single_process_flow", str(tmp_path / "db.sqlite3")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    status, body = seen["accepted"]
    assert status == 200 and body["result"] == "accepted"
    # Answered at once, stored, while the handler was still busy; handled in the background after.
    assert seen["status_at_answer"] == ["pending"] and seen["handled_at_answer"] == []
    assert seen["status_after_handler"] == ["done"]
    assert seen["duplicate"][0] == 200 and seen["duplicate"][1]["result"] == "duplicate"
    assert seen["forged"][0] == 403
    assert seen["stored"] == 1
    assert seen["handled"] == ["5"]
    # Held: a second taker is refused; released: it is free again.
    assert seen["lock"] == [True, False, True]
    assert list(tmp_path.glob("db.sqlite3.events-shard-*.lock"))
