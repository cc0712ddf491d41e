"""Re-encrypt every stored secret with the newest key of BITRIX24_TOKEN_KEYS.

Rotation: prepend a new key to BITRIX24_TOKEN_KEYS (keep the old ones), deploy, run this; once
it reports every row done, the old keys can be removed. Safe to re-run and to run while the app
works: each batch is re-encrypted under its row locks (a concurrent refresh waits, then writes
its new pair with the newest key itself).
"""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from portals.crypto import TokenKeyError
from portals.fields import EncryptedTextField


class Command(BaseCommand):
    help = "Re-encrypt stored tokens and secrets with the newest BITRIX24_TOKEN_KEYS key."

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=500, help="Rows per transaction.")

    def handle(self, *args, batch: int, **options):
        # Every model of every app with an encrypted column (portals, the events outbox, ...).
        models = [
            model
            for model in apps.get_models()
            if any(isinstance(f, EncryptedTextField) for f in model._meta.concrete_fields)
        ]
        for model in models:
            count = self._rotate(model, batch)
            self.stdout.write(f"rotate_token_keys: {model._meta.label}: {count} rows re-encrypted")

    def _rotate(self, model, batch: int) -> int:
        # Reading decrypts with any configured key; saving encrypts with the first (newest) one.
        fields = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        ids = list(model.objects.order_by("pk").values_list("pk", flat=True))
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            with transaction.atomic():
                try:
                    rows = list(model.objects.select_for_update().filter(pk__in=chunk).order_by("pk"))
                except TokenKeyError as e:
                    raise CommandError(f"{model.__name__}: a stored secret matches no configured key") from e
                for row in rows:
                    row.save(update_fields=fields)
        return len(ids)
