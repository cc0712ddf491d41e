"""Test settings: the real PostgreSQL and Redis, isolated from a running demo.

Every default here can be overridden from the environment (CI, another machine).
Tests use their own Redis db index, key prefix and Celery queue, so a demo's worker never takes
a test task and a test never sees demo keys.
"""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bitrix24")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("REDIS_KEY_PREFIX", "b24test:")
os.environ.setdefault("CELERY_QUEUE", "bitrix24-test")
os.environ.setdefault("BITRIX24_CLIENT_ID", "app.sandbox000000000.00000000")
os.environ.setdefault("BITRIX24_CLIENT_SECRET", "sandbox-client-secret")
os.environ.setdefault("BITRIX24_TOKEN_KEYS", "dGVzdC1rZXktMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=")
# The example feature (what bin/demo runs): the tests follow deals through its handlers.
os.environ.setdefault("DJANGO_EXTRA_APPS", "examples.deals")
# The console's rollups are written when a test flushes them (tests/console), never by a background
# thread that could hold a connection while the test database is dropped.
os.environ.setdefault("BITRIX24_CONSOLE_FLUSH_SECONDS", "0")

from bitrix_app.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {  # noqa: F405
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Tests serve no collected static files (whitenoise would warn that var/static is missing).
STATIC_ROOT = None
