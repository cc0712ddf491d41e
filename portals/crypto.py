"""Encryption of secrets at rest (tokens, client secrets) with MultiFernet.

BITRIX24_TOKEN_KEYS lists Fernet keys, newest first: the first encrypts, all decrypt, so a key
is rotated by prepending a new one and running ``manage.py rotate_token_keys``.
Without keys (development only, refused by a system check when DEBUG is off) one key is derived
from SECRET_KEY so a fresh checkout works.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from portals.conf import app_settings


class TokenKeyError(Exception):
    """A stored secret cannot be decrypted with any configured key."""


def _derived_development_key() -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"bitrix24-token-keys")
    return base64.urlsafe_b64encode(hkdf.derive(settings.SECRET_KEY.encode()))


@functools.cache
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        return MultiFernet([Fernet(_derived_development_key())])
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    return _fernet_for(tuple(app_settings.token_keys))


def encrypt(value: str) -> str:
    if value == "":
        return ""
    return fernet().encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    if value == "":
        return ""
    try:
        return fernet().decrypt(value.encode()).decode()
    except InvalidToken as e:
        raise TokenKeyError("stored secret cannot be decrypted with BITRIX24_TOKEN_KEYS") from e


def rotate(value: str) -> str:
    """Re-encrypt with the newest key (a no-op for an empty value)."""
    if value == "":
        return ""
    return fernet().rotate(value.encode()).decode()
