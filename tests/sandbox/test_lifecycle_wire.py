"""The lifecycle's wire shapes and state machines, without a server: form encoding, frame POST,
event auth blocks, the offline queue and event/placement registrations."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.lifecycle import bindings
from sandbox.lifecycle.bindings import AppRegistrations
from sandbox.lifecycle.errors import LifecycleError
from sandbox.lifecycle.forms import php_form_decode, php_form_encode
from sandbox.lifecycle.offline import OfflineQueue
from sandbox.lifecycle.payloads import PortalIdentity, UserTokens, event_payload, frame_post

PORTAL = PortalIdentity(
    member_id="a" * 32,
    domain="127.0.0.2:8443",
    client_endpoint="https://127.0.0.2:8443/rest/",
    server_endpoint="https://127.0.0.1:8443/rest/",
    application_token="apptoken123",
    scope="crm,placement",
)
TOKENS = UserTokens(
    access_token="acc",
    refresh_token="ref",
    expires=1_900_000_000,
    expires_in=3600,
    user_id=7,
    scope="crm,placement",
)


def test_form_encoding_is_php_http_build_query():
    body = php_form_encode(
        {
            "event": "ONCRMDEALADD",
            "data": {"FIELDS": {"ID": 5}},
            "auth": {"domain": "a b"},
            "l": ["x", "y"],
            "n": None,
        }
    )
    assert body == (
        "event=ONCRMDEALADD&data%5BFIELDS%5D%5BID%5D=5&auth%5Bdomain%5D=a+b&l%5B0%5D=x&l%5B1%5D=y"
    )
    assert php_form_encode({"flag": True, "off": False}) == "flag=1&off=0"


@given(
    st.dictionaries(
        st.text(alphabet="abcXYZ_", min_size=1, max_size=6),
        st.one_of(
            st.text(max_size=12),
            st.dictionaries(st.text(alphabet="ABC", min_size=1, max_size=4), st.text(max_size=8), max_size=3),
        ),
        max_size=5,
    )
)
def test_form_round_trip(payload):
    decoded = php_form_decode(php_form_encode(payload))
    expected = {k: v for k, v in payload.items() if v != {}}
    assert decoded == expected


def test_ordinary_event_has_no_refresh_token_and_install_has():
    ordinary = event_payload(
        event="ONCRMDEALADD", handler_id=3, data={"FIELDS": {"ID": 9}}, ts=100, portal=PORTAL, tokens=TOKENS
    )
    assert ordinary["event_handler_id"] == "3" and ordinary["ts"] == "100"
    assert "refresh_token" not in ordinary["auth"]
    assert list(ordinary["auth"]) == [
        "access_token",
        "expires",
        "expires_in",
        "scope",
        "domain",
        "server_endpoint",
        "status",
        "client_endpoint",
        "member_id",
        "user_id",
        "application_token",
    ]
    install = event_payload(event="ONAPPINSTALL", handler_id=1, data={}, ts=100, portal=PORTAL, tokens=TOKENS)
    assert install["auth"]["refresh_token"] == "ref"
    assert install["auth"]["application_token"] == "apptoken123"


def test_uninstall_auth_block_is_context_only():
    payload = event_payload(
        event="ONAPPUNINSTALL", handler_id=1, data={"CLEAN": "1"}, ts=1, portal=PORTAL, tokens=TOKENS
    )
    assert set(payload["auth"]) == {
        "domain",
        "server_endpoint",
        "client_endpoint",
        "member_id",
        "application_token",
    }


def test_frame_post_splits_query_and_body():
    frame = frame_post(
        portal=PORTAL, tokens=TOKENS, placement="CRM_DEAL_DETAIL_TAB", placement_options={"ID": "5"}
    )
    assert set(frame.query) == {"DOMAIN", "PROTOCOL", "LANG", "APP_SID"}
    assert frame.query["PROTOCOL"] == "1" and frame.query["DOMAIN"] == PORTAL.domain
    assert (
        frame.body["AUTH_ID"] == "acc"
        and frame.body["REFRESH_ID"] == "ref"
        and frame.body["AUTH_EXPIRES"] == "3600"
    )
    assert frame.body["member_id"] == PORTAL.member_id and frame.body["APPLICATION_TOKEN"] == "apptoken123"
    assert frame.body["PLACEMENT_OPTIONS"] == '{"ID":"5"}'
    assert "apptoken123" not in repr(frame) and "acc" not in repr(TOKENS)
    default = frame_post(portal=PORTAL, tokens=TOKENS)
    assert default.body["PLACEMENT"] == "DEFAULT" and "PLACEMENT_OPTIONS" not in default.body
    assert default.query["APP_SID"] != frame.query["APP_SID"]


def test_offline_queue_keeps_latest_state_per_object():
    queue = OfflineQueue()
    for i in range(5):
        queue.record(event="ONCRMDEALUPDATE", data={"FIELDS": {"ID": 1}, "n": i}, object_id=1, now=100.0 + i)
    queue.record(event="ONCRMDEALUPDATE", data={"FIELDS": {"ID": 2}}, object_id=2, now=200.0)
    assert len(queue.records) == 2
    assert queue.records[0].event_data["n"] == 4 and queue.records[0].timestamp == 104.0


def test_offline_reserve_confirm_and_error():
    queue = OfflineQueue()
    for object_id in range(1, 6):
        queue.record(
            event="ONCRMDEALADD",
            data={"FIELDS": {"ID": object_id}},
            object_id=object_id,
            now=float(object_id),
        )
    first = queue.get({"clear": 0, "limit": 2}, extended=True)
    second = queue.get({"clear": 0, "limit": 2}, extended=True)
    assert first["process_id"] and first["process_id"] != second["process_id"]
    ids_first = {e["ID"] for e in first["events"]}
    ids_second = {e["ID"] for e in second["events"]}
    assert ids_first == {"1", "2"} and ids_second == {"3", "4"}  # parallel readers get disjoint sets
    # A change to a reserved object queues a new record instead of altering the reserved one.
    queue.record(event="ONCRMDEALADD", data={"FIELDS": {"ID": 1}}, object_id=1, now=9.0)
    assert len(queue.records) == 6
    queue.clear({"process_id": first["process_id"], "id": ["1"]})
    assert [r.id for r in queue.records if r.process_id == first["process_id"]] == [2]
    message_id = second["events"][0]["MESSAGE_ID"]
    queue.error({"process_id": second["process_id"], "message_id": [message_id]})
    errored = queue.get({"error": 1}, extended=True)
    assert [e["MESSAGE_ID"] for e in errored["events"]] == [message_id]
    rest = queue.get({}, extended=True)  # clear=1 by default: read and delete
    assert rest["process_id"] is None and {e["ID"] for e in rest["events"]} == {"5", "6"}
    with pytest.raises(LifecycleError) as refused:
        queue.get({"clear": 0}, extended=False)
    assert refused.value.status == 403


def test_offline_filter_order_and_list_paging():
    queue = OfflineQueue()
    for object_id in range(1, 61):
        event = "ONCRMLEADADD" if object_id % 2 else "ONCRMDEALADD"
        queue.record(event=event, data={}, object_id=object_id, now=float(object_id))
    got = queue.get(
        {"filter": {">=ID": 50, "=EVENT_NAME": "ONCRMDEALADD"}, "order": {"ID": "DESC"}, "clear": 0},
        extended=True,
    )
    assert [e["ID"] for e in got["events"]] == ["60", "58", "56", "54", "52", "50"]
    page, total, following = queue.list({})
    assert total == 60 and len(page) == 50 and following == 50
    assert page[0]["PROCESS_ID"] == "" and "ERROR" in page[0]
    reserved, total, following = queue.list({"filter": {"!PROCESS_ID": ""}, "start": 0})
    assert total == 6 and following is None


def test_event_bind_rules():
    regs = AppRegistrations()
    assert bindings.event_bind(
        regs, {"event": "onCrmDealAdd", "handler": "http://127.0.0.1:9/h"}, user_id=1, is_admin=True
    )
    with pytest.raises(LifecycleError) as dup:
        bindings.event_bind(
            regs, {"event": "ONCRMDEALADD", "handler": "http://127.0.0.1:9/h"}, user_id=1, is_admin=True
        )
    assert dup.value.code == "ERROR_HANDLER_ALREADY_EXIST"
    with pytest.raises(LifecycleError) as unknown:
        bindings.event_bind(regs, {"event": "ONNOTHING", "handler": "http://x/"}, user_id=1, is_admin=True)
    assert unknown.value.code == "ERROR_EVENT_NOT_FOUND"
    with pytest.raises(LifecycleError) as offline_user:
        bindings.event_bind(
            regs, {"event": "ONCRMDEALADD", "event_type": "offline"}, user_id=3, is_admin=False
        )
    assert offline_user.value.status == 403
    bindings.event_bind(
        regs,
        {"event": "ONCRMDEALADD", "handler": "http://127.0.0.1:9/h", "auth_type": 5},
        user_id=1,
        is_admin=True,
    )
    bindings.event_bind(regs, {"event": "ONCRMDEALADD", "event_type": "offline"}, user_id=1, is_admin=True)
    rows = bindings.event_get(regs, user_id=1, is_admin=True)
    assert rows[0] == {
        "event": "ONCRMDEALADD",
        "handler": "http://127.0.0.1:9/h",
        "auth_type": "0",
        "offline": 0,
    }
    assert {(r["auth_type"], r["offline"]) for r in rows} == {("0", 0), ("5", 0), ("0", 1)}
    assert bindings.event_unbind(
        regs,
        {"event": "ONCRMDEALADD", "handler": "http://127.0.0.1:9/h", "auth_type": 0},
        user_id=1,
        is_admin=True,
    ) == {"count": 1}
    assert len(regs.handlers) == 2


def test_event_unbind_narrows_by_auth_type_only_when_given():
    """RD api-reference/events/event-unbind.md: auth_type=0 or empty removes only the acting-user
    handlers, another value only that user's; a parameter not given doesn't narrow; admins only."""
    regs = AppRegistrations()
    handler = "http://127.0.0.1:9/h"
    for auth_type in (0, 2, 5):
        bindings.event_bind(
            regs,
            {"event": "ONCRMDEALADD", "handler": handler, "auth_type": auth_type},
            user_id=1,
            is_admin=True,
        )

    def unbind(**params):
        return bindings.event_unbind(
            regs, {"event": "ONCRMDEALADD", "handler": handler, **params}, user_id=1, is_admin=True
        )

    assert unbind(auth_type="2") == {"count": 1}
    assert {h.auth_type for h in regs.handlers} == {0, 5}
    assert unbind(auth_type="") == {"count": 1}
    assert {h.auth_type for h in regs.handlers} == {5}
    with pytest.raises(LifecycleError) as refused:
        bindings.event_unbind(
            regs, {"event": "ONCRMDEALADD", "handler": handler, "auth_type": 2}, user_id=2, is_admin=False
        )
    assert refused.value.status == 403 and refused.value.code == "ACCESS_DENIED"
    bindings.event_bind(regs, {"event": "ONCRMDEALADD", "handler": handler}, user_id=1, is_admin=True)
    assert unbind() == {"count": 2}
    assert regs.handlers == []


def test_placement_bind_rules():
    regs = AppRegistrations()
    with pytest.raises(LifecycleError) as missing:
        bindings.placement_bind(regs, {"HANDLER": "http://x/"}, is_admin=True)
    assert missing.value.code == "ERROR_ARGUMENT" and missing.value.body()["argument"] == "PLACEMENT"
    with pytest.raises(LifecycleError) as unknown:
        bindings.placement_bind(regs, {"PLACEMENT": "NOPE", "HANDLER": "http://x/"}, is_admin=True)
    assert unknown.value.code == "ERROR_PLACEMENT_NOT_FOUND"
    with pytest.raises(LifecycleError) as protocol:
        bindings.placement_bind(
            regs, {"PLACEMENT": "CRM_DEAL_DETAIL_TAB", "HANDLER": "ftp://x/"}, is_admin=True
        )
    assert protocol.value.code == "ERROR_UNSUPPORTED_PROTOCOL"
    assert bindings.placement_bind(
        regs, {"PLACEMENT": "CRM_DEAL_DETAIL_TAB", "HANDLER": "http://x/t/", "TITLE": "Tab"}, is_admin=True
    )
    rows = bindings.placement_get(regs, is_admin=True)
    assert (
        rows[0]["placement"] == "CRM_DEAL_DETAIL_TAB" and rows[0]["title"] == "Tab" and rows[0]["userId"] == 0
    )
    assert bindings.placement_unbind(regs, {"PLACEMENT": "CRM_DEAL_DETAIL_TAB"}, is_admin=True) == {
        "count": 1
    }
    with pytest.raises(LifecycleError):
        bindings.placement_get(regs, is_admin=False)


def test_query_split_survives_a_real_url():
    frame = frame_post(portal=PORTAL, tokens=TOKENS)
    assert dict(parse_qsl(php_form_encode(frame.body))) == frame.body


@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("record"), st.sampled_from(["ONCRMDEALADD", "ONCRMDEALUPDATE"]), st.integers(1, 4)
            ),
            st.tuples(st.just("reserve"), st.integers(0, 3)),
            st.tuples(st.just("take"), st.integers(0, 3)),
            st.tuples(st.just("confirm"), st.booleans()),
            st.tuples(st.just("fail"), st.booleans()),
        ),
        max_size=40,
    )
)
def test_offline_queue_invariants(operations):
    """Whatever the order of changes and consumer calls: one waiting record per event and object,
    every record read at most once by get, and ids never reused."""
    queue = OfflineQueue()
    processes: list[str] = []
    delivered: list[str] = []
    now = 0.0
    for op in operations:
        now += 1
        if op[0] == "record":
            queue.record(event=op[1], data={"FIELDS": {"ID": op[2]}}, object_id=op[2], now=now)
        elif op[0] == "reserve":
            got = queue.get({"clear": 0, "limit": op[1]}, extended=True)
            processes.append(got["process_id"])
            delivered += [e["ID"] for e in got["events"]]
        elif op[0] == "take":
            delivered += [e["ID"] for e in queue.get({"limit": op[1]}, extended=True)["events"]]
        elif processes:
            process = processes.pop(0) if op[1] else processes[-1]
            (queue.clear if op[0] == "confirm" else queue.error)({"process_id": process})
        waiting = [(r.message_id) for r in queue.records if not r.process_id and not r.error]
        assert len(waiting) == len(set(waiting))
        ids = [r.id for r in queue.records]
        assert len(ids) == len(set(ids))
    assert len(delivered) == len(set(delivered))
