"""Subcommands of `manage.py bitrix`, one module each.

Every installed app lists its subcommand modules in its AppConfig's ``bitrix_subcommands``, so the
command finds them without this package knowing the apps above it. Each such module defines
``NAME``, ``HELP``, ``add_arguments(parser)`` and ``handle(options, *, stdout, stderr) -> int``
(the exit code).
"""
