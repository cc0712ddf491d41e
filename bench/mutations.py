"""Mutation check of the core guarantees: does a one-line fault make a test fail?

Each fault below breaks one promise of docs/ (the limiter, the token comparison, the single-flight
refresh, dedupe, the size limit, one drainer per shard, the drainer's second look, offline store
before clear, the refusal log). The script copies the working tree (tracked and new files, without
.venv and var) to a temporary directory, runs the chosen tests there once as they are (a baseline
that must pass), then applies each fault alone, runs its tests, and restores the file. A fault is
*killed* when a test fails, *survived* when every test still passes. The checkout it runs from is
never modified: other people may be running tests in it.

    .venv/bin/python bench/mutations.py                 # every fault, ~10 minutes
    .venv/bin/python bench/mutations.py --only lock,413 # some of them
    .venv/bin/python bench/mutations.py --list

Tests run with this checkout's .venv and the environment as given, so pass the isolated settings
(DATABASE_URL, REDIS_URL, REDIS_KEY_PREFIX, CELERY_QUEUE) as for any test run, and don't run other
tests with the same settings meanwhile: they share the test database.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A run that takes longer than this is stopped and counted as killed (a fault that hangs a test).
RUN_TIMEOUT = 900


@dataclass(frozen=True)
class Fault:
    name: str
    what: str  # the guarantee it breaks
    path: str
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]


FAULTS = (
    Fault(
        "limiter",
        "the Redis bucket never fills: requests go out past the portal's limit",
        "portals/bitrix/limiter.py",
        "  level = level + cost\n",
        "  level = level\n",
        ("tests/client/test_limiter.py", "tests/client/test_shared_limits.py"),
    ),
    Fault(
        "token",
        "the application_token comparison accepts any token",
        "portals/bitrix/events.py",
        "if not hmac.compare_digest(expected_digest, token_digest(received)):",
        "if not hmac.compare_digest(expected_digest, expected_digest):",
        ("tests/events/test_payloads.py", "tests/events/test_receiver.py"),
    ),
    Fault(
        "single-flight",
        "the refresh no longer re-checks under the locks whether another caller refreshed",
        "portals/services/tokens.py",
        "if not when.holds_for(portal, now):",
        "if False:",
        ("tests/portals/test_refresh_single_flight.py", "tests/portals/test_tasks.py"),
    ),
    Fault(
        "dedupe",
        "the idempotency key covers the delivery (the binding), not only the change",
        "portals/bitrix/events.py",
        '"message": self.message_id,',
        '"message": self.message_id, "binding": self.event_handler_id,',
        (
            "tests/events/test_payloads.py",
            "tests/events/test_receiver.py",
            "tests/events/test_dispatch.py::test_accepted_event_is_dispatched_once",
        ),
    ),
    Fault(
        "413",
        "a body of exactly BITRIX24_EVENT_MAX_BYTES is refused (>= instead of >)",
        "events/views.py",
        "if length is not None and length > limit:",
        "if length is not None and length >= limit:",
        (
            "tests/events/test_receiver_limits.py",
            "tests/events/test_receiver.py",
            "tests/test_wsgi_entry.py",
        ),
    ),
    Fault(
        "413-stream",
        "the same, for a body without a Content-Length",
        "events/views.py",
        "if len(body) > limit:",
        "if len(body) >= limit:",
        ("tests/events/test_receiver_limits.py", "tests/test_wsgi_entry.py"),
    ),
    Fault(
        "lock",
        "the shard's advisory lock is ignored: two drainers may dispatch an event twice",
        "portals/services/coordination.py",
        "acquired = bool(cursor.fetchone()[0])",
        "acquired = bool(cursor.fetchone()[0]) or True",
        (
            "tests/events/test_drain_races.py",
            "tests/events/test_dispatch.py",
            "tests/events/test_single_process.py",
        ),
    ),
    Fault(
        "second-look",
        "the drainer stops without looking again after clearing its wake flag",
        "events/services/drain.py",
        "if not _dispatchable(shard=shard, now=timezone.now()).exists():",
        "if True:",
        ("tests/events/test_drain_races.py", "tests/events/test_dispatch.py"),
    ),
    Fault(
        "offline-order",
        "event.offline.clear confirms a batch before it is stored",
        "events/services/offline.py",
        "bad = _store_batch(portal, records, report)",
        'client.call("event.offline.clear", {"process_id": process_id}, read=False); '
        "bad = _store_batch(portal, records, report)",
        (
            "tests/events/test_offline_crash.py",
            "tests/events/test_sandbox.py::test_offline_events_are_drained_losslessly",
        ),
    ),
    Fault(
        "offline-recovery",
        "a batch reserved by a drain that died is never fetched again",
        "events/services/offline.py",
        "    _settle_abandoned(client, portal, report)\n",
        "\n",
        ("tests/events/test_offline_crash.py",),
    ),
    Fault(
        "offline-error",
        "unreadable offline records are never reported with event.offline.error",
        "events/services/offline.py",
        "if bad:",
        "if False:",
        ("tests/events/test_offline_crash.py",),
    ),
    Fault(
        "refusal-log",
        "the receiver's refusal log is never suppressed",
        "events/views.py",
        '_log_refusal = RefusalLog(logger, "events.refused")',
        '_log_refusal = RefusalLog(logger, "events.refused", interval=0)',
        ("tests/events/test_receiver_limits.py", "tests/events/test_receiver.py"),
    ),
)


def copy_tree(target: Path) -> int:
    """Copy the working tree's files (tracked and new, as they are now) into ``target``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    copied = 0
    for name in filter(None, listed.split("\0")):
        if name.split("/", 1)[0] in (".venv", "var"):
            continue
        source = ROOT / name
        if not source.is_file():  # deleted in the working tree, not yet in the index
            continue
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        copied += 1
    return copied


