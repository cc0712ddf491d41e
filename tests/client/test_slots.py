"""The per-portal concurrency cap, shared by every client and process through Redis."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from django.conf import settings

from portals.bitrix.limiter import SharedStateUnavailable
from portals.bitrix.slots import LocalSlots, RedisSlots


def _most_at_once(slots_per_worker, *, workers: int, limit: int, hold: float = 0.05) -> int:
    """Run ``workers`` threads, each through a slot of one portal; the most that held one at once."""
    current = peak = 0
    lock = threading.Lock()

    def work(slots) -> None:
        nonlocal current, peak
        with slots.hold("portal-1", limit):
            with lock:
                current += 1
                peak = max(peak, current)
            time.sleep(hold)
            with lock:
                current -= 1

    threads = [threading.Thread(target=work, args=(slots_per_worker(n),)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return peak


def test_the_cap_holds_across_processes(redis_client):
    prefix = settings.REDIS_KEY_PREFIX
    # One RedisSlots per worker, each with its own connection: as separate processes have.
    processes = [RedisSlots(redis.Redis.from_url(settings.REDIS_URL), prefix=prefix) for _ in range(4)]
    assert _most_at_once(lambda n: processes[n % 4], workers=12, limit=3) == 3
    assert redis_client.zcard(processes[0].key("portal-1")) == 0  # every slot given back


def test_local_slots_are_shared_by_the_clients_of_a_process():
    shared = LocalSlots()
    assert _most_at_once(lambda n: shared, workers=8, limit=2) == 2


def test_a_dead_holders_slot_comes_back_after_its_ttl(redis_client):
    slots = RedisSlots(redis_client, prefix=settings.REDIS_KEY_PREFIX, ttl=0.5)
    dead = slots.hold("portal-2", 1)
    dead.__enter__()  # taken and never given back: its process died
    started = time.monotonic()
    with slots.hold("portal-2", 1):
        waited = time.monotonic() - started
    assert 0.3 < waited < 5


def test_without_redis_nothing_is_sent_and_the_caller_can_retry():
    down = RedisSlots(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5), prefix="x:")
    with pytest.raises(SharedStateUnavailable) as refused:
        with down.hold("portal-3", 2):
            pytest.fail("a slot was granted without Redis")
    assert refused.value.sent is False
