"""Received events: the durable record of every accepted event, and the dispatch outbox.

A row is written before the receiver answers 200 (status ``pending``); a worker drains pending rows
shard by shard, in (ts, id) order, and marks each ``done``, ``failed`` (retries exhausted or a
permanent error, replayable) or ``ignored`` (nothing to do any more, e.g. the portal left).
"""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils import timezone

from portals.bitrix.events import EventPayload, payload_from_json


class EventQuerySet(models.QuerySet["Event"]):
    def pending(self) -> EventQuerySet:
        return self.filter(status=Event.Status.PENDING)

    def failed(self) -> EventQuerySet:
        return self.filter(status=Event.Status.FAILED)

    def due(self, moment: datetime) -> EventQuerySet:
        return self.pending().filter(available_at__lte=moment)

    def finished_before(self, moment: datetime) -> EventQuerySet:
        return self.filter(status__in=[Event.Status.DONE, Event.Status.IGNORED], processed_at__lt=moment)


class Event(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        IGNORED = "ignored", "Ignored"

    class Source(models.TextChoices):
        ONLINE = "online", "Online (pushed)"
        OFFLINE = "offline", "Offline (fetched)"

    portal = models.ForeignKey("portals.Portal", on_delete=models.CASCADE, related_name="events")
    event = models.CharField(max_length=100)
    object_key = models.CharField(max_length=170, help_text="Events of one object are processed in order.")
    ts = models.DateTimeField(help_text="When Bitrix24 sent (online) or recorded (offline) the event.")
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.ONLINE)
    idempotency_key = models.CharField(max_length=64)
    shard = models.PositiveSmallIntegerField(help_text="Drained by one worker at a time.")
    payload = models.JSONField(help_text="The event without its tokens.")

    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    available_at = models.DateTimeField(default=timezone.now, help_text="Not dispatched before this.")
    last_error = models.TextField(blank=True, default="")
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    objects = EventQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["portal", "idempotency_key"], name="event_idempotency_key"),
        ]
        indexes = [
            # The outbox: small, because only pending rows are in it.
            models.Index(
                fields=["shard", "ts", "id"],
                name="event_pending_idx",
                condition=models.Q(status="pending"),
            ),
            # Events waiting for their retry, which hold back the later events of their object.
            models.Index(
                fields=["shard", "portal", "object_key"],
                name="event_retry_idx",
                condition=models.Q(status="pending", attempts__gt=0),
            ),
            models.Index(fields=["status", "processed_at"], name="event_status_idx"),
            # A portal's latest events, of any status or one (the console's portal page and list, the
            # events list by portal): status included, so they are found in the index alone.
            models.Index(fields=["portal", "-id"], include=["status"], name="event_portal_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} #{self.pk}"

    def __repr__(self) -> str:
        return f"<Event {self.pk} {self.event} {self.object_key} {self.status}>"

    def as_payload(self) -> EventPayload:
        return payload_from_json(self.payload)


class OfflineReservation(models.Model):
    """A ``process_id`` the offline drain chose, committed before ``event.offline.get`` reserves a
    batch under it and deleted once that batch is confirmed: a row left behind names a batch that a
    drain which died may have reserved (events.services.offline)."""

    portal = models.ForeignKey("portals.Portal", on_delete=models.CASCADE, related_name="+")
    process_id = models.CharField(max_length=32, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"offline reservation {self.process_id}"
