"""`manage.py bitrix events ...`: inspect, replay, bind and drain events.

bitrix events list [--status failed] [--portal MEMBER_ID] [--event NAME] [--limit N]
bitrix events show ID
bitrix events replay --id N [--id M ...] | --failed [--portal MEMBER_ID] [--event NAME]
bitrix events stats
bitrix events bind --portal MEMBER_ID
bitrix events reconcile [--portal MEMBER_ID]
bitrix events drain-offline --portal MEMBER_ID
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.db.models import Count

from events.models import Event
from events.services import binding, offline
from events.services.replay import events_replay
from portals.bitrix.exceptions import Bitrix24Error
from portals.cli.common import bounded
from portals.models import Portal

NAME = "events"
HELP = "Inspect, replay, bind and drain Bitrix24 events."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="events_action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="list stored events, newest first")
    listing.add_argument("--status", choices=[s.value for s in Event.Status])
    listing.add_argument("--portal", help="member_id")
    listing.add_argument("--event", help="event name, e.g. ONCRMDEALUPDATE")
    listing.add_argument("--limit", type=bounded(1, 100_000), default=50, help="1-100000 (default 50)")

    show = actions.add_parser("show", help="one event with its payload and last error")
    show.add_argument("id", type=int)

    replay = actions.add_parser("replay", help="dispatch events again (failed ones, or by id)")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, action="append", dest="ids", help="an event id (repeatable)")
    which.add_argument("--failed", action="store_true", help="every failed event (narrow it below)")
    replay.add_argument("--portal", help="only this member_id")
    replay.add_argument("--event", help="only this event name")

    actions.add_parser("stats", help="events per status")

    bind = actions.add_parser("bind", help="bind the app's events on a portal now")
    bind.add_argument("--portal", required=True, help="member_id")

    reconcile = actions.add_parser("reconcile", help="compare bindings with event.get and repair them")
    reconcile.add_argument("--portal", help="member_id (default: every active portal)")

    drain = actions.add_parser("drain-offline", help="move a portal's offline queue into the outbox now")
    drain.add_argument("--portal", required=True, help="member_id")


def handle(options: dict[str, Any], *, stdout: Any, stderr: Any) -> int:
    action = options["events_action"]
    try:
        return _ACTIONS[action](options, stdout)
    except Portal.DoesNotExist:
        stderr.write(f"error: no portal with member_id {(options.get('portal') or '')[:64]!r}\n")
    except Event.DoesNotExist:
        stderr.write(f"error: no event {options.get('id')}\n")
    except Bitrix24Error as e:
        stderr.write(f"error: {type(e).__name__}: {e}\n")
    return 1


def _known_portal(options: dict[str, Any]) -> None:
    """Raise Portal.DoesNotExist for a --portal that names no portal: as a filter it would match
    nothing and pass for "no events" (exit 0)."""
    if options["portal"]:
        Portal.objects.get(member_id=options["portal"])


def _list(options: dict[str, Any], stdout: Any) -> int:
    _known_portal(options)
    queryset = Event.objects.select_related("portal").order_by("-id")
    if options["status"]:
        queryset = queryset.filter(status=options["status"])
    if options["portal"]:
        queryset = queryset.filter(portal__member_id=options["portal"])
    if options["event"]:
        queryset = queryset.filter(event=options["event"].upper())
    for row in queryset[: options["limit"]]:
        error = f"  {row.last_error[:80]}" if row.last_error else ""
        stdout.write(
            f"{row.pk:>10}  {row.status:<8} {row.attempts:>2}  {row.ts:%Y-%m-%d %H:%M:%S}  "
            f"{row.portal.member_id}  {row.event}  {row.object_key}{error}\n"
        )
    return 0


def _show(options: dict[str, Any], stdout: Any) -> int:
    row = Event.objects.select_related("portal").get(pk=options["id"])
    info = {
        "id": row.pk,
        "portal": row.portal.member_id,
        "event": row.event,
        "object_key": row.object_key,
        "source": row.source,
        "status": row.status,
        "attempts": row.attempts,
        "ts": row.ts.isoformat(),
        "received_at": row.received_at.isoformat(),
        "processed_at": row.processed_at.isoformat() if row.processed_at else None,
        "last_error": row.last_error,
        "payload": row.payload,
    }
    stdout.write(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return 0


def _replay(options: dict[str, Any], stdout: Any) -> int:
    _known_portal(options)
    count = events_replay(
        event_ids=options["ids"],
        failed=options["failed"],
        portal_member_id=options["portal"],
        event_name=options["event"],
    )
    stdout.write(f"re-queued {count} event(s)\n")
    return 0


def _stats(options: dict[str, Any], stdout: Any) -> int:
    for row in Event.objects.values("status").annotate(n=Count("id")).order_by("status"):
        stdout.write(f"{row['status']:<8} {row['n']}\n")
    return 0


def _bind(options: dict[str, Any], stdout: Any) -> int:
    portal = Portal.objects.get(member_id=options["portal"])
    report = binding.app_events_bind(portal_id=portal.pk)
    for item in report.bound:
        stdout.write(f"bound    {item.event} {'offline' if item.offline else item.handler}\n")
    for item in report.present:
        stdout.write(f"present  {item.event} {'offline' if item.offline else item.handler}\n")
    return 0


def _reconcile(options: dict[str, Any], stdout: Any) -> int:
    if options["portal"]:
        portal = Portal.objects.get(member_id=options["portal"])
        report = binding.app_events_reconcile(portal_id=portal.pk)
        stdout.write(f"{portal.member_id}: bound {len(report.bound)}, unbound {len(report.unbound)}\n")
        return 0
    for member_id, result in binding.app_events_reconcile_all().items():
        stdout.write(f"{member_id}: {result}\n")
    return 0


def _drain_offline(options: dict[str, Any], stdout: Any) -> int:
    portal = Portal.objects.get(member_id=options["portal"])
    report = offline.offline_events_drain(portal_id=portal.pk)
    stdout.write(
        f"fetched {report.fetched}, stored {report.stored}, duplicates {report.duplicates}, "
        f"unhandled {report.unhandled}, errors {report.errors}\n"
    )
    return 0


_ACTIONS = {
    "list": _list,
    "show": _show,
    "replay": _replay,
    "stats": _stats,
    "bind": _bind,
    "reconcile": _reconcile,
    "drain-offline": _drain_offline,
}
