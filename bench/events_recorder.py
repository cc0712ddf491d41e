"""The benchmark's handler: records each dispatch in Redis and does nothing else.

Loaded into the web and worker processes through BITRIX24_EVENT_HANDLER_MODULES. Every benchmark
event carries a unique data[FIELDS][ID], so "dispatched exactly once" means: the counter equals the
number of distinct ids, and both equal the number of events sent.
"""

from __future__ import annotations

import functools

import redis
from django.conf import settings

from events.registry import on_event

# An event no installed feature handles (the mirror handles contacts, deals, leads, companies), so
# a pass measures the pipeline to this no-op handler alone.
EVENT = "ONCRMACTIVITYUPDATE"


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def keys() -> tuple[str, str]:
    return f"{settings.REDIS_KEY_PREFIX}bench:calls", f"{settings.REDIS_KEY_PREFIX}bench:ids"


@on_event(EVENT)
def record(*, portal, payload) -> None:
    calls, ids = keys()
    pipe = _redis().pipeline(transaction=False)
    pipe.incr(calls)
    pipe.sadd(ids, f"{payload.member_id}:{payload.object_id}")
    pipe.execute()
