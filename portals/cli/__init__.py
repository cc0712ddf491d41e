"""Subcommands of `manage.py bitrix`, one module each.

Each module listed here defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``handle(options, *, stdout, stderr) -> int`` (the exit code).
"""

SUBCOMMANDS: list[str] = [
    "portals.cli.call",
    "portals.cli.export",
    "portals.cli.importer",
    "events.cli",
]
