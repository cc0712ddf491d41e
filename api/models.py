"""API keys: stored as a SHA-256 digest, never in plain text; scoped to portals and entities.

A key is ``b24k_<prefix>_<secret>``: the prefix (public, shown in lists and logs) finds the row,
the digest of the whole key proves it. A fast hash is right here, unlike for passwords: the key
holds 190 random bits, so nothing can be guessed however fast the hash; a slow KDF would only slow
every request.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from portals.models import Portal


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def usable(self) -> ApiKeyQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    portals = models.ManyToManyField(Portal, related_name="api_keys")
    # "deals:read", "users:read", …: one per entity the key may read (mirror.entities plurals).
    scopes = models.JSONField(default=list)
    # CIDRs the key may be used from; empty: any address.
    allow_ips = models.JSONField(default=list, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=200, blank=True, default="")
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.CharField(max_length=200, blank=True, default="")
    replaced_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (b24k_{self.prefix}_…)"

    def __repr__(self) -> str:
        return f"<ApiKey {self.prefix} {self.name!r}>"

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())
