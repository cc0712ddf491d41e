"""One parser for REST and OAuth answers, and one maker of sessions that never follow redirects."""

from __future__ import annotations

import json

import pytest
import requests

from portals.bitrix import http
from portals.bitrix.exceptions import (
    Bitrix24AccessDenied,
    Bitrix24ApiError,
    Bitrix24AuthError,
    Bitrix24BadRequest,
    Bitrix24InvalidClient,
    Bitrix24NotFound,
    Bitrix24Overloaded,
    Bitrix24RateLimited,
    Bitrix24ServerError,
    Bitrix24TokenExpired,
)
from portals.bitrix.oauth import OAuthConfig, OAuthServer, parse_response
from portals.bitrix.responses import answer_payload


def answer(status: int, body: object) -> requests.Response:
    """An answer as requests hands it over: a status and the body's bytes."""
    response = requests.Response()
    response.status_code = status
    response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return response


# (status, body, REST's exception, the OAuth server's exception)
CODED = [
    (200, {"error": "wrong_client"}, Bitrix24InvalidClient),
    (503, {"error": "QUERY_LIMIT_EXCEEDED"}, Bitrix24RateLimited),
    (503, {"error": "OVERLOAD_LIMIT"}, Bitrix24Overloaded),
    (
        401,
        {"error": "expired_token", "error_description": "The access token provided has expired."},
        Bitrix24TokenExpired,
    ),
    (400, {"error": {"code": "INVALID_REQUEST", "message": "bad"}}, Bitrix24BadRequest),
    (400, {"error": "", "error_description": "Not found"}, Bitrix24NotFound),
    (200, {"error": "SOMETHING_NEW"}, Bitrix24ApiError),
]


@pytest.mark.parametrize(("status", "body", "expected"), CODED)
def test_the_code_decides_first_for_rest_and_oauth_alike(status, body, expected) -> None:
    for parse in (
        lambda r: answer_payload(r, method="crm.deal.get"),
        parse_response,
    ):
        with pytest.raises(Bitrix24ApiError) as refused:
            parse(answer(status, body))
        assert type(refused.value) is expected
        assert refused.value.status == status


@pytest.mark.parametrize(
    ("status", "body", "rest", "oauth"),
    [
        (500, {"result": None}, Bitrix24ServerError, Bitrix24ServerError),
        (502, b"<html>bad gateway</html>", Bitrix24ServerError, Bitrix24ServerError),
        (400, {}, Bitrix24BadRequest, Bitrix24ApiError),
        # A bare 401 from the OAuth server is a proxy's page, never a verdict on the grant.
        (401, b"<html>401</html>", Bitrix24AuthError, Bitrix24ApiError),
        (403, {}, Bitrix24AccessDenied, Bitrix24ApiError),
        (429, b"slow down", Bitrix24RateLimited, Bitrix24ApiError),
        (200, b"<html>maintenance</html>", Bitrix24ServerError, Bitrix24ApiError),
        (304, {"result": 1}, Bitrix24ServerError, Bitrix24ApiError),
    ],
)
def test_without_a_code_the_status_decides(status, body, rest, oauth) -> None:
    with pytest.raises(Bitrix24ApiError) as refused:
        answer_payload(answer(status, body), method="crm.deal.get", member_id="m1")
    assert type(refused.value) is rest
    assert (refused.value.status, refused.value.method, refused.value.member_id) == (
        status,
        "crm.deal.get",
        "m1",
    )
    with pytest.raises(Bitrix24ApiError) as refused:
        parse_response(answer(status, body))
    assert type(refused.value) is oauth
    if isinstance(body, bytes):
        assert body.decode() not in str(refused.value)  # a body may echo input: never in a message


def test_a_success_is_the_envelope() -> None:
    body = {"result": {"ID": "7"}, "time": {"operating": 0.1}, "total": 1}
    assert answer_payload(answer(200, body), method="crm.deal.get") == body
    assert parse_response(answer(200, {"access_token": "a"})) == {"access_token": "a"}


# --- sessions ------------------------------------------------------------------------------------


def test_no_session_follows_a_redirect(sandbox, sandbox_portal) -> None:
    old = sandbox_portal.domain
    sandbox.control("portal/rename", member_id=sandbox_portal.member_id)
    verify = http.verify(sandbox_portal.ca_bundle)
    for session in (
        http.make_session(ca_bundle=sandbox_portal.ca_bundle),
        http.oauth_session("app.1", ca_bundle=sandbox_portal.ca_bundle),
    ):
        with session:
            assert session.headers["User-Agent"] == http.USER_AGENT
            # allow_redirects=True (requests' default for GET, and what OAuth2Session.fetch_token uses).
            moved = session.get(f"https://{old}/rest/profile.json", verify=verify, allow_redirects=True)
            assert (moved.status_code, moved.history) == (302, [])


def test_the_oauth_flows_never_carry_the_secret_to_a_redirect(sandbox, sandbox_portal) -> None:
    """An OAuth server answering 302 (here a renamed host) gets an unexpected-answer error: the
    code exchange's GET is not re-sent, with the client secret in its query, to the Location."""
    state = sandbox.state
    old = sandbox_portal.domain
    sandbox.control("portal/rename", member_id=sandbox_portal.member_id)
    config = OAuthConfig(state["client_id"], state["client_secret"], ca_bundle=sandbox_portal.ca_bundle)
    server = OAuthServer(f"https://{old}/", config)
    with pytest.raises(Bitrix24ApiError) as refused:
        server.exchange_code("a-code")
    assert (type(refused.value), refused.value.status) == (Bitrix24ApiError, 302)
    with pytest.raises(Bitrix24ApiError) as refused:
        server.refresh("a-refresh-token")
    assert (type(refused.value), refused.value.status) == (Bitrix24ApiError, 302)
