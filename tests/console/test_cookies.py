"""The console's session and CSRF cookies are Secure outside DEBUG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY]))"
)


@pytest.mark.parametrize(("debug", "secure"), [("0", True), ("1", False)])
def test_cookies_are_secure_outside_debug(debug, secure):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "BITRIX24_", "AXES_")) and key != "DATABASE_URL"
    }
    env |= {
        "DJANGO_SETTINGS_MODULE": "bitrix_app.settings",
        "DJANGO_DEBUG": debug,
        "DJANGO_SECRET_KEY": "k" * 50,
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [secure, secure, True]
