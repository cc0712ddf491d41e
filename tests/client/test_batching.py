"""The batch wire format: PHP-style sub-calls, local back-references, per-command results."""

from __future__ import annotations

from urllib.parse import unquote

import qs_codec as qs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portals.bitrix.batching import (
    CommandResult,
    encode_command,
    parse_batch,
    php_query,
    php_values,
    references,
    resolve,
)
from portals.bitrix.exceptions import Bitrix24NotFound, Bitrix24RateLimited


def test_sub_calls_are_php_style_query_strings() -> None:
    cmd = encode_command(
        "crm.deal.list",
        {"filter": {">ID": 5, "STAGE_ID": ["NEW", "WON"]}, "select": ["ID"], "start": -1, "flag": True},
    )
    method, _, query = cmd.partition("?")
    assert method == "crm.deal.list"
    assert unquote(query) == (
        "filter[>ID]=5&filter[STAGE_ID][0]=NEW&filter[STAGE_ID][1]=WON&select[0]=ID&start=-1&flag=1"
    )
    assert encode_command("app.info", {}) == "app.info"


keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_>=<%!", min_size=1, max_size=8)
scalars = st.one_of(st.integers(-(10**9), 10**9), st.text(max_size=20))
nested = st.recursive(
    scalars, lambda inner: st.dictionaries(keys, inner, min_size=1, max_size=4), max_leaves=12
)


@given(params=st.dictionaries(keys, nested, max_size=5))
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_what_we_encode_php_decodes_back(params) -> None:
    _, _, query = encode_command("x", params).partition("?")
    decoded = qs.decode(query, qs.DecodeOptions(depth=50, parameter_limit=10_000)) if query else {}
    stringify = lambda v: {k: stringify(x) for k, x in v.items()} if isinstance(v, dict) else str(v)  # noqa: E731
    assert decoded == stringify(params)


php_leaves = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
)
php_trees = st.recursive(
    php_leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=16,
)


@given(params=st.dictionaries(keys, php_trees, max_size=5))
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_fast_encoder_writes_exactly_what_qs_codec_writes(params) -> None:
    assert php_query(params) == qs.encode(php_values(params))


def test_values_the_fast_encoder_does_not_know_go_through_qs_codec() -> None:
    from datetime import date

    params = {"filter": {">DATE_CREATE": date(2026, 1, 2)}, "select": ["ID"]}
    assert php_query(params) == qs.encode(php_values(params))


def test_references_resolve_from_finished_commands_only() -> None:
    done = {"a": CommandResult("a", "crm.deal.list", ok=True, result=[{"ID": "7"}] * 50, total=120, next=50)}
    params = {
        "filter": {">ID": "$result[a][49][ID]", "x": "id=$result[a][0][ID]!", "later": "$result[b][0][ID]"},
        "n": "$result_total[a]",
        "rows": "$result[a]",
    }
    out = resolve(params, done)
    assert out["filter"][">ID"] == "7"
    assert out["filter"]["x"] == "id=7!"
    assert out["filter"]["later"] == "$result[b][0][ID]"  # left to Bitrix24 inside the request
    assert out["n"] == 120
    assert isinstance(out["rows"], list) and len(out["rows"]) == 50
    assert references(params) == {"a", "b"}
    missing = resolve({"v": "$result[a][99][ID]"}, done)
    assert missing == {"v": "$result[a][99][ID]"}


def test_one_failing_command_does_not_hide_the_others() -> None:
    envelope = {
        "result": {"ok": {"ID": 1}},
        "result_error": {
            "bad": {"error": "", "error_description": "Not found"},
            "slow": {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"},
        },
        "result_total": [],
        "result_next": [],
        "result_time": {"ok": {"operating": 1.5, "operating_reset_at": 1}},
    }
    out = parse_batch(
        envelope, [("ok", "crm.deal.get"), ("bad", "crm.deal.get"), ("slow", "x"), ("late", "y")]
    )
    by_key = {r.key: r for r in out}
    assert by_key["ok"].ok and by_key["ok"].result == {"ID": 1} and by_key["ok"].time["operating"] == 1.5
    assert isinstance(by_key["bad"].error, Bitrix24NotFound)
    assert isinstance(by_key["slow"].error, Bitrix24RateLimited)
    assert not by_key["late"].ran and by_key["late"].error is None


def test_list_style_answers_are_accepted() -> None:
    out = parse_batch(
        {"result": [[1, 2], {"ID": 3}], "result_error": [], "result_total": [2]}, [("0", "a"), ("1", "b")]
    )
    assert out[0].result == [1, 2] and out[0].total == 2
    assert out[1].result == {"ID": 3}
