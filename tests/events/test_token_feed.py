"""A replaced application token is refused by every process within a second, not after the cache's 30 s."""

from __future__ import annotations

import pytest

from events.services.tokens import FEED_INTERVAL, TOKEN_FEED, PortalTokenCache
from portals.bitrix.exceptions import InvalidApplicationToken
from portals.models import Portal
from portals.services.coordination import coordination
from portals.services.lifecycle import portal_application_token_set
from tests.portals.test_refusals import Clock

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def other_process(redis_client):
    """A cache like another web process's: its own entries, its own clock, the shared feed."""
    clock = Clock()
    return PortalTokenCache(clock=clock), clock


def test_a_replaced_token_is_refused_by_another_process_within_a_second(make_portal, other_process):
    cache, clock = other_process
    portal = make_portal(member_id="feed1", application_token="old-token")
    assert cache.verify(member_id="feed1", application_token="old-token").portal_id == portal.pk

    portal_application_token_set(portal=Portal.objects.get(pk=portal.pk), application_token="new-token")
    # Inside the cache's 30 s, the old token's entry is dropped at the next read of the feed.
    clock.now += FEED_INTERVAL
    with pytest.raises(InvalidApplicationToken):
        cache.verify(member_id="feed1", application_token="old-token")
    assert cache.verify(member_id="feed1", application_token="new-token").portal_id == portal.pk
    assert FEED_INTERVAL < 1.0


def test_the_feed_is_what_refuses_the_old_token(make_portal, other_process):
    cache, clock = other_process
    portal = make_portal(member_id="feed2", application_token="old-token")
    assert cache.verify(member_id="feed2", application_token="old-token")
    # A change nobody publishes (a bulk update fires no signal): the other process keeps its entry.
    Portal.objects.filter(pk=portal.pk).update(application_token="new-token")
    clock.now += FEED_INTERVAL
    assert cache.verify(member_id="feed2", application_token="old-token").portal_id == portal.pk
    # Published, it is dropped at the next read of the feed, less than a second later.
    coordination().changes_publish(TOKEN_FEED, "feed2")
    clock.now += FEED_INTERVAL
    with pytest.raises(InvalidApplicationToken):
        cache.verify(member_id="feed2", application_token="old-token")


def test_a_follower_too_far_behind_forgets_everything(make_portal, other_process, monkeypatch):
    cache, clock = other_process
    make_portal(member_id="feed3", application_token="t3")
    assert cache.verify(member_id="feed3", application_token="t3")
    backend = coordination()
    monkeypatch.setattr(type(backend), "CHANGES_KEPT", 3)
    for n in range(6):  # more distinct changes than the feed keeps: some fell off its end
        backend.changes_publish(TOKEN_FEED, f"other-{n}")
    Portal.objects.filter(member_id="feed3").update(application_token="t3-new")
    clock.now += FEED_INTERVAL
    with pytest.raises(InvalidApplicationToken):
        cache.verify(member_id="feed3", application_token="t3")
