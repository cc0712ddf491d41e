"""Register a local app's client_id/client_secret so its installs are accepted."""

from __future__ import annotations

import getpass
import os

from django.core.management.base import BaseCommand, CommandError

from portals.models import LocalApplication


class Command(BaseCommand):
    help = (
        "Register a local Bitrix24 app (client_id local.…). The secret is read from "
        "BITRIX24_LOCAL_CLIENT_SECRET or prompted for, never from the command line."
    )

    def add_arguments(self, parser):
        parser.add_argument("client_id")
        parser.add_argument("--title", default="")

    def handle(self, *args, client_id: str, title: str, **options):
        secret = os.environ.get("BITRIX24_LOCAL_CLIENT_SECRET") or getpass.getpass("client_secret: ")
        if not secret:
            raise CommandError("a client_secret is required")
        app, created = LocalApplication.objects.update_or_create(
            client_id=client_id, defaults={"client_secret": secret, "title": title}
        )
        self.stdout.write(f"{'registered' if created else 'updated'} local app {app.client_id}")
