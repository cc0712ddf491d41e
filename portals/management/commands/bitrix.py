"""`manage.py bitrix <subcommand>`: the subcommands the installed apps list in ``bitrix_subcommands``."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError


def _modules() -> dict[str, ModuleType]:
    paths = [path for config in apps.get_app_configs() for path in getattr(config, "bitrix_subcommands", ())]
    modules = [importlib.import_module(path) for path in paths]
    return {module.NAME: module for module in modules}


class Command(BaseCommand):
    help = "Talk to Bitrix24 portals: call, export, import (and subcommands other apps register)."

    def add_arguments(self, parser: CommandParser) -> None:
        subparsers = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        for name, module in _modules().items():
            module.add_arguments(subparsers.add_parser(name, help=module.HELP, description=module.HELP))

    def handle(self, *args: Any, **options: Any) -> None:
        module = _modules()[options["subcommand"]]
        try:
            code = module.handle(options, stdout=self.stdout, stderr=self.stderr)
        except DatabaseError as e:
            # --portal and the events subcommands read the database (a webhook needs none): on a
            # fresh checkout it is missing or has no tables yet. One line saying what to run.
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            self.stderr.write(f"error: the database is not ready ({reason}): run `python manage.py migrate`")
            code = 1
        if code:
            raise CommandError(f"bitrix {options['subcommand']} failed (exit {code})", returncode=code)
