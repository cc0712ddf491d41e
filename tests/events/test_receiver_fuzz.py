"""No body anyone can POST to the event receiver produces a 5xx.

The receiver is reachable without authentication, so every value in a request is checked before
use. Hypothesis generates form bodies (known and random keys, nested brackets, huge numbers, odd
unicode, broken encodings, a correct token now and then so parsing goes past verification) and
sends them through Django's request handling: the answer is always 200, 400, 403 or 413.
"""

from __future__ import annotations

import io
import time
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.fixtures.events import load_payload

pytestmark = pytest.mark.django_db

URL = "/bitrix/events/"
FORM = "application/x-www-form-urlencoded"
ANSWERS = {200, 400, 403, 413}

PAYLOAD = load_payload("oncrmdealupdate__basic")
MEMBER_ID = PAYLOAD["auth"]["member_id"]
TOKEN = PAYLOAD["auth"]["application_token"]

KNOWN_KEYS = [
    "event",
    "ts",
    "event_handler_id",
    "auth[member_id]",
    "auth[application_token]",
    "auth[access_token]",
    "auth[refresh_token]",
    "auth[domain]",
    "auth[expires]",
    "auth[expires_in]",
    "auth[user_id]",
    "auth",
    "auth[]",
    "data",
    "data[FIELDS][ID]",
    "data[FIELDS_AFTER][ID]",
    "data[VERSION]",
    "data[CLEAN]",
    "data[0]",
    "data[]",
]
EVENTS = ["ONCRMDEALUPDATE", "ONCRMDEALADD", "ONAPPUPDATE", "ONAPPUNINSTALL", "ONAPPPAYMENT", "onapptest"]

# Any unicode but NUL (a body with NUL is refused before anything else: kept to a few examples).
odd_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
# Keys: the protocol's, random ones, and bracket nests (deep, unbalanced, empty).
nested = st.builds(
    lambda head, parts, tail: head + "".join(f"[{p}]" for p in parts) + tail,
    st.sampled_from(["data", "auth", "ts", "event", "x", ""]),
    st.lists(st.sampled_from(["", "0", "ID", "FIELDS", "[", "]", "99999999999999999999"]), max_size=30),
    st.sampled_from(["", "[", "]", "]]", "[[", "[]"]),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), nested, odd_text)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=0, max_value=2_000).map(lambda n: "9" * n),
    st.sampled_from(["999999999999", "1e309", "-0", "٣", "²", "nan", "inf", "0x10", " 1", "1 "]),
)
values = st.one_of(
    odd_text,
    numbers,
    st.sampled_from(EVENTS),
    st.sampled_from([MEMBER_ID, TOKEN, str(int(time.time())), "", "%ff%fe", "%00"]),
)


def encode(pairs: list[tuple[str, str]], raw: bool) -> bytes:
    """Percent-encoded as a form is, or raw (unescaped & = [ ] % as they come)."""
    if raw:
        return "&".join(f"{k}={v}" for k, v in pairs).encode()
    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in pairs).encode()


def post(client, body: bytes):
    # Content-Length always, as an HTTP client sends it (Django's test client leaves it out for an
    # empty body, and its stream can't be read without one).
    return client.generic("POST", URL, body, content_type=FORM, CONTENT_LENGTH=str(len(body)))


@pytest.fixture
def portal(make_portal):
    # Verification can succeed, so parsing goes on past the token check. Its OAuth server refuses
    # connections at once (port 9 on loopback) for the ONAPPUPDATE path that asks it.
    return make_portal(PAYLOAD, server_endpoint="https://127.0.0.1:9/rest/")


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.sampled_from(["genuine", "genuine", "genuine", "none"]),
    pairs=st.lists(st.tuples(keys, values), max_size=12),
    raw=st.sampled_from([False, False, True]),
)
def test_no_form_body_gives_a_server_error(client, portal, base, pairs, raw) -> None:
    # Most bodies start as a genuine event (right member, token and ts) and are then mangled, so
    # many get past verification into the full parse and the store.
    start = [*_genuine(), ("ts", str(int(time.time())))] if base == "genuine" else []
    body = encode(start + pairs, raw)
    response = post(client, body)
    # Shown by --hypothesis-show-statistics: how far the bodies got.
    event(f"{response.status_code} {response.content[:60]!r}".split(', "id"')[0])
    assert response.status_code in ANSWERS, (body[:500], response.content[:500])


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=400))
def test_no_byte_string_gives_a_server_error(client, portal, body) -> None:
    response = post(client, body)
    assert response.status_code in ANSWERS, (body, response.content[:500])


@pytest.mark.parametrize("ts", ["999999999999", "4102444801", "²", "٣٣٣", "9" * 400, "-1", "1.5"])
def test_an_out_of_range_ts_is_refused_as_malformed(client, portal, ts) -> None:
    # Before: datetime.fromtimestamp raised "year 33658 is out of range", a 500 ahead of the
    # token check, for anyone.
    response = post(client, encode([*_genuine(), ("ts", ts)], raw=False))
    assert response.status_code == 400
    assert response.json() == {"error": "InvalidEventPayload", "detail": "malformed 'ts'"}


def test_the_genuine_event_is_accepted(client, portal) -> None:
    # The baseline the fuzzing mangles: unmangled, it is stored.
    response = post(client, encode([*_genuine(), ("ts", str(int(time.time())))], raw=False))
    assert response.status_code == 200 and response.json()["result"] == "accepted"


class DroppedConnection(io.RawIOBase):
    """A request stream whose sender went away mid-body, as a WSGI server reports it."""

    def read(self, size: int = -1) -> bytes:
        raise OSError("client disconnected")


@pytest.mark.parametrize("length", ["", "40"])
def test_a_body_that_cannot_be_read_is_refused(client, length) -> None:
    stream = {"wsgi.input": DroppedConnection(), "CONTENT_TYPE": FORM, "CONTENT_LENGTH": length}
    response = client.generic("POST", URL, **stream)
    assert response.status_code == 400
    assert response.json()["detail"] == "body could not be read"


def _genuine() -> list[tuple[str, str]]:
    return [
        ("event", "ONCRMDEALUPDATE"),
        ("data[FIELDS][ID]", "7"),
        ("auth[member_id]", MEMBER_ID),
        ("auth[application_token]", TOKEN),
        ("auth[domain]", PAYLOAD["auth"]["domain"]),
    ]
