"""The mirror's share of a portal's request bucket: bulk reads never starve the app's own calls.

The initial sync and the reconciliation read whole tables; left alone they would take every slot
of the portal's leaky bucket. Each of their requests first takes a slot in a bucket of their own
(``<portal>:mirror``: ``share`` of the portal's drain rate and of its burst), then the portal's
slot as every other call does. So together they never drain more than ``share`` of the portal's
rate, the app's own calls always find at least the rest, and the portal's limit holds as before
(every request still reserves in the one shared bucket). Django-free, beside the limiter it wraps.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from portals.bitrix.limiter import BucketParams, Limiter


class ShareLimiter:
    """A :class:`~portals.bitrix.limiter.Limiter` that admits a request only within ``share``."""

    def __init__(
        self,
        inner: Limiter,
        *,
        share: float,
        sleep: Callable[[float], None] = time.sleep,
        suffix: str = "mirror",
    ):
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], not {share!r}")
        self.inner = inner
        self.share = share
        self.suffix = suffix
        self._sleep = sleep

    def slice(self, params: BucketParams) -> BucketParams:
        return BucketParams(rate=params.rate * self.share, capacity=params.capacity * self.share)

    def reserve(self, bucket_key: str, params: BucketParams, cost: float = 1.0) -> float:
        # Wait for our own slice first, holding nothing of the portal's bucket meanwhile: a slot
        # reserved there early would sit ahead of the app's calls for the whole wait.
        wait = self.inner.reserve(f"{bucket_key}:{self.suffix}", self.slice(params), cost)
        if wait > 0:
            self._sleep(wait)
        return self.inner.reserve(bucket_key, params, cost)

    def refused(self, bucket_key: str, params: BucketParams) -> None:
        self.inner.refused(bucket_key, params)
