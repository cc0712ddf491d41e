"""`manage.py bitrix apikey ...`: make, list, rotate and revoke API keys.

bitrix apikey create --portal MEMBER_ID [--portal …] --name NAME [--scopes deals:read,…]
                     [--expires-days 90] [--allow-ip CIDR,…]
bitrix apikey list [--portal MEMBER_ID]
bitrix apikey rotate PREFIX [--overlap-hours 24]
bitrix apikey revoke PREFIX

``create`` and ``rotate`` print the new key once, on stdout; it is stored only as a hash.
"""

from __future__ import annotations

import argparse
from typing import Any

from portals.models import Portal

from .errors import ApiError
from .models import ApiKey
from .services.keys import SCOPES, apikey_create, apikey_revoke, apikey_rotate

NAME = "apikey"
HELP = "Make, list, rotate and revoke keys of the outward API (/api/v1)."


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="apikey_action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a key and print it once")
    create.add_argument("--portal", action="append", required=True, metavar="MEMBER_ID", help="repeatable")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--scopes", type=_csv, default=list(SCOPES), help=f"default: all ({','.join(SCOPES)})"
    )
    create.add_argument("--expires-days", type=float, default=None, help="default: never")
    create.add_argument("--allow-ip", type=_csv, default=[], metavar="CIDR,…", help="default: any address")
    listing = actions.add_parser("list", help="keys, newest first (never the keys themselves)")
    listing.add_argument("--portal", metavar="MEMBER_ID")
    rotate = actions.add_parser(
        "rotate", help="a new key like this one; the old one lives on for the overlap"
    )
    rotate.add_argument("prefix", help="the key's prefix (b24k_<prefix>_…)")
    rotate.add_argument(
        "--overlap-hours", type=float, default=None, help="default: BITRIX24_API_KEY_ROTATION_OVERLAP_HOURS"
    )
    revoke = actions.add_parser("revoke", help="revoke a key now")
    revoke.add_argument("prefix")


def _prefix(text: str) -> str:
    return text.removeprefix("b24k_").split("_", 1)[0][:16]


def handle(options: dict[str, Any], *, stdout: Any, stderr: Any) -> int:
    action = options["apikey_action"]
    try:
        if action == "create":
            portals = list(Portal.objects.filter(member_id__in=options["portal"]))
            missing = set(options["portal"]) - {p.member_id for p in portals}
            if missing:
                stderr.write(f"error: no portal with member_id {sorted(missing)[0][:64]!r}\n")
                return 1
            key, raw = apikey_create(
                name=options["name"],
                portals=portals,
                scopes=options["scopes"],
                expires_days=options["expires_days"],
                allow_ips=options["allow_ip"],
                created_by="cli",
            )
            stdout.write(f"{raw}\n")
            stderr.write(f"key {key.name} ({key.prefix}): shown once, stored only as a hash\n")
            return 0
        if action == "list":
            keys = ApiKey.objects.prefetch_related("portals").order_by("-created_at")
            if options["portal"]:
                keys = keys.filter(portals__member_id=options["portal"])
            for key in keys:
                state = "revoked" if key.revoked_at else ("usable" if key.is_usable else "expired")
                expires = f"{key.expires_at:%Y-%m-%d %H:%M}" if key.expires_at else "never"
                used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
                portals = ",".join(p.member_id for p in key.portals.all())
                stdout.write(
                    f"{key.prefix}  {state:<8} {key.name[:30]:<30} expires {expires}  used {used}  "
                    f"{','.join(key.scopes)}  {portals}\n"
                )
            return 0
        key = ApiKey.objects.filter(prefix=_prefix(options["prefix"])).first()
        if key is None:
            stderr.write("error: no such key\n")
            return 1
        if action == "rotate":
            new, raw = apikey_rotate(key=key, overlap_hours=options["overlap_hours"], created_by="cli")
            stdout.write(f"{raw}\n")
            stderr.write(
                f"key {new.prefix} replaces {key.prefix}, which expires {key.expires_at:%Y-%m-%d %H:%M}\n"
            )
            return 0
        apikey_revoke(key=key, reason="revoked from the command line")
        stdout.write(f"revoked {key.prefix}\n")
        return 0
    except ApiError as e:
        stderr.write(f"error: {e.message}\n")
        return 1
