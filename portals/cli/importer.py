"""`manage.py bitrix import METHOD --in FILE`: one call per JSON line, sent in batches.

Each line is one call's parameters, e.g. ``{"id": 7, "fields": {"STAGE_ID": "WON"}}`` for
crm.deal.update. Lines go 50 to a batch, several batches in flight (the client's concurrency);
memory stays bounded by that window, whatever the file size. Failed rows are reported with their
line number and error (to stderr, or as JSON Lines with ``--report FILE``); the exit code is 1
when any row failed. A batch whose outcome is unknown (connection lost after sending) is not
re-sent: its rows are reported as ``OUTCOME_UNKNOWN`` for the operator to check.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from ..bitrix.batching import MAX_COMMANDS, BatchResult
from ..bitrix.client import Bitrix24Client
from ..bitrix.exceptions import Bitrix24ConfigError, Bitrix24Error, Bitrix24WriteOutcomeUnknown
from .common import add_auth_arguments, check_method, client_from, progress_bar, unstyled

NAME = "import"
HELP = "Run one call of METHOD per JSON line of --in, in batches; report failed rows."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", help="e.g. crm.deal.update")
    add_auth_arguments(parser)
    parser.add_argument(
        "--in", dest="infile", required=True, help="JSON Lines file, one call's params a line"
    )
    parser.add_argument("--report", default=None, help="write failed rows as JSON Lines to this file")


Failure = dict[str, Any]


def _chunks(path: str) -> Iterator[list[tuple[int, dict[str, Any] | None, str | None]]]:
    """Lists of up to 50 (line number, params or None, parse error or None); blank lines skipped."""
    chunk: list[tuple[int, dict[str, Any] | None, str | None]] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                params = json.loads(line)
                if not isinstance(params, dict):
                    raise ValueError("a line must be a JSON object")
                chunk.append((number, params, None))
            except ValueError as e:
                chunk.append((number, None, f"invalid JSON: {e}"))
            if len(chunk) == MAX_COMMANDS:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _run(
    client: Bitrix24Client, method: str, chunk: list[tuple[int, dict[str, Any] | None, str | None]]
) -> tuple[int, list[Failure]]:
    failures: list[Failure] = [
        {"line": n, "error": "INVALID_LINE", "description": err} for n, _, err in chunk if err is not None
    ]
    rows = [(n, p) for n, p, err in chunk if err is None and p is not None]
    if not rows:
        return 0, failures
    try:
        result: BatchResult = client.batch({f"l{n}": (method, p) for n, p in rows}, parallel=False)
    except Bitrix24ConfigError:
        raise  # no row can succeed (untrusted certificate, unknown host): handle() stops at once
    except Bitrix24WriteOutcomeUnknown as e:
        return 0, failures + [
            {"line": n, "error": "OUTCOME_UNKNOWN", "description": str(e.cause)} for n, _ in rows
        ]
    except Bitrix24Error as e:
        code = getattr(e, "code", type(e).__name__)
        return 0, failures + [{"line": n, "error": code, "description": str(e)} for n, _ in rows]
    ok = 0
    for n, _ in rows:
        r = result[f"l{n}"]
        if r.ok:
            ok += 1
        elif r.error is not None:
            failures.append(
                {
                    "line": n,
                    "error": r.error.code or type(r.error).__name__,
                    "description": r.error.description,
                }
            )
        else:
            failures.append({"line": n, "error": "NOT_RUN", "description": "not run"})
    return ok, failures


def handle(options: dict[str, Any], *, stdout: Any, stderr: Any) -> int:
    try:
        method = check_method(options["method"])
        client = client_from(options)
    except (Bitrix24Error, argparse.ArgumentTypeError) as e:
        stderr.write(f"error: {e}\n")
        return 2
    report = open(options["report"], "w", encoding="utf-8") if options.get("report") else None  # noqa: SIM115
    succeeded = failed = 0
    shown = 0
    try:
        with progress_bar(stderr, f"import {method}") as bar, ThreadPoolExecutor(client.concurrency) as pool:
            task = bar.add_task("import", total=None, of="")
            running: set[Future[tuple[int, list[Failure]]]] = set()

            def collect(done: set[Future[tuple[int, list[Failure]]]]) -> None:
                nonlocal succeeded, failed, shown
                for future in done:
                    ok, failures = future.result()
                    succeeded += ok
                    failed += len(failures)
                    for failure in sorted(failures, key=lambda f: f["line"]):
                        if report is not None:
                            report.write(json.dumps(failure, ensure_ascii=False) + "\n")
                        if shown < 100:  # the report file has all of them
                            stderr.write(
                                f"line {failure['line']}: {failure['error']}: {failure['description']}\n"
                            )
                            shown += 1
                    bar.update(task, completed=succeeded + failed)

            for chunk in _chunks(options["infile"]):
                running.add(pool.submit(_run, client, method, chunk))
                if len(running) >= client.concurrency * 2:
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    collect(done)
            collect(set(wait(running).done))
    except OSError as e:
        stderr.write(f"error: {e}\n")
        return 2
    except Bitrix24ConfigError as e:
        stderr.write(f"error after {succeeded:,} rows: {e}\n")
        return 1
    finally:
        if report is not None:
            report.close()
    unstyled(stderr).write(f"{method}: {succeeded:,} rows succeeded, {failed:,} failed\n")
    stdout.write(json.dumps({"method": method, "succeeded": succeeded, "failed": failed}) + "\n")
    return 1 if failed else 0
