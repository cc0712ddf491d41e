"""portals.bitrix.events: parsing, identity and verification, without Django or a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qs_codec import encode

from portals.bitrix.events import (
    StaleEvent,
    check_event_age,
    parse_event_body,
    parse_offline_record,
    payload_from_json,
    token_digest,
    verify_application_token,
)
from portals.bitrix.exceptions import InvalidApplicationToken, InvalidEventPayload
from tests.fixtures.events import form_body, load_payload


def test_recorded_payload_parses_into_nested_parts_with_secrets_apart():
    payload = parse_event_body(form_body(load_payload("oncrmdealupdate__basic", ts=1736405807)))
    assert payload.event == "ONCRMDEALUPDATE"
    assert payload.member_id == "a223c6b3710f85df22e9377d6c4f7553"
    assert payload.data == {"FIELDS": {"ID": "759"}}
    assert payload.ts == datetime(2025, 1, 9, 6, 56, 47, tzinfo=UTC)
    assert payload.object_id == "759" and payload.object_key == "ONCRMDEAL:759"
    assert payload.application_token == "51856fefc120afa4b628cc82d3935cce"
    assert "application_token" not in payload.auth and "access_token" not in payload.auth
    assert payload.auth["user_id"] == "1"
    assert "51856fefc120afa4b628cc82d3935cce" not in repr(payload)
    assert "s6p6eclrvim6da22ft9ch94ekreb52lv" not in str(payload.as_json())


def test_lifecycle_events_share_one_ordering_key_per_portal():
    for name in ("onappuninstall__clean", "onappupdate__basic", "onapppayment__basic"):
        assert parse_event_body(form_body(load_payload(name))).object_key == "app"


def test_add_update_delete_of_one_deal_share_an_ordering_key():
    keys = {
        parse_event_body(form_body(load_payload(name))).object_key
        for name in ("oncrmdealadd__basic", "oncrmdealupdate__basic", "oncrmdealdelete__basic")
    }
    assert keys == {"ONCRMDEAL:759"}


def test_idempotency_key_ignores_delivery_details_but_not_changes():
    base = load_payload("oncrmdealupdate__basic", ts=1736405807)
    key = parse_event_body(form_body(base)).idempotency_key()
    # One change delivered through another binding: another handler id, and another user when the
    # binding's auth_type names one.
    same_change = {
        **base,
        "event_handler_id": "999",
        "auth": {**base["auth"], "access_token": "other", "user_id": "2"},
    }
    assert parse_event_body(form_body(same_change)).idempotency_key() == key
    for different in (
        {**base, "ts": "1736405808"},
        {**base, "data": {"FIELDS": {"ID": "760"}}},
        {**base, "event": "ONCRMDEALADD"},
        {**base, "data": {"FIELDS": {"ID": "759", "STAGE_ID": "WON"}}},
    ):
        assert parse_event_body(form_body(different)).idempotency_key() != key


def test_stored_form_round_trips():
    payload = parse_event_body(form_body(load_payload("ontaskupdate__nested", ts=1736405807)))
    again = payload_from_json(payload.as_json())
    assert again.idempotency_key() == payload.idempotency_key()
    assert again.object_key == payload.object_key == "ONTASK:44"
    assert again.secrets == {}


def test_token_verification_is_by_digest():
    digest = token_digest("secret-token")
    verify_application_token(expected_digest=digest, received="secret-token")
    for wrong in ("secret-tokeN", "", "secret-token "):
        with pytest.raises(InvalidApplicationToken):
            verify_application_token(expected_digest=digest, received=wrong)
    with pytest.raises(InvalidApplicationToken):
        verify_application_token(expected_digest=b"", received="")


def test_age_window_applies_to_online_events_only():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    online = parse_event_body(
        form_body(load_payload("oncrmdealupdate__basic", ts=int(now.timestamp()) - 7200))
    )
    with pytest.raises(StaleEvent):
        check_event_age(online, now=now, window=timedelta(hours=1))
    check_event_age(online, now=now, window=timedelta(hours=3))
    record = {
        "ID": "5",
        "TIMESTAMP_X": "2025-12-20T10:00:00+00:00",
        "EVENT_NAME": "ONCRMDEALUPDATE",
        "EVENT_DATA": {"FIELDS": {"ID": "5"}},
        "EVENT_ADDITIONAL": {"user_id": "1"},
        "MESSAGE_ID": "abc",
    }
    offline = parse_offline_record(record, member_id="m1")
    check_event_age(offline, now=now, window=timedelta(hours=1))  # 12 days old, still accepted
    assert offline.offline and offline.object_key == "ONCRMDEAL:5" and offline.auth["user_id"] == "1"
    # A record fetched twice is one event; the same object changed later is another.
    assert parse_offline_record(record, member_id="m1").idempotency_key() == offline.idempotency_key()
    later = {**record, "TIMESTAMP_X": "2025-12-20T10:05:00+00:00"}
    assert parse_offline_record(later, member_id="m1").idempotency_key() != offline.idempotency_key()


def test_nul_is_refused_online_and_offline():
    payload = load_payload("oncrmdealupdate__basic", ts=1736405807)
    payload["data"]["FIELDS"]["TITLE"] = "a\x00b"
    with pytest.raises(InvalidEventPayload, match="NUL"):
        parse_event_body(form_body(payload))
    record = {"ID": "5", "EVENT_NAME": "ONCRMDEALUPDATE", "EVENT_DATA": {"FIELDS": {"T": ["\x00"]}}}
    with pytest.raises(InvalidEventPayload, match="NUL"):
        parse_offline_record(record, member_id="m1")
    # A backslash and "u0000" is plain text, not a NUL.
    record["EVENT_DATA"] = {"FIELDS": {"ID": "5", "T": "\\u0000"}}
    assert parse_offline_record(record, member_id="m1").data["FIELDS"]["T"] == "\\u0000"


# Nested form data as PHP builds it: string leaves, dict keys that are not plain integers.
_key_chars = st.characters(min_codepoint=48, max_codepoint=122, categories=["L", "N"])
_keys = st.text(alphabet=_key_chars, min_size=1, max_size=8).filter(lambda k: not k.isdigit())
# NUL is refused on purpose (test_nul_is_refused_online_and_offline), so no leaf holds one.
_leaf_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
_leaves = st.text(alphabet=_leaf_chars, max_size=20).filter(lambda v: v != "")
_data = st.recursive(
    _leaves, lambda children: st.dictionaries(_keys, children, min_size=1, max_size=4), max_leaves=12
)


@settings(max_examples=150, deadline=None)
@given(data=st.dictionaries(_keys, _data, min_size=1, max_size=4))
def test_any_nested_form_round_trips_through_the_parser(data):
    payload = {
        "event": "ONCRMDEALUPDATE",
        "ts": "1736405807",
        "data": data,
        "auth": {"member_id": "m1", "application_token": "t"},
    }
    assert parse_event_body(encode(payload).encode()).data == data


def test_auth_shortcut_gives_the_same_nesting_as_qs_codec():
    from qs_codec import decode

    from portals.bitrix.events import _DECODE_OPTIONS, parse_event_fields, split_form

    for name in ("oncrmdealupdate__basic", "ontaskupdate__nested", "onappupdate__basic"):
        body = form_body(load_payload(name, ts=1736405807))
        reference = decode(body.decode(), _DECODE_OPTIONS)
        payload = parse_event_fields(split_form(body))
        assert payload.data == reference.get("data", {})
        secrets = {k: v for k, v in reference["auth"].items() if k in payload.secrets}
        assert {**payload.auth, **payload.secrets} == {**reference["auth"], **secrets}
