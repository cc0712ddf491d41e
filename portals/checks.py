from django.core import checks

from portals.conf import app_settings


@checks.register(checks.Tags.security, deploy=True)
def token_keys_configured(app_configs, **kwargs):
    """Production must encrypt tokens with real keys, not ones derived from SECRET_KEY."""
    if app_settings.token_keys:
        return []
    return [
        checks.Error(
            "BITRIX24_TOKEN_KEYS is empty: tokens are encrypted with a key derived from SECRET_KEY.",
            hint="Generate one with `python manage.py generate_token_key` and set BITRIX24_TOKEN_KEYS.",
            id="portals.E001",
        )
    ]


@checks.register(checks.Tags.security)
def token_keys_valid(app_configs, **kwargs):
    from cryptography.fernet import Fernet

    errors = []
    for index, key in enumerate(app_settings.token_keys):
        try:
            Fernet(key.encode())
        except ValueError:
            errors.append(
                checks.Error(f"BITRIX24_TOKEN_KEYS[{index}] is not a Fernet key.", id="portals.E002")
            )
    return errors


@checks.register(checks.Tags.security)
def oauth_servers_valid(app_configs, **kwargs):
    """The allow-list decides where client_secret and refresh tokens may go: it must be sound."""
    from urllib.parse import urlsplit

    servers = app_settings.oauth_servers
    if not servers:
        return [
            checks.Error(
                "BITRIX24_OAUTH_SERVERS is empty: no install can be verified.",
                hint="https://oauth.bitrix.info/ (and https://oauth.bitrix24.tech/ for the east region).",
                id="portals.E003",
            )
        ]
    errors = []
    for server in servers:
        parts = urlsplit(server)
        if parts.scheme != "https" and not (parts.scheme == "http" and app_settings.allow_http):
            errors.append(checks.Error(f"OAuth server {server!r} must use https.", id="portals.E004"))
        elif not parts.netloc or parts.path not in ("", "/") or parts.query:
            errors.append(
                checks.Error(f"OAuth server {server!r} must be a bare https://host/ URL.", id="portals.E005")
            )
    return errors


@checks.register(checks.Tags.security, deploy=True)
def production_registration(app_configs, **kwargs):
    problems = []
    if not app_settings.client_id or not app_settings.client_secret:
        problems.append(
            checks.Error(
                "BITRIX24_CLIENT_ID / BITRIX24_CLIENT_SECRET not set: marketplace portals cannot refresh.",
                id="portals.E006",
            )
        )
    if app_settings.allow_http:
        problems.append(
            checks.Warning("BITRIX24_ALLOW_HTTP is on: plain-http endpoints are accepted.", id="portals.W001")
        )
    return problems
