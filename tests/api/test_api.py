"""/api/v1 over a mirrored sandbox portal: pages, the cursor, filters, order, detail, 404 across
portals, the error shape, keys (scopes, expiry, rotation, revocation, allow-lists, last use), the
cache and its invalidation, ETags, and 503 when the database doesn't answer."""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from api.models import ApiKey
from api.resources import RESOURCES
from api.services import limits
from api.services.keys import apikey_revoke, apikey_rotate
from mirror.entities import ENTITIES
from mirror.models import Deal
from mirror.services.incremental import object_deleted
from mirror.services.store import records_upsert
from portals.bitrix.crm import field_types, record_from_wire

pytestmark = pytest.mark.django_db(transaction=True)


def _get(api, path, key=None, **headers):
    if key:
        headers["HTTP_X_API_KEY"] = key
    return api.get(path, **headers)


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "fields"} <= set(body["error"])
    return body["error"]


def test_pages_answer_items_page_limit_total_pages(mirrored, make_key, api):
    portal = mirrored()
    key = make_key(portal)
    base = f"/api/v1/portals/{portal.member_id}/deals"
    body = _get(api, f"{base}?page=3&limit=25", key).json()
    assert (body["page"], body["limit"], body["total"], body["pages"]) == (3, 25, 120, 5)
    assert [item["id"] for item in body["items"]] == list(range(51, 76))
    assert _get(api, base, key).json()["limit"] == 50  # the default
    assert _get(api, f"{base}?page=9", key).json()["items"] == []
    for bad in ("limit=501", "limit=0", "page=0", "order=title", "stage=%00"):
        response = _get(api, f"{base}?{bad}", key)
        assert response.status_code == 400, bad
        error = _error(response)
        assert error["code"] == "bad_request" and error["fields"], bad


def test_the_cursor_stays_exact_while_data_changes(mirrored, make_key, api):
    portal = mirrored()
    key = make_key(portal)
    base = f"/api/v1/portals/{portal.member_id}/deals?limit=40"
    first = _get(api, base + "&after=0", key).json()
    assert [i["id"] for i in first["items"]] == list(range(1, 41)) and first["next_after"] == 40
    assert (first["total"], first["pages"]) == (120, 3)  # what the filters match, not what follows
    # Meanwhile rows ahead of the cursor are deleted and rows behind it change: no row is skipped
    # or repeated, as an offset would.
    object_deleted(portal_id=portal.pk, entity=ENTITIES["deal"], bitrix_id=10)
    object_deleted(portal_id=portal.pk, entity=ENTITIES["deal"], bitrix_id=50)
    seen = [i["id"] for i in first["items"]]
    cursor = first["next_after"]
    while cursor is not None:
        page = _get(api, f"{base}&after={cursor}", key).json()
        assert page["total"] == 118  # the deletions moved the version on: counted again
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_after"]
    assert seen == [i for i in range(1, 121) if i != 50]
    # With a page, after stays a filter: ids above it, that page of them.
    second = _get(api, base + "&after=5&page=2", key).json()["items"]
    assert [i["id"] for i in second][:2] == [47, 48]  # 6-9 and 11-46 on page 1: 10 is gone


