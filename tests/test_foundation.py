"""The skeleton: settings from the environment, encrypted tokens, real services reachable."""

from __future__ import annotations

import pytest
from django.db import connection

from portals import crypto
from portals.models import Portal


def test_database_is_postgresql():
    assert connection.vendor == "postgresql"


@pytest.mark.django_db
def test_tokens_are_encrypted_at_rest():
    portal = Portal.objects.create(
        member_id="a" * 32,
        domain="example.bitrix24.com",
        client_endpoint="https://example.bitrix24.com/rest/",
        server_endpoint="https://oauth.bitrix.info/rest/",
        access_token="plain-access-token",
        refresh_token="plain-refresh-token",
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM portals_portal WHERE id = %s", [portal.pk])
        stored_access, stored_refresh = cursor.fetchone()
    assert "plain-access-token" not in stored_access
    assert "plain-refresh-token" not in stored_refresh
    reloaded = Portal.objects.get(pk=portal.pk)
    assert reloaded.access_token == "plain-access-token"
    assert reloaded.refresh_token == "plain-refresh-token"
    assert "plain-access-token" not in repr(reloaded)


def test_rotated_key_still_decrypts_old_values(settings):
    from cryptography.fernet import Fernet

    old_key = Fernet.generate_key().decode()
    settings.BITRIX24_TOKEN_KEYS = [old_key]
    ciphertext = crypto.encrypt("secret")
    settings.BITRIX24_TOKEN_KEYS = [Fernet.generate_key().decode(), old_key]
    assert crypto.decrypt(ciphertext) == "secret"
    rotated = crypto.rotate(ciphertext)
    settings.BITRIX24_TOKEN_KEYS = settings.BITRIX24_TOKEN_KEYS[:1]
    assert crypto.decrypt(rotated) == "secret"
    with pytest.raises(crypto.TokenKeyError):
        crypto.decrypt(ciphertext)


def test_redis_isolated_by_prefix(redis_client, settings):
    key = f"{settings.REDIS_KEY_PREFIX}probe"
    redis_client.set(key, "1")
    assert redis_client.get(key) == b"1"


@pytest.mark.django_db(transaction=True)
def test_run_periodic_runs_every_beat_task_in_process(caplog, settings):
    """Single-process mode's stand-in for beat finds and runs every scheduled task."""
    from django.core.management import call_command

    assert settings.CELERY_BEAT_SCHEDULE, "the areas schedule periodic tasks"
    with caplog.at_level("INFO"):
        call_command("run_periodic", "--once")
    failures = [r for r in caplog.records if r.getMessage() == "periodic.failed"]
    assert not failures, [r.exc_text for r in failures]
    from bitrix_app.celery import app

    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry["task"]
