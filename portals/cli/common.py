"""What the client subcommands share: choosing the credentials, parsing key=value, progress."""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import quote

import qs_codec as qs
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..bitrix.client import Bitrix24Client


def add_auth_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--portal", metavar="MEMBER_ID", help="an installed portal, by member_id")
    group.add_argument(
        "--webhook",
        metavar="URL",
        help="an inbound webhook URL (default: the BITRIX24_WEBHOOK_URL environment variable, "
        "which keeps the secret out of shell history)",
    )
    parser.add_argument("--concurrency", type=int, default=None, help="requests in flight to the portal")


def client_from(options: dict[str, Any]) -> Bitrix24Client:
    """The client for ``--portal`` or ``--webhook`` (falling back to BITRIX24_WEBHOOK_URL)."""
    from ..services.client import client_for_portal, client_for_webhook

    if options.get("portal"):
        return client_for_portal(member_id=options["portal"], concurrency=options.get("concurrency"))
    return client_for_webhook(url=options.get("webhook"), concurrency=options.get("concurrency"))


def parse_pairs(pairs: list[str]) -> dict[str, Any]:
    """``["filter[>ID]=5", "select[]=ID"]`` → nested params, read the way PHP reads a query string.

    A value that starts with ``json:`` is parsed as JSON (``fields=json:{"TITLE": "x"}``).
    """
    params: dict[str, Any] = {}
    plain: list[str] = []
    for pair in pairs:
        key, sep, value = _split_pair(pair)
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected key=value, got {pair!r}")
        if value.startswith("json:"):
            node = qs.decode(f"{quote(key, safe='[]')}=__json__")
            _place_json(node, json.loads(value[5:]))
            _merge(params, node)
        else:
            plain.append(f"{quote(key, safe='[]')}={quote(value, safe='')}")
    if plain:
        _merge(params, qs.decode("&".join(plain)))
    return params


def _split_pair(pair: str) -> tuple[str, str, str]:
    """Split at the first '=' outside brackets: ``filter[<=ID]=4`` → ``filter[<=ID]``, ``4``."""
    depth = 0
    for i, ch in enumerate(pair):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif ch == "=" and depth == 0:
            return pair[:i], "=", pair[i + 1 :]
    return pair, "", ""


def _place_json(params: dict[str, Any], value: Any) -> None:
    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            for k, v in node.items():
                if v == "__json__":
                    node[k] = value
                    return True
                if walk(v):
                    return True
        if isinstance(node, list):
            for i, v in enumerate(node):
                if v == "__json__":
                    node[i] = value
                    return True
                if walk(v):
                    return True
        return False

    walk(params)


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def progress_bar(stderr: Any, description: str, total: int | None = None) -> Progress:
    """A progress bar on stderr (the TTY one; plain text when stderr is a file)."""
    stream = getattr(stderr, "_out", stderr)  # Django's OutputWrapper keeps the real stream here
    console = Console(file=stream, stderr=True)
    return Progress(
        TextColumn(description),
        BarColumn(),
        TextColumn("{task.completed:,.0f}{task.fields[of]} rows"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )
