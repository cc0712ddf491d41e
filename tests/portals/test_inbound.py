"""The one door: frames, the code flow's callback and events are split by one strict parser."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portals.bitrix.exceptions import InvalidEventPayload, MalformedRequest
from portals.bitrix.inbound import MAX_FIELDS, parse_frame, parse_oauth_callback, split_form
from portals.models import Portal
from portals.views.inbound import FORM
from tests.fixtures.portals import issue_tokens

QUERY = b"DOMAIN=a.bitrix24.com&PROTOCOL=1&LANG=ru&APP_SID=s"
BODY = {
    "AUTH_ID": "access-1",
    "REFRESH_ID": "refresh-1",
    "APPLICATION_TOKEN": "app-token-1",
    "SERVER_ENDPOINT": "https://oauth.bitrix.info/rest/",
    "member_id": "m1",
    "PLACEMENT": "CRM_DEAL_DETAIL_TAB",
    "PLACEMENT_OPTIONS": '{"ID":"5"}',
}


def _body(**changes: str) -> bytes:
    return urlencode({**BODY, **changes}).encode()


def test_a_frame_is_read_from_its_query_and_its_body():
    fields = parse_frame(query=QUERY, body=_body())
    assert (fields.member_id, fields.domain, fields.https, fields.lang) == (
        "m1",
        "a.bitrix24.com",
        True,
        "ru",
    )
    assert (fields.access_token, fields.refresh_token, fields.application_token) == (
        "access-1",
        "refresh-1",
        "app-token-1",
    )
    assert fields.placement == "CRM_DEAL_DETAIL_TAB" and fields.placement_options == {"ID": "5"}
    # Tokens never show in a log line or a traceback's locals.
    assert (
        "access-1" not in repr(fields)
        and "refresh-1" not in repr(fields)
        and "app-token-1" not in repr(fields)
    )
    default = parse_frame(query=b"DOMAIN=a.bitrix24.com&PROTOCOL=0", body=_body(PLACEMENT=""))
    assert default.https is False and default.placement == "DEFAULT" and default.lang == "en"


@pytest.mark.parametrize(
    ("query", "body", "reason"),
    [
        (QUERY, b"AUTH_ID=\xff\xfe&member_id=m1", "not UTF-8"),
        (b"DOMAIN=%FF", _body(), "not UTF-8"),
        (QUERY, _body() + b"&AUTH_ID=second", "'AUTH_ID' sent more than once"),
        (QUERY + b"&DOMAIN=b.bitrix24.com", _body(), "'DOMAIN' sent more than once"),
        (QUERY, _body(PLACEMENT_OPTIONS="{not json"), "PLACEMENT_OPTIONS is not JSON"),
        (QUERY, _body(PLACEMENT_OPTIONS="[1, 2]"), "not a JSON object"),
        (QUERY, _body() + b"&LANG=e%00n", "NUL"),
        (QUERY, "&".join(f"f{i}=1" for i in range(MAX_FIELDS + 1)).encode(), "more than 2000 fields"),
    ],
)
def test_a_malformed_frame_is_refused_with_its_reason(query, body, reason):
    with pytest.raises(MalformedRequest, match=reason):
        parse_frame(query=query, body=body)


def test_the_callback_needs_a_code_and_a_state():
    callback = parse_oauth_callback(b"code=c1&state=s1&member_id=m1&domain=a.bitrix24.com&scope=crm")
    assert (callback.code, callback.state, callback.member_id) == ("c1", "s1", "m1")
    assert "c1" not in repr(callback)
    for query in (b"state=s1", b"code=c1", b"", b"code=c1&code=c2&state=s1"):
        with pytest.raises(MalformedRequest):
            parse_oauth_callback(query)


def test_each_caller_keeps_its_refusals_name():
    with pytest.raises(InvalidEventPayload, match="empty body"):
        split_form(b"  ", error=InvalidEventPayload)
    assert split_form(b"", empty_ok=True) == {}
    assert split_form(b"a=1&a=2&b=") == {"a": ["1", "2"], "b": ""}


@given(st.binary(max_size=300))
def test_any_bytes_are_split_or_refused_as_malformed(body):
    try:
        fields = split_form(body, empty_ok=True)
    except MalformedRequest:
        return
    assert all(isinstance(key, str) for key in fields)


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_any_frame_is_parsed_or_refused_as_malformed(query, body):
    try:
        parse_frame(query=query, body=body)
    except MalformedRequest:
        pass


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/bitrix/app/", "/bitrix/install/", "/bitrix/placement/CRM_DEAL_DETAIL_TAB/"]
)
def test_views_answer_a_malformed_frame_with_400_and_change_nothing(
    client, portals_sandbox, install_portal, path
):
    portal = install_portal(1)
    before = Portal.objects.values().get(pk=portal.pk)
    tokens = issue_tokens(portals_sandbox, 1)
    good = {
        "AUTH_ID": tokens["access_token"],
        "REFRESH_ID": tokens["refresh_token"],
        "member_id": portal.member_id,
    }
    query = urlencode({"DOMAIN": portal.domain, "PROTOCOL": "1"})
    bodies = [
        urlencode(good).encode() + b"&AUTH_ID=\xff",  # not UTF-8
        urlencode(good).encode() + b"&member_id=other",  # a field twice
    ]
    for body in bodies:
        response = client.post(f"{path}?{query}", data=body, content_type=FORM)
        assert response.status_code == 400, response.content[:200]
        assert b"<html" in response.content.lower()
    multipart = client.post(f"{path}?{query}", data=good)  # Bitrix24 never sends multipart
    assert multipart.status_code == 400
    assert Portal.objects.values().get(pk=portal.pk) == before


@pytest.mark.django_db
def test_the_callback_view_answers_a_malformed_redirect_with_400(client):
    assert client.get("/bitrix/oauth/callback/?state=s1").status_code == 400
    assert client.get("/bitrix/oauth/callback/?code=%FF&state=s1").status_code == 400