def test_filters_and_order(mirrored, make_key, api):
    portal = mirrored()
    key = make_key(portal)
    base = f"/api/v1/portals/{portal.member_id}/deals?limit=500"
    live = Deal.objects.filter(portal=portal)
    stage = live.first().stage_id
    items = _get(api, f"{base}&stage={stage}", key).json()["items"]
    assert {i["id"] for i in items} == set(live.filter(stage_id=stage).values_list("bitrix_id", flat=True))
    items = _get(api, f"{base}&assigned=3", key).json()["items"]
    assert items and {i["assigned_by_id"] for i in items} == {3}
    since = sorted(live.values_list("date_modify", flat=True))[60]
    items = _get(api, f"{base}&modified_since={since.isoformat().replace('+', '%2B')}", key).json()["items"]
    assert {i["id"] for i in items} == set(
        live.filter(date_modify__gte=since).values_list("bitrix_id", flat=True)
    )
    amounts = [
        Decimal(i["opportunity"]) for i in _get(api, f"{base}&order=-opportunity", key).json()["items"]
    ]
    assert amounts == sorted(amounts, reverse=True) and len(amounts) == 120
    dates = [i["date_modify"] for i in _get(api, f"{base}&order=date_modify", key).json()["items"]]
    assert dates == sorted(dates)
    statuses = _get(api, f"/api/v1/portals/{portal.member_id}/statuses?entity_id=DEAL_STAGE", key).json()
    assert statuses["items"] and {s["entity_id"] for s in statuses["items"]} == {"DEAL_STAGE"}


def test_detail_and_404_across_portals(mirrored, make_key, api):
    one, two = mirrored(1), mirrored(2)
    key_one = make_key(one)
    deal = _get(api, f"/api/v1/portals/{one.member_id}/deals/7", key_one).json()
    row = Deal.objects.get(portal=one, bitrix_id=7)
    assert deal["id"] == 7 and deal["title"] == row.title and Decimal(deal["opportunity"]) == row.opportunity
    assert datetime.fromisoformat(deal["date_modify"]) == row.date_modify
    assert _get(api, f"/api/v1/portals/{one.member_id}/currencies/USD", key_one).json()["code"] == "USD"
    # Portal 2 exists and has a deal 7, but this key doesn't cover it: 404, like a portal that doesn't exist.
    for path in (
        f"/api/v1/portals/{two.member_id}/deals/7",
        f"/api/v1/portals/{two.member_id}",
        "/api/v1/portals/nope/deals",
    ):
        response = _get(api, path, key_one)
        assert response.status_code == 404 and _error(response)["code"] == "not_found"
    assert _get(api, f"/api/v1/portals/{one.member_id}/deals/100000", key_one).status_code == 404
    object_deleted(portal_id=one.pk, entity=ENTITIES["deal"], bitrix_id=7)
    assert _get(api, f"/api/v1/portals/{one.member_id}/deals/7", key_one).status_code == 404
    portal = _get(api, f"/api/v1/portals/{one.member_id}", key_one).json()
    assert {m["resource"]: m["rows"] for m in portal["mirror"]}["deals"] == 119


