"""The portal page's actions from the command line, through the running sandbox's control API.

    python -m sandbox.lifecycle install --portal 1            # installer POST, then ONAPPINSTALL
    python -m sandbox.lifecycle install --portal 1 --finish explicit
    python -m sandbox.lifecycle finish --portal 1             # installFinish, as BX24.installFinish()
    python -m sandbox.lifecycle update --portal 1 [--version 3]
    python -m sandbox.lifecycle payment-end --portal 1 | payment-renew --portal 1 [--days 30]
    python -m sandbox.lifecycle rename --portal 1
    python -m sandbox.lifecycle uninstall --portal 1 [--clean]
    python -m sandbox.lifecycle deliveries [--portal 1] [--event ONCRMDEALADD]
    python -m sandbox.lifecycle watch [--portal 1]            # print deliveries as they happen
    python -m sandbox.lifecycle pages                         # the portal pages to open in a browser
    python -m sandbox.lifecycle urls [--installer URL] [--install-event URL] [--app-page URL]
        [--placement URL-with-{name}] [--oauth-redirect URL] [--events URL] [--finish-mode auto|explicit]

The control URL comes from --control-url or the state file: --state-file, else the first of
var/demo/sandbox/state.json (bin/demo's sandbox, in the project) and var/sandbox/state.json (a sandbox
started on its own from the current directory) whose sandbox answers.
Prints the JSON answer; exits 1 when the sandbox refuses the action.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import requests

URL_OPTIONS = ("installer", "install_event", "app_page", "placement", "oauth_redirect", "events")
PROJECT = Path(__file__).resolve().parent.parent.parent
# Where running sandboxes write their state when --state-file is not given: bin/demo's first (the
# one an app is installed on), then `python manage.py sandbox`'s default.
STATE_FILES = (PROJECT / "var" / "demo" / "sandbox" / "state.json", Path("var") / "sandbox" / "state.json")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.lifecycle", description="Sandbox portal lifecycle actions"
    )
    parser.add_argument(
        "--state-file", help="default: the running demo's sandbox, else var/sandbox/state.json"
    )
    parser.add_argument("--control-url", help="overrides the state file's control_url")
    sub = parser.add_subparsers(dest="action", required=True)

    def with_portal(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--portal", default="1", help="1-based index, member_id or domain")
        return p

    with_portal("install", "install without a browser").add_argument("--finish", choices=["auto", "explicit"])
    with_portal("finish", "installFinish")
    with_portal("update", "new app version (ONAPPUPDATE)").add_argument("--version", type=int)
    with_portal("payment-end", "end the paid period (PAYMENT_REQUIRED, ONAPPPAYMENT)")
    with_portal("payment-renew", "renew the paid period (ONAPPPAYMENT)").add_argument("--days", type=int)
    with_portal("rename", "rename the portal to a new address (old host → 302)")
    with_portal("uninstall", "uninstall (ONAPPUNINSTALL)").add_argument("--clean", action="store_true")
    deliveries = sub.add_parser("deliveries", help="the delivery log")
    deliveries.add_argument("--portal")
    deliveries.add_argument("--event")
    watch = sub.add_parser("watch", help="print deliveries as they happen (Ctrl-C stops)")
    watch.add_argument("--portal")
    watch.add_argument("--interval", type=float, default=0.5)
    sub.add_parser("pages", help="the portal pages to open in a browser")
    urls = sub.add_parser("urls", help="show or change the app's registered URLs")
    for name in URL_OPTIONS:
        urls.add_argument(f"--{name.replace('_', '-')}", dest=name)
    urls.add_argument("--finish-mode", choices=["auto", "explicit"])
    return parser


def _control_url(args: argparse.Namespace) -> str:
    if args.control_url:
        return args.control_url.rstrip("/") + "/"
    return str(_state(args)["control_url"]).rstrip("/") + "/"


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any]]:
    """(HTTP method, path under /_sandbox/, JSON or query) for the chosen action."""
    action = args.action
    portal = {"portal": getattr(args, "portal", None)}
    if action == "install":
        return "POST", "lifecycle/install", {**portal, **({"finish": args.finish} if args.finish else {})}
    if action == "finish":
        return "POST", "lifecycle/install-finish", portal
    if action == "update":
        return "POST", "lifecycle/update", {**portal, **({"version": args.version} if args.version else {})}
    if action == "payment-end":
        return "POST", "lifecycle/payment", {**portal, "expired": True}
    if action == "payment-renew":
        return (
            "POST",
            "lifecycle/payment",
            {**portal, "expired": False, **({"days": args.days} if args.days else {})},
        )
    if action == "rename":
        return "POST", "lifecycle/rename", portal
    if action == "uninstall":
        return "POST", "lifecycle/uninstall", {**portal, "clean": args.clean}
    if action == "deliveries":
        query = {k: v for k, v in (("portal", args.portal), ("event", args.event)) if v}
        return "GET", "lifecycle/deliveries", query
    changes = {name: getattr(args, name) for name in URL_OPTIONS if getattr(args, name)}
    body: dict[str, Any] = {"urls": changes} if changes else {}
    if args.finish_mode:
        body["finish_mode"] = args.finish_mode
    return ("POST" if body else "GET"), "lifecycle", body


def _state_path(args: argparse.Namespace) -> Path:
    """--state-file, else the first of STATE_FILES whose sandbox answers (else the first that exists)."""
    if args.state_file:
        return Path(args.state_file)
    existing = [path for path in STATE_FILES if path.is_file()]
    for path in existing:
        if _answers(path):
            return path
    return existing[0] if existing else STATE_FILES[-1]


def _answers(path: Path) -> bool:
    """Whether the sandbox that wrote ``path`` is running (its control API answers)."""
    try:
        requests.get(json.loads(path.read_text())["control_url"], timeout=2)
    except (OSError, ValueError, KeyError, TypeError, requests.RequestException):
        return False
    return True


def _state(args: argparse.Namespace) -> dict[str, Any]:
    """The sandbox's state file; exits with a message if the sandbox hasn't written one."""
    path = _state_path(args)
    if not path.is_file():
        raise SystemExit(
            f"no state file at {path}: start the sandbox first, or pass --state-file / --control-url"
        )
    return dict(json.loads(path.read_text()))


def _pages(args: argparse.Namespace) -> int:
    """The portal page of each portal on its http listener (browsers won't frame an http app from the
    self-signed https listener)."""
    for index, portal in enumerate(_state(args)["portals"], start=1):
        host = portal["http_endpoint"].split("/")[2]
        print(f"portal {index}  {portal['member_id']}  http://{host}/portal/")
    return 0


def _watch(args: argparse.Namespace) -> int:
    """Poll the delivery log and print each new delivery once: time, portal, event, URL, answer."""
    url = _control_url(args) + "lifecycle/deliveries"
    query = {"portal": args.portal} if args.portal else {}
    seen: set[int] = set()
    try:
        while True:
            for record in requests.get(url, params=query, timeout=30).json()["deliveries"]:
                if record["id"] in seen:
                    continue
                seen.add(record["id"])
                answer = str(record["status"]) if record["ok"] else f"FAILED {record['error']}"
                took = (record["finished_at"] - record["started_at"]) * 1000
                stamp = time.strftime("%H:%M:%S", time.localtime(record["finished_at"]))
                where = f"{record['member_id'][:8]}  {record['event']:<18} {record['url']}"
                print(f"{stamp}  {where}  {answer} ({took:.0f} ms)")
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.action == "pages":
        return _pages(args)
    if args.action == "watch":
        return _watch(args)
    method, path, payload = _request(args)
    url = _control_url(args) + path
    if method == "GET":
        response = requests.get(url, params=payload, timeout=60)
    else:
        response = requests.post(url, json=payload, timeout=60)
    try:
        body = response.json()
    except ValueError:
        body = {"status": response.status_code, "text": response.text[:500]}
    print(json.dumps(body, indent=2))
    return 0 if response.ok else 1


if __name__ == "__main__":
    sys.exit(main())
