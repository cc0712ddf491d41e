"""im.notify.system.add: the usual way an app notifies a portal user (RD chats/notifications/
im-notify-system-add.md).

The sandbox has no messenger: notifications are kept per portal, in order, and shown by the control
API (``GET /_sandbox/notifications``) so a test or a person can see what an app sent.
"""

from __future__ import annotations

import json
from typing import Any

from sandbox.registry import Call, RestError, method
from sandbox.seed import bitrix_datetime
from sandbox.store import Portal, Row

ATTACH_LIMIT = 60_000  # characters, as the page documents for ATTACH_OVERSIZE


def notifications_of(portal: Portal) -> list[Row]:
    """The portal's notifications, oldest first (a list the caller may change)."""
    notes: list[Row] = portal.extra.setdefault("notifications", [])
    return notes


def _attach_size(attach: Any) -> int:
    return len(attach) if isinstance(attach, str) else len(json.dumps(attach, ensure_ascii=False))


@method("im.notify.system.add", scope="im", write=True)
def notify_system_add(call: Call) -> Any:
    """Returns the new notification's id, or false when there is no such user to notify.

    Errors as documented: USER_ID_EMPTY, MESSAGE_EMPTY, ATTACH_OVERSIZE (400). A TAG replaces
    the caller's earlier notifications with the same tag.
    """
    params = {str(k).upper(): v for k, v in call.params.items()}
    try:
        user_id = int(str(params.get("USER_ID") or 0))
    except ValueError:
        user_id = 0
    if user_id <= 0:
        raise RestError("USER_ID_EMPTY", "User ID can't be empty", 400)
    message = str(params.get("MESSAGE") or "").strip()
    if not message:
        raise RestError("MESSAGE_EMPTY", "Message can't be empty", 400)
    attach = params.get("ATTACH")
    if attach not in (None, "") and _attach_size(attach) > ATTACH_LIMIT:
        raise RestError("ATTACH_OVERSIZE", "You have exceeded the maximum allowable size of attach", 400)
    if user_id not in call.portal.users:
        return False
    sender = call.auth.client_id or str(params.get("CLIENT_ID") or "")
    notes = notifications_of(call.portal)
    tag = str(params.get("TAG") or "")
    if tag:
        notes[:] = [n for n in notes if not (n["TAG"] == tag and n["CLIENT_ID"] == sender)]
    counter = call.portal.extra.get("notification_id", 0) + 1
    call.portal.extra["notification_id"] = counter
    notes.append(
        {
            "ID": counter,
            "USER_ID": user_id,
            "FROM_USER_ID": call.auth.user_id,
            "MESSAGE": message,
            "MESSAGE_OUT": str(params.get("MESSAGE_OUT") or ""),
            "TAG": tag,
            "SUB_TAG": str(params.get("SUB_TAG") or ""),
            "ATTACH": attach,
            "CLIENT_ID": sender,
            "DATE": bitrix_datetime(call.sandbox.clock.time()),
        }
    )
    return counter
