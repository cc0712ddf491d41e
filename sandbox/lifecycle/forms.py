"""PHP-style form encoding, the way a Bitrix24 portal (PHP's http_build_query) puts nested data on the wire.

Events, ONAPPINSTALL and the iframe's frame POST are `application/x-www-form-urlencoded` bodies with
nested keys in brackets (`auth[access_token]=...`, `data[FIELDS][ID]=...`). qs-codec does the bracket
work; this module only maps Python values to what PHP would print, so the app's parser sees what it
would see from a real portal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import qs_codec

_ENCODE_OPTIONS = qs_codec.EncodeOptions(
    list_format=qs_codec.ListFormat.INDICES,  # PHP numbers list items: l[0]=a&l[1]=b
    format=qs_codec.Format.RFC1738,  # PHP's urlencode: a space is "+"
    # Nulls are dropped by _php_scalar (as http_build_query does); qs-codec must keep "" values.
)


def _php_scalar(value: Any) -> Any:
    """What PHP prints for one value: true → "1", false → "0"; containers are walked."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Mapping):
        return {str(k): _php_scalar(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_php_scalar(v) for v in value if v is not None]
    return value


def php_form_encode(payload: Mapping[str, Any]) -> str:
    """Encode a nested mapping as PHP's http_build_query does (brackets percent-encoded, "+" for spaces).

    None values are dropped and empty containers vanish, as in PHP; booleans become "1"/"0".
    """
    return qs_codec.encode(_php_scalar(payload), _ENCODE_OPTIONS)


def php_form_decode(body: str | bytes) -> dict[str, Any]:
    """Decode a PHP-style form body into nested dicts (numbered keys become lists, as qs-codec does)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    return qs_codec.decode(body)
