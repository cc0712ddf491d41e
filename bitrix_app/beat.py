"""Exactly one beat: the scheduler sends periodic tasks only while it holds the deployment's beat lease.

A second ``celery beat`` (a deploy that overlaps the old one, a second machine started by mistake)
finds the lease held and stands by: it sends nothing, and asks again every few seconds. When the
leader dies it stops renewing; its lease runs out after ``BITRIX24_BEAT_LEASE_SECONDS`` and a
standby takes over at its next look. Two beats would otherwise queue every periodic task twice.

The lease is the coordination's (``portals.services.coordination``): a Redis lock with a TTL, the
same one the production issue's other singletons use.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.beat import PersistentScheduler

from portals.conf import app_settings
from portals.services.coordination import Lease, coordination

logger = logging.getLogger("bitrix_app.beat")

LEASE_NAME = "beat:leader"


class SingletonScheduler(PersistentScheduler):
    """celery's persistent scheduler, active only while it holds the beat lease."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lease: Lease | None = None
        super().__init__(*args, **kwargs)

    @property
    def lease_seconds(self) -> float:
        return app_settings.beat_lease_seconds

    def tick(self, *args: Any, **kwargs: Any) -> float:
        # Renewed at least three times per lease, so a slow tick never lets it lapse.
        renew_every = self.lease_seconds / 3
        if not self.is_leader():
            return renew_every
        return min(super().tick(*args, **kwargs), renew_every)

    def is_leader(self) -> bool:
        """Hold (renew or take) the lease; False while another beat holds it or Redis is down."""
        try:
            if self._lease is not None:
                if self._lease.renew():
                    return True
                self._lease = None
                logger.warning("beat.lease_lost")
            self._lease = coordination().lease(LEASE_NAME, ttl=self.lease_seconds)
        except redis.RedisError:
            # Nothing can be queued without the broker anyway; stand by until Redis answers.
            self._lease = None
            logger.warning("beat.lease_unreachable")
            return False
        if self._lease is None:
            logger.info("beat.standby")
            return False
        logger.info("beat.leader")
        return True

    def close(self) -> None:
        super().close()
        if self._lease is not None:
            # A clean stop hands over at once, not after the lease runs out.
            self._lease.release()
            self._lease = None
