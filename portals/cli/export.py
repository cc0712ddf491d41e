"""`manage.py bitrix export METHOD ...`: every row of a list method as JSON Lines, resumable.

With ``--out FILE`` a checkpoint sits next to the file (``FILE.checkpoint.json``): the traversal
state and the byte length of the file at that point, written atomically after each page is on
disk. ``--resume`` truncates the file back to that length (dropping rows written after the last
checkpoint) and continues from the saved cursors, so no row is lost or written twice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..bitrix.client import Bitrix24Client
from ..bitrix.exceptions import Bitrix24Error
from ..bitrix.values import bounded_int
from .common import (
    add_auth_arguments,
    bounded,
    check_method,
    client_from,
    parse_pairs,
    progress_bar,
    unstyled,
)

NAME = "export"
HELP = "Export every row of a list method as JSON Lines (resumable)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", help="a list method, e.g. crm.deal.list")
    add_auth_arguments(parser)
    parser.add_argument(
        "--select", default="", help="fields, comma-separated (default: the method's default)"
    )
    parser.add_argument(
        "--filter", action="append", default=[], metavar="KEY=VALUE", help="e.g. STAGE_ID=WON"
    )
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="other parameters")
    parser.add_argument("--out", default="-", help="output file, or - for stdout (default)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted export into --out")
    parser.add_argument(
        "--parallel", type=bounded(1, 64), default=4, help="ID-range parts read in parallel (1-64)"
    )


def checkpoint_path(out: str) -> Path:
    return Path(f"{out}.checkpoint.json")


def _save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def row_count(client: Bitrix24Client, method: str, params: dict[str, Any]) -> int | None:
    """How many rows match, from the ``total`` of one first page; None when the method gives none.

    One request more: the traversal itself asks with ``start=-1``, which spares Bitrix24 the
    COUNT and so returns no total.
    """
    total = client.call_raw(method, {**params, "start": 0}, read=True).payload.get("total")
    return bounded_int(total, low=0, high=2**53)


def handle(options: dict[str, Any], *, stdout: Any, stderr: Any) -> int:
    out = options["out"]
    if options["resume"] and out == "-":
        stderr.write("error: --resume needs --out FILE\n")
        return 2
    # Everything that can be refused is, before the output file is opened (and truncated).
    try:
        check_method(options["method"])
        params = parse_pairs(options["param"])
        filters = parse_pairs(options["filter"])
        client = client_from(options)
    except (Bitrix24Error, argparse.ArgumentTypeError, ValueError) as e:
        stderr.write(f"error: {e}\n")
        return 2
    if filters:
        params["filter"] = {**params.get("filter", {}), **filters}
    if options["select"]:
        params["select"] = [f.strip() for f in options["select"].split(",") if f.strip()]

    checkpoint = None
    written = 0
    cp_path = checkpoint_path(out) if out != "-" else None
    if out == "-":
        stream = unstyled(stdout) or sys.stdout
    elif options["resume"] and cp_path is not None and cp_path.exists():
        saved = json.loads(cp_path.read_text())
        checkpoint, written = saved["state"], int(saved.get("rows", 0))
        stream = open(out, "r+", encoding="utf-8")  # noqa: SIM115 - closed in finally
        stream.truncate(int(saved["bytes"]))
        stream.seek(int(saved["bytes"]))
    else:
        stream = open(out, "w", encoding="utf-8")  # noqa: SIM115 - closed in finally

    rows = written

    def on_checkpoint(state: dict[str, Any]) -> None:
        if cp_path is None:
            return
        stream.flush()
        os.fsync(stream.fileno())
        _save(cp_path, {"state": state, "bytes": stream.tell(), "rows": rows})

    try:
        with progress_bar(stderr, f"export {options['method']}") as bar:
            total = row_count(client, options["method"], params)
            of = f" of {total:,}" if total is not None else ""
            task = bar.add_task("export", total=total, completed=rows, of=of)
            for row in client.list_all(
                options["method"],
                params,
                parallel=options["parallel"],
                checkpoint=checkpoint,
                on_checkpoint=on_checkpoint,
                progress=lambda n: bar.update(task, completed=written + n),
            ):
                stream.write(json.dumps(row, ensure_ascii=False) + "\n")
                rows += 1
    except Bitrix24Error as e:
        stderr.write(f"error after {rows:,} rows: {e}\n")
        if cp_path is not None:
            stderr.write("resume with --resume\n")
        return 1
    finally:
        if out == "-":
            stream.flush()
        else:
            stream.close()
    if cp_path is not None and cp_path.exists():
        cp_path.unlink()  # finished: a later --resume must not continue a completed export
    # On stdout, unless the rows went there; never through stderr's wrapper, which styles a
    # success as an error.
    done = f"exported {rows:,} rows of {options['method']}\n"
    (unstyled(stderr) if out == "-" else stdout).write(done)
    return 0
