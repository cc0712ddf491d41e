"""`manage.py bitrix call METHOD key=value ...`: one REST call, the result as JSON on stdout.

Exit 0 with the result; 1 with one ``error: ...`` line on stderr for a refused argument, a failed
call, or an answer that isn't a Bitrix24 REST answer (no ``result``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..bitrix.exceptions import Bitrix24Error
from .common import add_auth_arguments, check_method, client_from, parse_pairs

NAME = "call"
HELP = "Call one REST method and print its result as JSON."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", help="e.g. crm.deal.get")
    parser.add_argument(
        "params", nargs="*", help="key=value, PHP-style keys (filter[>ID]=5); value json:{...}"
    )
    add_auth_arguments(parser)
    parser.add_argument(
        "--raw", action="store_true", help="print the whole envelope (result, time, next, total)"
    )
    parser.add_argument(
        "--v3",
        action="store_true",
        help='call REST 3.0 (/rest/api/); typed values with json:, e.g. fields=json:{"title": "x"}',
    )
    parser.add_argument(
        "--idempotency-key", default=None, help="REST 3.0: key that makes a retried write safe"
    )


def handle(options: dict[str, Any], *, stdout: Any, stderr: Any) -> int:
    try:
        method = check_method(options["method"])
        params = parse_pairs(options["params"])
        client = client_from(options)
        response = client.call_raw(
            method, params, v3=options["v3"], idempotency_key=options.get("idempotency_key")
        )
    except (Bitrix24Error, argparse.ArgumentTypeError, ValueError) as e:
        stderr.write(f"error: {e}\n")
        return 1
    # REST 3.0's OpenAPI document is the one answer without a "result" envelope.
    document = options["v3"] and "openapi" in response.payload
    if "result" not in response.payload and not document:
        # A JSON object without "result" (a proxy, a wrong host): printing null would pass for
        # a method that returned nothing.
        stderr.write("error: the answer has no 'result': not a Bitrix24 REST answer\n")
        return 1
    out = response.payload if options["raw"] or document else response.result
    stdout.write(json.dumps(out, ensure_ascii=False, indent=2) + "\n")
    return 0
