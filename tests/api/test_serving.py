"""How /api/v1 answers are built and kept: bodies built by the database that equal the output
models' own, and cached answers that follow the data version (the lean lane that serves them:
tests/test_wsgi_entry.py)."""

from __future__ import annotations

import json

import pytest

from api import answers
from api.resources import RESOURCES
from api.services import cache
from mirror.services.versions import mirror_version, mirror_versions_bump

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("plural", sorted(RESOURCES))
def test_database_built_rows_equal_the_output_models(mirrored, plural):
    portal = mirrored()
    resource = RESOURCES[plural]
    selection = answers.Selection(resource, portal.pk)
    built = answers.rows_json_from_database(selection, offset=0, limit=30)
    modelled = answers.rows_json_from_models(selection, offset=0, limit=30)
    assert built, f"the sandbox portal has no {plural}"
    assert [ident for ident, _ in built] == [ident for ident, _ in modelled]
    for (_, text), (_, reference) in zip(built, modelled, strict=True):
        # Valid for the schema's model, and the same object as the model would write.
        assert resource.out.model_validate_json(text) == resource.out.model_validate_json(reference)
        document = json.loads(text)
        assert list(document) == [*resource.columns, "fields"]  # the declared order
        for name, value in document.items():
            if name in ("opportunity", "revenue", "amount") and value is not None:
                assert isinstance(value, str)  # money as a decimal string, never a float
    assert answers.count(selection) == selection.queryset().count()


def _cached(portal, request_key, entity="deal"):
    return cache.lookup(portal_id=portal.pk, entity=entity, request_keys=[request_key]).payload()


def test_a_cached_answer_is_used_only_under_its_version(mirrored):
    portal = mirrored()
    found = cache.lookup(portal_id=portal.pk, entity="deal", request_keys=["list:probe", "count:probe"])
    assert found.keys and found.payload(0) is None and found.payload(1) is None
    cache.store(found, {0: b"answer one", 1: b"120"})
    assert (_cached(portal, "list:probe"), _cached(portal, "count:probe")) == (b"answer one", b"120")
    assert _cached(portal, "list:probe", entity="lead") is None
    before = mirror_version(portal_id=portal.pk, entity="deal")
    mirror_versions_bump(portal_id=portal.pk, entities=["deal"])
    assert mirror_version(portal_id=portal.pk, entity="deal") != before
    assert _cached(portal, "list:probe") is None  # built under the old version: never served again
    # A request that looked up before the bump and stores after it stores under the old version.
    cache.store(found, {0: b"stale"})
    assert _cached(portal, "list:probe") is None


def test_without_redis_the_cache_lives_in_the_process(mirrored, settings):
    portal = mirrored()
    settings.REDIS_URL = ""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.store(cache.lookup(portal_id=portal.pk, entity="deal", request_keys=["list:local"]), {0: b"here"})
    assert _cached(portal, "list:local") == b"here"
    mirror_versions_bump(portal_id=portal.pk, entities=["deal"])
    assert _cached(portal, "list:local") is None


def test_a_store_that_is_down_serves_uncached(mirrored, settings):
    portal = mirrored()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    found = cache.lookup(portal_id=portal.pk, entity="deal", request_keys=["list:down"])
    assert not found.keys and found.payload() is None
    cache.store(found, {0: b"nowhere"})  # nothing to store to, and no error


@pytest.mark.parametrize("plural", sorted(RESOURCES))
def test_every_order_index_carries_the_columns_the_api_filters_on(plural):
    # A filtered page finds its ids in the order's index alone only if the index holds them.
    resource = RESOURCES[plural]
    filtered = {lookup.partition("__")[0] for lookup in resource.filters.values()}
    indexes = {tuple(index.fields): index for index in resource.entity.model._meta.indexes}
    for order in resource.orders:
        column = "bitrix_id" if order == "id" else resource.columns.get(order, order)
        keys = ("portal", "bitrix_id") if column == "bitrix_id" else ("portal", column, "bitrix_id")
        assert keys in indexes, f"{plural}: no index for the order {order}"
        index = indexes[keys]
        assert filtered <= {*index.fields, *index.include}, f"{plural}: {index.name} lacks a filter"
        assert index.condition is not None  # live rows only, as the lists read them
