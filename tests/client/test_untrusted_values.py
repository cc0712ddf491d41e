"""Numbers from untrusted input: bounded before they become datetimes, lifetimes or ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portals.bitrix.exceptions import Bitrix24ServerError
from portals.bitrix.oauth import MAX_TOKEN_LIFETIME, AppInfo, TokenGrant
from portals.bitrix.values import MAX_UNIX_TS, bounded_int, unix_ts

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3600", 3600),
        (" 42 ", 42),
        (3600, 3600),
        (3600.0, 3600),
        ("0", 0),
        ("-1", None),  # below the bound
        ("86401", None),  # above it
        ("9" * 400, None),
        ("", None),
        (None, None),
        (True, None),  # a bool is not a number here, even though int(True) == 1
        (3600.5, None),
        (float("inf"), None),
        (float("nan"), None),
        ("٣٦٠٠", None),  # Arabic-Indic digits: int() takes them, we don't
        ("²", None),  # isdigit() says yes, int() would raise
        ("1e3", None),
        ("0x10", None),
        (["3600"], None),
    ],
)
def test_bounded_int_takes_only_plain_integers_in_range(value, expected) -> None:
    assert bounded_int(value, low=0, high=86_400) == expected


@given(st.one_of(st.text(), st.integers(), st.floats(), st.none(), st.booleans()))
def test_bounded_int_never_raises_and_stays_in_bounds(value) -> None:
    number = bounded_int(value, low=-5, high=5)
    assert number is None or -5 <= number <= 5


def test_unix_ts_is_bounded_before_it_becomes_a_datetime() -> None:
    assert unix_ts("1736405807") == datetime(2025, 1, 9, 6, 56, 47, tzinfo=UTC)
    assert unix_ts(str(MAX_UNIX_TS)) is not None
    # datetime.fromtimestamp(999999999999) raises "year 33658 is out of range"
    assert unix_ts("999999999999") is None
    assert unix_ts(str(MAX_UNIX_TS + 1)) is None
    assert unix_ts("-1") is None


def grant(**fields) -> dict:
    return {"access_token": "a" * 32, "refresh_token": "r" * 32, **fields}


def test_a_token_lifetime_in_range_is_taken() -> None:
    parsed = TokenGrant.from_payload(grant(expires_in="3600", user_id="7"), now=NOW)
    assert parsed.expires_at == NOW + timedelta(hours=1) and parsed.user_id == 7
    absolute = TokenGrant.from_payload(grant(expires=int(NOW.timestamp()) + 1800), now=NOW)
    assert absolute.expires_in == 1800
    past = TokenGrant.from_payload(grant(expires=int(NOW.timestamp()) - 10), now=NOW)
    assert past.expires_in == 0  # already expired on our clock: refreshed before first use


@pytest.mark.parametrize(
    "fields",
    [
        {"expires_in": "9" * 400},  # was an OverflowError in timedelta
        {"expires_in": MAX_TOKEN_LIFETIME + 1},
        {"expires_in": "0"},
        {"expires_in": "-3600"},
        {"expires_in": "an hour"},
        {"expires": "99999999999"},  # was stored as an expiry in the year 5195
        {"expires": int(NOW.timestamp()) + MAX_TOKEN_LIFETIME + 1},
        {"expires": "9" * 400},
        {},
        {"expires_in": "3600", "user_id": "9" * 30},
        {"expires_in": "3600", "user_id": "-1"},
    ],
)
def test_an_unusable_token_answer_is_a_server_error(fields) -> None:
    with pytest.raises(Bitrix24ServerError) as refused:
        TokenGrant.from_payload(grant(**fields), now=NOW)
    assert refused.value.code == "ERROR_UNEXPECTED_ANSWER"


def test_app_info_refuses_a_user_id_that_is_no_user_id() -> None:
    assert AppInfo.from_result({"install": {"user_id": "5"}}).user_id == 5
    assert AppInfo.from_result({"install": {}}).user_id is None  # not sent: nothing to compare
    # Garbled is not "not sent": a comparison with the claimed user must not be skipped.
    with pytest.raises(Bitrix24ServerError):
        AppInfo.from_result({"install": {"user_id": "5 OR 1=1"}})
