"""``python manage.py sandbox``: run the sandbox Bitrix24 portals (same options as ``python -m sandbox``).

The sandbox itself uses no Django; the command only gives it the project's usual entry point,
with ``--client-id/--client-secret`` defaulting to the app's BITRIX24_CLIENT_ID/SECRET so the
demo and the Django app share one registration.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sandbox.server import add_arguments, config_from_args, serve


class Command(BaseCommand):
    help = "Run the sandbox Bitrix24 portals (OAuth server, REST, limits, control API)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        from argparse import Namespace

        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        namespace = Namespace(**options)
        asyncio.run(serve(config_from_args(namespace), out=self.stdout, quiet=options["quiet"]))
