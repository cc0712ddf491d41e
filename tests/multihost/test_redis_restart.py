"""What the fault suite (bench/faults.py) found with Redis killed under a refresh: the refresh went
through and stored the new pair, and then its caller got an error because the lease could not be
given back to a Redis that was gone. A lease released while Redis is unreachable now ends by its
TTL, silently, as one that expired does."""

from __future__ import annotations

import redis

from bench.faults_cluster import OwnRedis
from portals.services.coordination import AdvisoryLocks, ProductionCoordination


def test_a_lease_released_while_redis_is_down_does_not_raise(tmp_path):
    own = OwnRedis(tmp_path)
    own.start()
    try:
        client = redis.Redis.from_url(own.url, socket_timeout=2, socket_connect_timeout=2)
        coordination = ProductionCoordination(
            client, prefix="lease-test:", locks=AdvisoryLocks(), batch_transactions=True
        )
        lease = coordination.lease("portal:1:refresh-lock", ttl=30)
        assert lease is not None
        own.crash()
        lease.release()  # the guarded work is done: no error for the caller
        own.start()
        # Redis came back empty: the lease is free for the next holder.
        again = coordination.lease("portal:1:refresh-lock", ttl=30)
        assert again is not None
        again.release()
    finally:
        own.stop()