def test_keys_header_bearer_scopes_expiry_revocation_and_last_use(mirrored, make_key, api):
    portal = mirrored()
    path = f"/api/v1/portals/{portal.member_id}/deals/1"
    key = make_key(portal, scopes=["deals:read"])
    assert _get(api, path, key).status_code == 200
    assert api.get(path, HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    assert api.get(path, HTTP_AUTHORIZATION=f"Basic {key}").status_code == 401
    users = _get(api, f"/api/v1/portals/{portal.member_id}/users", key)
    assert users.status_code == 403 and "users:read" in _error(users)["message"]
    for bad in (None, "nonsense", key[:-1] + ("A" if key[-1] != "A" else "B")):
        response = _get(api, path, bad)
        assert response.status_code == 401 and _error(response)["code"] == "unauthorized"
    row = ApiKey.objects.get(prefix=key.split("_")[1])
    assert row.last_used_at is not None and row.last_used_ip == "127.0.0.1"
    assert row.digest != key and key not in json.dumps(list(ApiKey.objects.values()), default=str)
    apikey_revoke(key=row, reason="test")
    assert _get(api, path, key).status_code == 401
    expired = make_key(portal, expires_days=1)
    ApiKey.objects.filter(prefix=expired.split("_")[1]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert _get(api, path, expired).status_code == 401


def test_rotation_overlaps_then_the_old_key_expires(mirrored, make_key, api):
    portal = mirrored()
    path = f"/api/v1/portals/{portal.member_id}/deals/1"
    old = make_key(portal, expires_days=90)
    old_row = ApiKey.objects.get(prefix=old.split("_")[1])
    new_row, new = apikey_rotate(key=old_row, overlap_hours=1)
    assert _get(api, path, old).status_code == 200 and _get(api, path, new).status_code == 200
    old_row.refresh_from_db()
    assert old_row.replaced_by == new_row and old_row.expires_at < timezone.now() + timedelta(
        hours=1, seconds=5
    )
    assert new_row.expires_at > timezone.now() + timedelta(days=89)
    ApiKey.objects.filter(pk=old_row.pk).update(expires_at=timezone.now())  # the overlap is over
    apikey_revoke(key=new_row, reason="reset the cache")  # a save in this process drops its key cache
    new_again = make_key(portal)
    assert _get(api, path, old).status_code == 401 and _get(api, path, new_again).status_code == 200


def test_an_allow_list_refuses_other_addresses(mirrored, make_key, api):
    portal = mirrored()
    path = f"/api/v1/portals/{portal.member_id}/deals/1"
    key = make_key(portal, allow_ips=["10.1.0.0/16"])
    response = _get(api, path, key)
    assert response.status_code == 403 and _error(response)["code"] == "forbidden"
    assert _get(api, path, key, REMOTE_ADDR="10.1.2.3").status_code == 200


def test_answers_are_cached_until_the_mirror_changes_and_etags_revalidate(
    mirrored, make_key, api, django_assert_num_queries
):
    portal = mirrored()
    key = make_key(portal)
    path = f"/api/v1/portals/{portal.member_id}/deals?limit=5"
    first = _get(api, path, key)
    assert first.status_code == 200 and first["ETag"]
    _get(api, path, key)  # the key's last use is written at most once a minute
    with django_assert_num_queries(0):  # key, portal and answer all from the caches
        again = _get(api, path, key)
    assert again.content == first.content and again["ETag"] == first["ETag"]
    not_modified = _get(api, path, key, HTTP_IF_NONE_MATCH=first["ETag"])
    assert not_modified.status_code == 304 and not not_modified.content
    # A mirror write (here an upsert as the events' fetch makes) is seen by the next request.
    row = Deal.objects.get(portal=portal, bitrix_id=1)
    wire = {
        "ID": "1",
        "TITLE": "renamed in Bitrix24",
        "STAGE_ID": row.stage_id,
        "DATE_MODIFY": "2026-12-03T10:00:00+03:00",
    }
    records_upsert(
        portal_id=portal.pk,
        entity=ENTITIES["deal"],
        records=[record_from_wire("deal", wire, field_types("deal"))],
    )
    fresh = _get(api, path, key, HTTP_IF_NONE_MATCH=first["ETag"])
    assert fresh.status_code == 200 and fresh.json()["items"][0]["title"] == "renamed in Bitrix24"
    assert fresh["ETag"] != first["ETag"]


def test_per_key_and_per_address_limits(mirrored, make_key, api, settings):
    settings.BITRIX24_API_RATE_LIMIT = 5
    portal = mirrored()
    path = f"/api/v1/portals/{portal.member_id}/deals/1"
    key, other = make_key(portal), make_key(portal)
    assert [_get(api, path, key).status_code for _ in range(5)] == [200] * 5
    limited = _get(api, path, key)
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    assert _error(limited)["code"] == "rate_limited"
    assert _get(api, path, other).status_code == 200  # per key
    # Without a valid key, per address: 401s until the limit, then 429.
    statuses = [_get(api, path, "nonsense", REMOTE_ADDR="192.0.2.7").status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    assert _get(api, "/api/v1/openapi.json", REMOTE_ADDR="192.0.2.7").status_code == 429
    assert _get(api, path, "nonsense", REMOTE_ADDR="192.0.2.8").status_code == 401


def test_every_operation_counts_against_the_key_before_it_refuses_anything(mirrored, make_key, api, settings):
    settings.BITRIX24_API_RATE_LIMIT = 2
    portal, stranger = mirrored(1), mirrored(2)
    base = f"/api/v1/portals/{portal.member_id}"
    paths = [f"{base}/{plural}" for plural in RESOURCES]
    paths += [f"{base}/deals/1", f"{base}/currencies/USD", base]
    paths += [f"/api/v1/portals/{stranger.member_id}/deals", f"{base}/deals/999999"]  # 404s
    paths += [f"{base}/deals?limit=501", f"{base}/deals/0"]  # 400s
    for path in paths:
        key = make_key(portal, scopes=["deals:read", "currencies:read"])  # the rest: 403
        first = [_get(api, path, key).status_code for _ in range(2)]
        assert first[0] == first[1] and first[0] in (200, 400, 403, 404), path
        assert _get(api, path, key).status_code == 429, path


def test_the_shared_window_admits_the_limit_and_says_when_one_more_fits(settings, monkeypatch, redis_client):
    settings.BITRIX24_API_RATE_LIMIT = 10
    window_start = (time.time_ns() // 60_000_000_000 + 1) * 60_000_000_000  # the next minute window
    clock = {"ms": 0}
    monkeypatch.setattr(limits.time, "time_ns", lambda: window_start + clock["ms"] * 1_000_000)
    identity = f"key:window-test-{secrets.token_hex(4)}"
    assert [limits.admit(identity).retry_after for _ in range(10)] == [None] * 10
    assert limits.admit(identity).retry_after == 61  # the next window, then its weight must fall
    clock["ms"] = 59_000
    assert limits.admit(identity).retry_after == 2
    # 1 ms into the next window the last one weighs floor(10 * 59,999 / 60,000) = 9: one fits.
    clock["ms"] = 60_001
    assert limits.admit(identity).retry_after is None
    assert limits.admit(identity).retry_after == 6  # 9 + 1 taken: 6 s until the weight is 8
    clock["ms"] = 66_001
    assert limits.admit(identity).retry_after is None


@pytest.mark.parametrize("redis_url", ["", "redis://127.0.0.1:1/0"], ids=["single-process", "redis-down"])
def test_limits_hold_without_redis(mirrored, make_key, api, settings, redis_url):
    settings.BITRIX24_API_RATE_LIMIT = 3
    portal = mirrored()
    key = make_key(portal)
    path = f"/api/v1/portals/{portal.member_id}/deals/1"
    settings.REDIS_URL = redis_url  # the limiter of that configuration (in memory, or Redis unreachable)
    assert [_get(api, path, key).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_a_database_that_does_not_answer_is_a_503_with_retry_after(mirrored, make_key, api):
    portal = mirrored()
    key = make_key(portal)
    _get(api, f"/api/v1/portals/{portal.member_id}/deals/2", key)  # key and portal now cached
    params = connection.get_connection_params()
    with psycopg.connect(
        **{k: v for k, v in params.items() if k in ("host", "port", "user", "dbname", "password")}
    ) as other:
        other.execute("LOCK TABLE mirror_deal IN ACCESS EXCLUSIVE MODE")
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '300ms'")
        try:
            response = _get(api, f"/api/v1/portals/{portal.member_id}/deals/3", key)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SET statement_timeout = 0")
    assert response.status_code == 503 and int(response["Retry-After"]) > 0
    assert _error(response)["code"] == "unavailable"


def test_openapi_document_and_docs_from_our_static_files(api):
    from openapi_spec_validator import validate

    schema = api.get("/api/v1/openapi.json").json()
    validate(schema)
    assert "/api/v1/portals/{member_id}/deals" in schema["paths"]
    assert {"KeyHeader", "KeyBearer"} <= set(schema["components"]["securitySchemes"])
    page = api.get("/api/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert "/api/v1/openapi.json" in page
