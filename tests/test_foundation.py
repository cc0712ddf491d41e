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
    """The suite's keys and the app's live under REDIS_KEY_PREFIX; another prefix's keys are neither
    seen nor touched by them (a demo or another deployment sharing the Redis)."""
    from bitrix_app.celery import app
    from portals.services.coordination import coordination
    from tests.conftest import redis_wipe

    prefix = settings.REDIS_KEY_PREFIX
    foreign = "another-deployment:" + prefix  # holds our prefix, but not at its start
    redis_client.set(foreign, "theirs")
    try:
        before = set(redis_client.keys("*"))
        # The app's own writes: a coordination flag, a lease and a task sent to the broker.
        coordination().flags_set(["isolation:flag"], ttl=30)
        lease = coordination().lease("isolation:lease", ttl=30)
        assert lease is not None
        app.send_task("events.tasks.events_sweep")
        created = {key.decode() for key in set(redis_client.keys("*")) - before}
        assert f"{prefix}isolation:flag" in created and f"{prefix}isolation:lease" in created
        assert f"{prefix}{settings.CELERY_TASK_DEFAULT_QUEUE}" in created
        assert all(key.startswith(prefix) for key in created), sorted(created)
        seen = {key.decode() for key in redis_client.scan_iter(match=f"{prefix}*")}
        assert foreign not in seen and created <= seen
        redis_wipe(redis_client)  # what the suite does before and after every test using Redis
        assert not list(redis_client.scan_iter(match=f"{prefix}*"))
        assert redis_client.get(foreign) == b"theirs" and redis_client.ttl(foreign) == -1
    finally:
        redis_client.delete(foreign)


@pytest.mark.django_db(transaction=True)
def test_run_periodic_runs_every_beat_task_in_process(redis_client, settings):
    """Single-process mode's stand-in for beat finds and runs every scheduled task, each to success."""
    from celery import signals
    from django.core.management import call_command

    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled, "the areas schedule periodic tasks"
    ran: dict[str, str] = {}

    def finished(task_id, task, state, **_) -> None:
        ran[task.name] = state

    signals.task_postrun.connect(finished, weak=False)
    try:
        call_command("run_periodic", "--once")
    finally:
        signals.task_postrun.disconnect(finished)
    assert ran == dict.fromkeys(scheduled, "SUCCESS")