def python() -> str:
    """The checkout's own interpreter (its packages), else this one."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def run_tests(
    tree: Path, tests: tuple[str, ...], *, deselect: tuple[str, ...] = (), first_failure: bool = True
) -> tuple[int, str, float, list[str]]:
    """Run ``tests`` in ``tree`` but ``deselect``; returns (pytest's exit code, its summary line,
    seconds, the ids of the failed tests)."""
    # The packages are installed editable from this checkout: PYTHONPATH puts the copy first, for
    # the test process and every process it starts (the sandbox, single-process flows).
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.monotonic()
    try:
        done = subprocess.run(
            [
                *(python(), "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider"),
                *(["-x"] if first_failure else []),
                *(f"--deselect={test}" for test in deselect),
            ],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return -1, f"stopped after {RUN_TIMEOUT} s", time.monotonic() - started, []
    lines = [line for line in done.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    output = (done.stdout + done.stderr).strip().splitlines() or ["no output"]
    summary = (lines or output)[-1].strip("= ")
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, re.MULTILINE)
    if failed and first_failure:  # the test that caught the fault (-x stops at the first)
        summary += f", by {failed[0]}"
    return done.returncode, summary, time.monotonic() - started, failed


def check_copy_is_imported(tree: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    found = subprocess.run(
        [python(), "-c", "import events, portals; print(events.__file__); print(portals.__file__)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not all(Path(path).resolve().is_relative_to(tree.resolve()) for path in found):
        raise SystemExit(f"the copy is not what the tests import: {found}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="comma-separated fault names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    args = parser.parse_args()
    if args.list:
        for fault in FAULTS:
            print(f"{fault.name:14} {fault.path}: {fault.what}")
        return
    wanted = {name for name in args.only.split(",") if name}
    unknown = wanted - {fault.name for fault in FAULTS}
    if unknown:
        raise SystemExit(f"unknown fault(s): {', '.join(sorted(unknown))} (see --list)")
    faults = [fault for fault in FAULTS if not wanted or fault.name in wanted]

    rows: list[tuple[str, str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="mutations-") as temp:
        tree = Path(temp)
        print(f"copied {copy_tree(tree)} files", file=sys.stderr)
        check_copy_is_imported(tree)
        every_test = tuple(dict.fromkeys(test for fault in faults for test in fault.tests))
        code, summary, seconds, broken = run_tests(tree, every_test, first_failure=False)
        print(f"baseline: {summary} ({seconds:.0f} s)", file=sys.stderr)
        if code != 0 and not broken:
            raise SystemExit("the tests could not run without any fault: fix that first")
        # A test that fails without any fault can't tell a fault apart: it is left out, and said so
        # (the checkout is shared, and someone's unfinished change may break a test for a while).
        deselect = tuple(broken)
        for test in deselect:
            print(f"left out, failing without a fault: {test}", file=sys.stderr)
        for fault in faults:
            target = tree / fault.path
            original = target.read_text()
            if original.count(fault.old) != 1:
                rows.append(
                    (fault.name, fault.path, ", ".join(fault.tests), "not applied: text not found", "-")
                )
                continue
            target.write_text(original.replace(fault.old, fault.new))
            try:
                code, summary, seconds, _ = run_tests(tree, fault.tests, deselect=deselect)
            finally:
                target.write_text(original)
            verdict = "survived" if code == 0 else "killed" if code in (1, -1) else f"error (exit {code})"
            rows.append(
                (fault.name, fault.path, ", ".join(fault.tests), f"{verdict}: {summary}", f"{seconds:.0f}")
            )
            print(f"{fault.name}: {verdict}", file=sys.stderr)
    print_table(rows)
    for test in deselect:
        print(f"\nLeft out (failing without a fault): `{test}`")


def print_table(rows: list[tuple[str, str, str, str, str]]) -> None:
    header = ("fault", "file", "tests run", "result", "seconds")
    print("| " + " | ".join(header) + " |")
    print("|---|---|---|---|---:|")
    for row in rows:
        print("| " + " | ".join(f"`{cell}`" if i == 1 else cell for i, cell in enumerate(row)) + " |")


if __name__ == "__main__":
    main()
