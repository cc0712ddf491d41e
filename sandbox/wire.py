"""Wire helpers shared by the REST layer, the OAuth server and extensions: parameter parsing
(query, form and JSON bodies with PHP-style nested keys), the ``time`` block, JSON answers, and
dropping a connection without an answer."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import qs_codec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.registry import RestError
from sandbox.seed import PORTAL_TZ

# PHP's parser has no practical depth/count limits for our purposes; qs defaults (depth 5, 1000
# parameters, lists up to index 20) would silently turn deep filters and long id lists into dicts.
DECODE_OPTIONS = qs_codec.DecodeOptions(depth=32, parameter_limit=1_000_000, list_limit=100_000)


class DropConnection(Exception):
    """Raised after the socket was closed on purpose: the ASGI app must return without answering."""


def decode_query(text: str) -> dict[str, Any]:
    """PHP-style nested keys (``filter[>ID]=5``, ``select[]=ID``) → nested dicts and lists."""
    if not text:
        return {}
    return dict(qs_codec.decode(text, DECODE_OPTIONS))


async def read_params(request: Request) -> dict[str, Any]:
    """Merge query-string and body parameters (body wins, as PHP's $_REQUEST does).

    Raises RestError(INVALID_REQUEST, 400) for a JSON body that is not a JSON object.
    """
    params = decode_query(request.url.query)
    body = await request.body()
    if not body:
        return params
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            raise RestError("INVALID_REQUEST", "Invalid JSON body", 400)
        if not isinstance(data, dict):
            raise RestError("INVALID_REQUEST", "Invalid JSON body", 400)
        params.update(data)
    elif content_type == "multipart/form-data":
        form = await request.form()
        pairs = [(key, value) for key, value in form.multi_items() if isinstance(value, str)]
        params.update(decode_query(urlencode(pairs)))
    else:
        params.update(decode_query(body.decode("utf-8", errors="replace")))
    return params


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, PORTAL_TZ).replace(microsecond=0).isoformat()


def time_block(
    start: float, finish: float, processing: float, operating: float, reset_at: float
) -> dict[str, Any]:
    """The documented ``time`` object (all fields, as the cloud sends them)."""
    return {
        "start": round(start, 6),
        "finish": round(finish, 6),
        "duration": round(finish - start, 6),
        "processing": round(processing, 6),
        "date_start": iso(start),
        "date_finish": iso(finish),
        "operating_reset_at": int(reset_at),
        "operating": round(operating, 6),
    }


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(error: RestError) -> Response:
    return JSONResponse(error.body(), status_code=error.status)


async def drop_connection(request: Request) -> None:
    """Close the client's socket without an answer (RST), then raise DropConnection."""
    transport = request.scope.get("sandbox.transport")
    if transport is not None:
        transport.abort()
        # Let the protocol see connection_lost before the app returns, so the server doesn't try
        # to answer with a 500 on a dead socket.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    raise DropConnection()
