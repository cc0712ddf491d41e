"""Which OAuth server and app registration a portal's grants go to."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

from portals.conf import app_settings

from ..bitrix.oauth import OAuthConfig, OAuthServer, oauth_server_for
from ..models import Portal

Clock = Callable[[], datetime]


def oauth_server(
    *, server_endpoint: str, client_id: str = "", client_secret: str = "", clock: Clock | None = None
) -> OAuthServer:
    """An OAuthServer for an allow-listed ``server_endpoint`` (Bitrix24ConfigError otherwise).

    Without a client_id the marketplace registration from settings is used.
    """
    base = oauth_server_for(server_endpoint, app_settings.oauth_servers)
    config = OAuthConfig(
        client_id=client_id or app_settings.client_id,
        client_secret=client_secret or app_settings.client_secret,
        ca_bundle=app_settings.ca_bundle,
        connect_timeout=app_settings.connect_timeout,
        # The OAuth server answers in milliseconds; REST's 65 s read timeout would only delay
        # the "outcome unknown" retry.
        read_timeout=min(app_settings.read_timeout, 30.0),
    )
    return OAuthServer(base, config, now=clock or timezone.now)


def portal_oauth_server(*, portal: Portal, clock: Clock | None = None) -> OAuthServer:
    """The OAuth server of ``portal`` with its registration (local app pair or the marketplace one).

    The stored server_endpoint is re-checked against the allow-list on every use, so removing a
    server from BITRIX24_OAUTH_SERVERS stops every grant to it at once.
    """
    return oauth_server(
        server_endpoint=portal.server_endpoint,
        client_id=portal.client_id,
        client_secret=portal.client_secret,
        clock=clock,
    )
