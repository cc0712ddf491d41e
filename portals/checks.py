from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def token_keys_configured(app_configs, **kwargs):
    """Production must encrypt tokens with real keys, not ones derived from SECRET_KEY."""
    if settings.BITRIX24_TOKEN_KEYS:
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
    for index, key in enumerate(settings.BITRIX24_TOKEN_KEYS):
        try:
            Fernet(key.encode())
        except ValueError:
            errors.append(
                checks.Error(f"BITRIX24_TOKEN_KEYS[{index}] is not a Fernet key.", id="portals.E002")
            )
    return errors
