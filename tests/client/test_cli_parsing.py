"""`bitrix call` key=value parsing: PHP-style nesting like Bitrix24 reads it."""

from __future__ import annotations

import argparse

import pytest

from portals.cli.common import parse_pairs


def test_php_style_pairs_nest() -> None:
    params = parse_pairs(["filter[>ID]=5", "filter[STAGE_ID]=WON", "select[]=ID", "select[]=TITLE", "id=7"])
    assert params == {"filter": {">ID": "5", "STAGE_ID": "WON"}, "select": ["ID", "TITLE"], "id": "7"}


def test_operators_with_equals_stay_in_the_key() -> None:
    assert parse_pairs(["filter[<=ID]=4", "filter[>=DATE]=2024-01-01", "filter[!=STAGE_ID]=a=b"]) == {
        "filter": {"<=ID": "4", ">=DATE": "2024-01-01", "!=STAGE_ID": "a=b"}
    }


def test_json_values_keep_their_types() -> None:
    params = parse_pairs(
        ['fields=json:{"TITLE": "a&b=c", "OPPORTUNITY": 10}', "fields[CURRENCY_ID]=USD", "id=1"]
    )
    assert params == {"fields": {"TITLE": "a&b=c", "OPPORTUNITY": 10, "CURRENCY_ID": "USD"}, "id": "1"}


def test_values_may_contain_ampersands_and_equals() -> None:
    assert parse_pairs(["fields[TITLE]=a&b=c"]) == {"fields": {"TITLE": "a&b=c"}}


def test_a_pair_without_equals_is_refused() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_pairs(["oops"])
