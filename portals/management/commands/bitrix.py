"""`manage.py bitrix <subcommand>`: the subcommands registered in portals.cli.SUBCOMMANDS."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portals.cli import SUBCOMMANDS


def _modules() -> dict[str, ModuleType]:
    modules = [importlib.import_module(path) for path in SUBCOMMANDS]
    return {module.NAME: module for module in modules}


class Command(BaseCommand):
    help = "Talk to Bitrix24 portals: call, export, import (and subcommands other apps register)."

    def add_arguments(self, parser: CommandParser) -> None:
        subparsers = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        for name, module in _modules().items():
            module.add_arguments(subparsers.add_parser(name, help=module.HELP, description=module.HELP))

    def handle(self, *args: Any, **options: Any) -> None:
        module = _modules()[options["subcommand"]]
        code = module.handle(options, stdout=self.stdout, stderr=self.stderr)
        if code:
            raise CommandError(f"bitrix {options['subcommand']} failed (exit {code})", returncode=code)
