"""Outbound event delivery: one asyncio worker per portal, like the portal's queue server (§7.5).

* One queue and one consumer task per portal, so a slow handler delays that portal's later events and
  no other portal's.
* No retries: a refused, failed or timed-out POST is recorded and dropped, as Bitrix24 does.
* Every attempt lands in a bounded delivery log (readable through the control API) and in counters.
  The log never holds the body: it carries tokens and application_token.

The POST itself runs `requests` in a worker thread: the queue is strictly sequential per portal, so an
async HTTP client would buy nothing, and requests is already how the project talks HTTP.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import requests

from sandbox.lifecycle.forms import php_form_encode

log = logging.getLogger("sandbox.lifecycle.delivery")

USER_AGENT = "Bitrix24 Webhook Engine"  # what the portal's queue server sends
DEFAULT_TIMEOUT = 10.0  # undocumented on Bitrix24's side (§10.16); long enough for a slow test handler
LOG_SIZE = 2000

_ids = itertools.count(1)


@dataclass
class Delivery:
    """One POST to make. `payload` is the event (secret-bearing: never logged); its `ts` is stamped when
    the queue sends it, as Bitrix24's "time the queue sent it" — a slow handler ahead shows in it."""

    member_id: str
    event: str
    url: str
    payload: dict[str, Any]
    handler_id: int | None = None
    kind: str = "event"  # "event" for handlers bound with event.bind, "install" for the app card's URL
    id: int = field(default_factory=lambda: next(_ids))
    queued_at: float = field(default_factory=time.time)

    def __repr__(self) -> str:
        return f"Delivery(id={self.id}, member_id={self.member_id!r}, event={self.event!r}, url={self.url!r})"

    def body(self, sent_at: float) -> str:
        """The form body as sent at `sent_at` (sandbox clock)."""
        payload = dict(self.payload)
        if "ts" in payload:
            payload["ts"] = str(int(sent_at))
        return php_form_encode(payload)


@dataclass
class DeliveryRecord:
    """What happened to one delivery; `status` is the HTTP status or None when no answer came."""

    id: int
    member_id: str
    event: str
    url: str
    handler_id: int | None
    kind: str
    queued_at: float
    started_at: float
    finished_at: float
    status: int | None
    ok: bool
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeliveryLog:
    """Recent delivery records (bounded) and running counters, for the control API and tests."""

    def __init__(self, size: int = LOG_SIZE) -> None:
        self.records: deque[DeliveryRecord] = deque(maxlen=size)
        self.counters: Counter[str] = Counter()

    def add(self, record: DeliveryRecord) -> None:
        self.records.append(record)
        self.counters["delivered" if record.ok else "failed"] += 1
        self.counters[f"event.{record.event}.{'delivered' if record.ok else 'failed'}"] += 1

    def select(self, *, member_id: str | None = None, event: str | None = None) -> list[dict[str, Any]]:
        return [
            r.as_dict()
            for r in self.records
            if (member_id is None or r.member_id == member_id) and (event is None or r.event == event.upper())
        ]

    def clear(self) -> None:
        self.records.clear()
        self.counters.clear()


Poster = Callable[[str, str, float], int]


def post_form(url: str, body: str, timeout: float) -> int:
    """POST the form body; return the HTTP status. Redirects are not followed (a portal doesn't)."""
    response = requests.post(
        url,
        data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": USER_AGENT},
        timeout=timeout,
        allow_redirects=False,
    )
    response.close()
    return response.status_code


class DeliveryWorker:
    """The queue and consumer task of one portal. Create it inside the running event loop."""

    def __init__(
        self,
        *,
        member_id: str,
        log_: DeliveryLog,
        timeout: Callable[[], float],
        clock: Callable[[], float] = time.time,
        poster: Poster = post_form,
    ) -> None:
        self.member_id = member_id
        self.clock = clock
        self.log = log_
        self.timeout = timeout
        self.poster = poster
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def submit(self, delivery: Delivery) -> None:
        """Queue a delivery; the consumer starts on first use. Safe to call from synchronous code that runs
        on the loop (the data-change hook)."""
        self.queue.put_nowait(delivery)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(
                self._consume(), name=f"delivery-{self.member_id}"
            )

    async def _consume(self) -> None:
        while True:
            delivery = await self.queue.get()
            try:
                await self._deliver(delivery)
            finally:
                self.queue.task_done()

    async def _deliver(self, delivery: Delivery) -> None:
        started = time.time()
        status: int | None = None
        error = ""
        try:
            body = delivery.body(self.clock())
            status = await asyncio.to_thread(self.poster, delivery.url, body, self.timeout())
        except requests.Timeout:
            error = "timeout"
        except requests.RequestException as exc:
            error = type(exc).__name__
        ok = status is not None and 200 <= status < 300
        if status is not None and not ok:
            error = f"http {status}"
        record = DeliveryRecord(
            id=delivery.id,
            member_id=delivery.member_id,
            event=delivery.event,
            url=delivery.url,
            handler_id=delivery.handler_id,
            kind=delivery.kind,
            queued_at=delivery.queued_at,
            started_at=started,
            finished_at=time.time(),
            status=status,
            ok=ok,
            error=error,
        )
        self.log.add(record)
        log.info(
            "sandbox.lifecycle.delivered" if ok else "sandbox.lifecycle.delivery_failed",
            extra={
                "member_id": delivery.member_id,
                "event": delivery.event,
                "status": status,
                "error": error,
            },
        )

    async def idle(self) -> None:
        """Return once every queued delivery has been attempted."""
        await self.queue.join()

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
