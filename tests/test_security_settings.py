"""Production security settings (HTTPS, HSTS) and error reports that never show Bitrix24 secrets."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

# --- check --deploy ----------------------------------------------------------------------------


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py`` in a fresh process with the real settings module and only ``env`` set.

    The test suite's own variables (DEBUG on, its database and Redis) are left out, so the
    settings are what a production environment with ``env`` would get.
    """
    ours = ("DJANGO_", "BITRIX24_", "DATABASE_", "REDIS_", "CELERY_")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    production = {
        "DJANGO_SETTINGS_MODULE": "bitrix_app.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "app.example.com",
        "BITRIX24_TOKEN_KEYS": "dGVzdC1rZXktMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=",
        "BITRIX24_APP_URL": "https://app.example.com",
        "BITRIX24_CLIENT_ID": "app.0000000000000.00000000",
        "BITRIX24_CLIENT_SECRET": secrets.token_urlsafe(30),
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=django_settings.BASE_DIR,
        env={**clean, **production, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_has_no_https_warnings_in_production() -> None:
    done = manage("check", "--deploy")
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "security.W004" not in report and "security.W008" not in report


def test_check_deploy_reports_https_turned_off() -> None:
    # The control: the check runs and sees these settings, so the test above can fail.
    done = manage("check", "--deploy", DJANGO_SECURE_SSL_REDIRECT="0", DJANGO_SECURE_HSTS_SECONDS="0")
    report = done.stdout + done.stderr
    assert "security.W004" in report and "security.W008" in report


def test_debug_never_redirects_to_https_or_sends_hsts() -> None:
    # The demo and the tests serve plain http: an environment asking for HTTPS changes nothing there.
    script = "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS)"
    production = manage("shell", "-c", script, DJANGO_SECURE_HSTS_SECONDS="600")
    # The last line: `shell` first says what it imported.
    assert production.stdout.splitlines()[-1:] == ["True 600"], production.stderr
    debug = manage(
        "shell",
        "-c",
        script,
        DJANGO_DEBUG="1",
        DJANGO_SECURE_SSL_REDIRECT="1",
        DJANGO_SECURE_HSTS_SECONDS="600",
    )
    assert debug.stdout.splitlines()[-1:] == ["False 0"], debug.stderr


# --- the DEBUG error page ----------------------------------------------------------------------

ACCESS = "access0token0aaaaaaaaaaaaaaaaaaaa"
REFRESH = "refresh0token0bbbbbbbbbbbbbbbbbbb"
APPLICATION = "application0token0ccccccccccccccc"
CODE = "oauth0code0ddddddddd"
WEBHOOK_SECRET = "webhook0secret0eeeeeee"
CLIENT_SECRET = "client0secret0ffffffffff"
REDIS_PASSWORD = "redis0password0gggg"
SECRETS = [ACCESS, REFRESH, APPLICATION, CODE, WEBHOOK_SECRET, CLIENT_SECRET, REDIS_PASSWORD]

MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"
FRAME_QUERY = {"DOMAIN": "portal.example.bitrix24.com", "PROTOCOL": "1", "LANG": "en", "APP_SID": "sid1"}
FRAME_FORM = {
    "AUTH_ID": ACCESS,
    "AUTH_EXPIRES": "3600",
    "REFRESH_ID": REFRESH,
    "APPLICATION_TOKEN": APPLICATION,
    "member_id": MEMBER_ID,
    "status": "L",
    "PLACEMENT": "DEFAULT",
}
EVENT_FORM = {
    "event": "ONCRMDEALUPDATE",
    "data[FIELDS][ID]": "7",
    "auth[access_token]": ACCESS,
    "auth[refresh_token]": REFRESH,
    "auth[application_token]": APPLICATION,
    "auth[member_id]": MEMBER_ID,
}


def failing_view(request: HttpRequest) -> HttpResponse:
    """A view that fails after reading a frame POST's or an event's tokens into its locals."""
    if request.GET.get("django_default"):
        request.exception_reporter_filter = SafeExceptionReporterFilter()  # type: ignore[attr-defined]
        request.exception_reporter_class = ExceptionReporter  # type: ignore[attr-defined]
    form = request.POST
    access_token = form.get("AUTH_ID") or form.get("auth[access_token]")
    parsed = {"member_id": MEMBER_ID, "auth": {"access_token": access_token, "expires": "3600"}}
    opened = SimpleNamespace(
        user=1, secret_inside=form.get("APPLICATION_TOKEN") or form.get("auth[application_token]")
    )
    raise RuntimeError(f"could not open the frame with {access_token} ({len(parsed)}, {opened.user})")


urlpatterns = [path("bitrix/app/", failing_view)]


@pytest.fixture
def debug_page(client, settings):
    settings.DEBUG = True
    settings.BITRIX24_WEBHOOK_URL = f"https://portal.example.bitrix24.com/rest/1/{WEBHOOK_SECRET}/"
    settings.BITRIX24_CLIENT_SECRET = CLIENT_SECRET
    settings.EXAMPLE_SERVICE_URL = f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"
    client.raise_request_exception = False

    def render(form: dict[str, str], **query: str) -> str:
        url = "/bitrix/app/?" + urlencode({**FRAME_QUERY, "code": CODE, **query})
        response = client.post(url, form)
        assert response.status_code == 500
        return response.content.decode()

    return render


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("form", [FRAME_FORM, EVENT_FORM], ids=["frame", "event"])
def test_the_debug_page_shows_no_secret(debug_page, form) -> None:
    page = debug_page(form)
    leaked = [s for s in SECRETS if s in page]
    assert not leaked
    # The page is the full report: the POST table, the GET parameters, frames and settings.
    assert "RuntimeError" in page and MEMBER_ID in page and "portal.example.bitrix24.com" in page
    assert "BITRIX24_WEBHOOK_URL" in page and "EXAMPLE_SERVICE_URL" in page
    assert "********************" in page


@pytest.mark.urls(__name__)
def test_django_default_page_would_show_them(debug_page) -> None:
    # The control: with Django's own filter and reporter the same failure prints the tokens.
    page = debug_page(FRAME_FORM, django_default="1")
    assert ACCESS in page and REFRESH in page and APPLICATION in page and CODE in page
