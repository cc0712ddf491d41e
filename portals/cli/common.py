"""What the client subcommands share: choosing the credentials, checking the arguments, progress.

Arguments are refused here, with one ``error: ...`` line, before anything is sent: a method name
goes into the request URL, a JSON value into the body, a webhook URL decides where its secret goes.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import qs_codec as qs
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..bitrix.client import Bitrix24Client
from ..bitrix.exceptions import Bitrix24ConfigError
from ..bitrix.values import bounded_int
from ..models import Portal
from ..services.client import client_for_portal, client_for_webhook

# A REST method: dot-separated segments of ASCII letters, digits and underscores (crm.deal.list,
# catalog.product.getFieldsByFilter). Anything else (?, #, /) would change the URL it is sent to.
_METHOD = re.compile(r"[A-Za-z0-9_]{1,64}(?:\.[A-Za-z0-9_]{1,64}){0,9}")
# Bitrix24's parameters nest a few levels (fields[UF_X][0][VALUE]); far deeper is a mistake, and
# unbounded depth ends in RecursionError in the JSON parser, the merge or the request encoder.
MAX_JSON_DEPTH = 32


def check_method(name: str) -> str:
    """``name`` when it is a REST method name, else ArgumentTypeError."""
    if not _METHOD.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"not a method name: {name[:80]!r} (dot-separated segments of letters, digits and _)"
        )
    return name


def bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type`` for an integer option within ``low..high``."""

    def parse(text: str) -> int:
        number = bounded_int(text, low=low, high=high)
        if number is None:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text[:20]!r}")
        return number

    return parse


def add_auth_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--portal", metavar="MEMBER_ID", help="an installed portal, by member_id")
    group.add_argument(
        "--webhook",
        metavar="URL",
        help="an inbound webhook URL (default: the BITRIX24_WEBHOOK_URL environment variable, "
        "which keeps the secret out of shell history)",
    )
    parser.add_argument(
        "--concurrency", type=bounded(1, 64), default=None, help="requests in flight to the portal (1-64)"
    )


def client_from(options: dict[str, Any]) -> Bitrix24Client:
    """The client for ``--portal`` or ``--webhook`` (falling back to BITRIX24_WEBHOOK_URL).

    Raises Bitrix24ConfigError for an unknown portal, or a webhook that isn't https.
    """
    concurrency = options.get("concurrency")
    if options.get("portal"):
        try:
            return client_for_portal(member_id=options["portal"], concurrency=concurrency)
        except Portal.DoesNotExist:
            raise Bitrix24ConfigError(f"no portal with member_id {options['portal'][:64]!r}") from None
    return client_for_webhook(url=options.get("webhook"), concurrency=concurrency)


def parse_pairs(pairs: list[str]) -> dict[str, Any]:
    """``["filter[>ID]=5", "select[]=ID"]`` → nested params, read the way PHP reads a query string.

    A value that starts with ``json:`` is parsed as JSON (``fields=json:{"TITLE": "x"}``), at most
    :data:`MAX_JSON_DEPTH` levels deep. Raises ArgumentTypeError for a pair without ``=`` or a
    JSON value that is invalid or too deep.
    """
    params: dict[str, Any] = {}
    plain: list[str] = []
    for pair in pairs:
        key, sep, value = _split_pair(pair)
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected key=value, got {pair!r}")
        if value.startswith("json:"):
            node = qs.decode(f"{quote(key, safe='[]')}=__json__")
            _place_json(node, _json_value(key, value[5:]))
            _merge(params, node)
        else:
            plain.append(f"{quote(key, safe='[]')}={quote(value, safe='')}")
    if plain:
        _merge(params, qs.decode("&".join(plain)))
    return params


def _json_value(key: str, text: str) -> Any:
    too_deep = argparse.ArgumentTypeError(f"{key}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text)
    except RecursionError:  # deeper than the parser's own stack
        raise too_deep from None
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{key}: invalid JSON: {e}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise too_deep
    return value


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            level += 1
            deepest = max(deepest, level)
            if level > MAX_JSON_DEPTH:
                break
            stack.extend((child, level) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


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


def unstyled(stream: Any) -> Any:
    """The stream under Django's OutputWrapper, which styles whatever goes to stderr as an error
    (bold red on a terminal): progress and summaries are written here, not through it."""
    return getattr(stream, "_out", stream)


def progress_bar(stderr: Any, description: str) -> Progress:
    """A progress bar on stderr (the TTY one; plain text when stderr is a file)."""
    console = Console(file=unstyled(stderr), stderr=True)
    return Progress(
        TextColumn(description),
        BarColumn(),
        TextColumn("{task.completed:,.0f}{task.fields[of]} rows"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )
