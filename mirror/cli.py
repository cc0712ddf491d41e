"""`manage.py bitrix mirror ...`: fill, inspect and reconcile a portal's mirror.

bitrix mirror sync --portal MEMBER_ID [--entity deal] [--background]
bitrix mirror status --portal MEMBER_ID [--entity deal]
bitrix mirror reconcile --portal MEMBER_ID [--entity deal] [--background]

``sync`` runs the initial sync (resuming an interrupted one) with a progress bar and returns when
it is complete; ``--background`` queues it for the workers instead.
"""

from __future__ import annotations

import argparse
from typing import Any

from portals.bitrix.exceptions import Bitrix24Error
from portals.cli.common import progress_bar
from portals.models import Portal

from .entities import ENTITIES
from .services.queue import reconcile_queue, sync_queue
from .services.status import mirror_status
from .services.sync import MirrorBusy, mirror_reconcile, mirror_sync

NAME = "mirror"
HELP = "Sync, inspect and reconcile the local mirror of a portal's CRM data."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="mirror_action", required=True, metavar="ACTION")
    for name, help_text in (
        ("sync", "run the initial sync (resumes an interrupted one) and wait for it"),
        ("status", "where each entity's mirror stands"),
        ("reconcile", "catch up with changes and deletions the events missed"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("--portal", required=True, metavar="MEMBER_ID", help="an installed portal")
        action.add_argument("--entity", choices=list(ENTITIES), help="one entity (default: all)")
        if name != "status":
            action.add_argument("--background", action="store_true", help="queue it for the workers")


def handle(options: dict[str, Any], *, stdout: Any, stderr: Any) -> int:
    try:
        portal = Portal.objects.get(member_id=options["portal"])
    except Portal.DoesNotExist:
        stderr.write(f"error: no portal with member_id {options['portal'][:64]!r}\n")
        return 1
    entities = [options["entity"]] if options.get("entity") else list(ENTITIES)
    action = options["mirror_action"]
    if action == "status":
        return _status(portal, entities, stdout)
    if options.get("background"):
        queue = sync_queue if action == "sync" else reconcile_queue
        for entity in entities:
            queue(portal.pk, entity)
        stdout.write(f"queued {action} of {', '.join(entities)} for portal {portal.member_id}\n")
        return 0
    failed = 0
    for entity in entities:
        try:
            with progress_bar(stderr, f"{action} {entity}") as bar:
                task = bar.add_task(entity, total=None, of="")
                progress = lambda n, task=task: bar.update(task, completed=n)  # noqa: E731
                if action == "sync":
                    state = mirror_sync(portal_id=portal.pk, entity=entity, progress=progress, again=True)
                    stdout.write(f"{entity}: synced {state.rows} rows\n")
                else:
                    result = mirror_reconcile(portal_id=portal.pk, entity=entity, progress=progress)
                    stdout.write(f"{entity}: {result.changed} changed, {result.deleted} deleted\n")
        except MirrorBusy as e:
            stderr.write(f"error: {e}\n")
            failed += 1
        except Bitrix24Error as e:
            stderr.write(f"error: {entity}: {type(e).__name__}: {e}\n")
            failed += 1
    return 1 if failed else 0


def _status(portal: Portal, entities: list[str], stdout: Any) -> int:
    stdout.write(f"{'entity':<10} {'state':<9} {'rows':>9} {'synced':>9} {'pending':>7}  reconciled\n")
    for line in mirror_status(portal_id=portal.pk, entities=entities):
        reconciled = f"{line.reconciled_at:%Y-%m-%d %H:%M:%S}" if line.reconciled_at else "-"
        error = f"  {line.error[:80]}" if line.error else ""
        counts = f"{line.rows:>9} {line.synced:>9} {line.pending:>7}"
        stdout.write(f"{line.entity:<10} {line.state:<9} {counts}  {reconciled}{error}\n")
    return 0
