"""The mirror's tables: one per entity, typed columns for what is filtered and sorted on, JSON for the rest.

Every row belongs to a portal and is unique per (portal, Bitrix24 id). A row deleted on the portal
stays as a tombstone (``deleted_at``): Bitrix24 never reuses an id, and a late fetch must not bring
a deleted object back. ``data`` holds the other fields as the typed layer's JSON
(portals.bitrix.crm.Record.as_json: decimals as strings, dates in ISO 8601); JSONB on PostgreSQL.
Lists read live rows in (portal, column, id) order, so the indexes are partial on live rows.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from portals.models import Portal

LIVE = Q(deleted_at__isnull=True)


class MirrorRecord(models.Model):
    """What every mirrored row has."""

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="+")
    bitrix_id = models.BigIntegerField()
    data = models.JSONField(default=dict)
    deleted_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self._meta.verbose_name} {self.bitrix_id} of portal {self.portal_id}"


class CrmRecord(MirrorRecord):
    """Deals, leads, contacts and companies: dates and the responsible user are typed everywhere."""

    assigned_by_id = models.BigIntegerField(null=True, blank=True)
    date_create = models.DateTimeField(null=True, blank=True)
    date_modify = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


def _indexes(name: str, *columns: str, filters: tuple[str, ...] = ()) -> list[models.Index]:
    """Live-row indexes (portal, column, id) for each order column, plus (portal, id).

    Each also carries the columns the API filters on (``filters``, as INCLUDE columns on
    PostgreSQL): a filtered page then finds its ids in the order's index alone, never reading the
    rows it passes over, and reads only the rows of the page (api.answers). A test holds these to
    the API's filters (tests/api/test_serving.py)."""
    # Index names stay within Django's 30 characters: "mir_<entity>_<column prefix>".
    short = name.removeprefix("mirror_")

    def index(column: str, index_name: str) -> models.Index:
        keys = ["portal", column, "bitrix_id"] if column != "bitrix_id" else ["portal", "bitrix_id"]
        covered = [f for f in filters if f != column]
        return models.Index(fields=keys, condition=LIVE, name=index_name, include=covered)

    return [index("bitrix_id", f"mir_{short}_live"), *(index(c, f"mir_{short}_{c[:12]}") for c in columns)]


def _unique(name: str) -> list[models.UniqueConstraint]:
    return [models.UniqueConstraint(fields=["portal", "bitrix_id"], name=f"{name}_portal_id_uniq")]


class Deal(CrmRecord):
    __str__ = MirrorRecord.__str__
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="mirror_deals")
    title = models.TextField(blank=True, default="")
    stage_id = models.CharField(max_length=64, blank=True, default="")
    category_id = models.BigIntegerField(null=True, blank=True)
    opportunity = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    currency_id = models.CharField(max_length=16, blank=True, default="")
    company_id = models.BigIntegerField(null=True, blank=True)
    contact_id = models.BigIntegerField(null=True, blank=True)
    closed = models.BooleanField(null=True, blank=True)

    class Meta:
        constraints = _unique("mirror_deal")
        indexes = _indexes(
            "mirror_deal",
            "date_modify",
            "stage_id",
            "assigned_by_id",
            "date_create",
            "opportunity",
            filters=("stage_id", "assigned_by_id", "date_modify"),
        )


class Lead(CrmRecord):
    __str__ = MirrorRecord.__str__
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="mirror_leads")
    title = models.TextField(blank=True, default="")
    status_id = models.CharField(max_length=64, blank=True, default="")
    name = models.TextField(blank=True, default="")
    last_name = models.TextField(blank=True, default="")
    opportunity = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    currency_id = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        constraints = _unique("mirror_lead")
        indexes = _indexes(
            "mirror_lead",
            "date_modify",
            "status_id",
            "assigned_by_id",
            "date_create",
            "opportunity",
            filters=("status_id", "assigned_by_id", "date_modify"),
        )


class Contact(CrmRecord):
    __str__ = MirrorRecord.__str__
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="mirror_contacts")
    name = models.TextField(blank=True, default="")
    last_name = models.TextField(blank=True, default="")
    type_id = models.CharField(max_length=64, blank=True, default="")
    company_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = _unique("mirror_contact")
        indexes = _indexes(
            "mirror_contact",
            "date_modify",
            "type_id",
            "assigned_by_id",
            "date_create",
            filters=("assigned_by_id", "date_modify"),
        )


