"""Small builders shared by the portals tests (rows made directly, for tests without the sandbox)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.utils import timezone

from portals.models import Portal


def make_portal(**fields) -> Portal:
    """A stored portal with a token pair; ``fields`` override the defaults."""
    member_id = fields.pop("member_id", secrets.token_hex(16))
    now = timezone.now()
    defaults = {
        "domain": f"{member_id[:8]}.bitrix24.com",
        "client_endpoint": f"https://{member_id[:8]}.bitrix24.com/rest/",
        "server_endpoint": "https://oauth.bitrix.info/rest/",
        "access_token": "access-" + secrets.token_hex(8),
        "refresh_token": "refresh-" + secrets.token_hex(8),
        "application_token": "apptoken-" + secrets.token_hex(8),
        "expires_at": now + timedelta(hours=1),
        "refresh_token_issued_at": now,
        "installed_at": now,
    }
    defaults.update(fields)
    return Portal.objects.create(member_id=member_id, **defaults)
