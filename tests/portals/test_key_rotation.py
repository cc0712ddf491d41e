"""rotate_token_keys re-encrypts every secret with the newest key; old keys can then be dropped."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import call_command
from django.db import connection

from portals.models import LocalApplication, Portal

from .helpers import make_portal

pytestmark = pytest.mark.django_db


def raw(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_rotation_moves_every_secret_to_the_new_key(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.BITRIX24_TOKEN_KEYS = [old]
    portal = make_portal(client_id="local.abc.1", client_secret="local-secret")
    local = LocalApplication.objects.create(client_id="local.abc.1", client_secret="local-secret")
    tokens = (portal.access_token, portal.refresh_token, portal.application_token)

    settings.BITRIX24_TOKEN_KEYS = [new, old]
    call_command("rotate_token_keys", stdout=open("/dev/null", "w"))

    for column in ("access_token", "refresh_token", "application_token", "client_secret"):
        ciphertext = raw("portals_portal", column, portal.pk).encode()
        Fernet(new.encode()).decrypt(ciphertext)  # readable with the new key alone
        with pytest.raises(InvalidToken):
            Fernet(old.encode()).decrypt(ciphertext)
    Fernet(new.encode()).decrypt(raw("portals_localapplication", "client_secret", local.pk).encode())

    settings.BITRIX24_TOKEN_KEYS = [new]  # the old key is retired
    reloaded = Portal.objects.get(pk=portal.pk)
    assert (reloaded.access_token, reloaded.refresh_token, reloaded.application_token) == tokens
    assert reloaded.client_secret == "local-secret"
    assert LocalApplication.objects.get(pk=local.pk).client_secret == "local-secret"


def test_generate_token_key_prints_a_usable_key(capsys):
    call_command("generate_token_key")
    key = capsys.readouterr().out.strip()
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"