class Company(CrmRecord):
    __str__ = MirrorRecord.__str__
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="mirror_companies")
    title = models.TextField(blank=True, default="")
    company_type = models.CharField(max_length=64, blank=True, default="")
    industry = models.CharField(max_length=64, blank=True, default="")
    revenue = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    currency_id = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        verbose_name_plural = "companies"
        constraints = _unique("mirror_company")
        indexes = _indexes(
            "mirror_company",
            "date_modify",
            "company_type",
            "assigned_by_id",
            "date_create",
            filters=("assigned_by_id", "date_modify"),
        )


class User(MirrorRecord):
    """The portal's people (user.get): personal data, so only keys scoped to users read them."""

    __str__ = MirrorRecord.__str__
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="mirror_users")
    active = models.BooleanField(null=True, blank=True)
    name = models.TextField(blank=True, default="")
    last_name = models.TextField(blank=True, default="")
    email = models.TextField(blank=True, default="")
    work_position = models.TextField(blank=True, default="")

    class Meta:
        constraints = _unique("mirror_user")
        indexes = _indexes("mirror_user", "active", "last_name", filters=("active",))


class Status(MirrorRecord):
    """Reference lists (crm.status.list): deal stages, lead statuses, sources, types…"""

    __str__ = MirrorRecord.__str__
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="mirror_statuses")
    entity_id = models.CharField(max_length=64, blank=True, default="")
    status_id = models.CharField(max_length=64, blank=True, default="")
    name = models.TextField(blank=True, default="")
    sort = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "statuses"
        constraints = _unique("mirror_status")
        indexes = _indexes("mirror_status", "entity_id", "sort", filters=("entity_id",))


class Currency(MirrorRecord):
    """crm.currency.list. A currency's Bitrix24 id is its code ("USD", at most three letters on
    Bitrix24); ``bitrix_id`` is the code's bytes read as an integer, so every table pages and sorts
    by ``bitrix_id`` alike and currencies come in alphabetical order (mirror.entities.currency_id)."""

    __str__ = MirrorRecord.__str__
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="mirror_currencies")
    code = models.CharField(max_length=16)
    base = models.BooleanField(null=True, blank=True)
    amount = models.DecimalField(max_digits=24, decimal_places=8, null=True, blank=True)
    amount_cnt = models.BigIntegerField(null=True, blank=True)
    sort = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "currencies"
        constraints = [
            *_unique("mirror_currency"),
            models.UniqueConstraint(fields=["portal", "code"], name="mirror_currency_portal_code_uniq"),
        ]
        indexes = _indexes("mirror_currency", "sort")


class SyncState(models.Model):
    """Where the mirror of one portal's entity stands: the initial sync's checkpoint and progress,
    the last reconciliation, the high-water mark of DATE_MODIFY it continues from."""

    class State(models.TextChoices):
        NEW = "new", "not synced yet"
        RUNNING = "running", "initial sync running"
        COMPLETE = "complete", "complete"
        FAILED = "failed", "failed (resumes from its checkpoint)"

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="mirror_sync_states")
    entity = models.CharField(max_length=16)
    state = models.CharField(max_length=16, choices=State.choices, default=State.NEW)
    checkpoint = models.JSONField(null=True, blank=True)
    rows = models.BigIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)
    # The DATE_MODIFY a reconciliation asks from (minus an overlap), and the offset the portal
    # writes its dates with: the filter is compared as the portal's own text.
    high_water = models.DateTimeField(null=True, blank=True)
    wire_offset = models.CharField(max_length=8, blank=True, default="")
    error = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["portal", "entity"], name="mirror_sync_portal_entity")]

    def __str__(self) -> str:
        return f"{self.entity} of portal {self.portal_id}: {self.state}"


class Pending(models.Model):
    """An object a CRM event said changed, waiting for the batched fetch (events coalesce here)."""

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="mirror_pending")
    entity = models.CharField(max_length=16)
    bitrix_id = models.BigIntegerField()
    marked_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["portal", "entity", "bitrix_id"], name="mirror_pending_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.entity} {self.bitrix_id} of portal {self.portal_id}"
