"""`manage.py bitrix doctor`: is this deployment's configuration safe to face Bitrix24 and the internet?

In the spirit of Shopify's app security checklist: one line per check, ``ok`` or ``FAIL`` with what
to change, and exit 1 when anything failed (a release pipeline stops there). Every check reads the
settings this process loaded, so run it with the production environment:

    DJANGO_SETTINGS_MODULE=bitrix_app.settings python manage.py bitrix doctor

It also runs Django's own deployment checks (``check --deploy``): a warning there is a failure here.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from django.conf import settings
from django.core import checks as django_checks

from bitrix_app.beat import LEASE_NAME as BEAT_LEASE_NAME
from bitrix_app.client_ip import parse_networks
from bitrix_app.redis_client import redis_client

from ..conf import app_settings

NAME = "doctor"
HELP = "Check the deployment's settings (DEBUG, keys, hosts, HTTPS, cookies, framing, OAuth, Redis, beat)."

# The OAuth servers Bitrix24 runs (docs: ../shared protocol §2.1); any other host would be handed
# the client secret and every refresh token.
BITRIX24_OAUTH_HOSTS = frozenset({"oauth.bitrix.info", "oauth.bitrix24.tech"})
ONE_YEAR = 31_536_000
SINGLETON_SCHEDULER = "bitrix_app.beat:SingletonScheduler"

Result = tuple[bool, str]


def _debug() -> Iterator[Result]:
    yield (not settings.DEBUG, "DEBUG is off" if not settings.DEBUG else "DEBUG is on: set DJANGO_DEBUG=0")
    sandbox = "sandbox" in settings.INSTALLED_APPS
    yield (not sandbox, "the sandbox app is not installed" if not sandbox else "unset BITRIX24_SANDBOX")


def _secret_key() -> Iterator[Result]:
    key = settings.SECRET_KEY
    strong = len(key) >= 50 and len(set(key)) >= 5 and not key.startswith("django-insecure")
    derived = key == "insecure-development-key-only-for-DEBUG"
    yield (
        strong and not derived,
        "DJANGO_SECRET_KEY is set and long"
        if strong and not derived
        else "DJANGO_SECRET_KEY must be set: 50+ random characters",
    )


def _token_keys() -> Iterator[Result]:
    keys = app_settings.token_keys
    if not keys:
        yield (
            False,
            "BITRIX24_TOKEN_KEYS is empty: tokens would be encrypted with a key derived from SECRET_KEY",
        )
        return
    try:
        for key in keys:
            Fernet(key.encode())
    except (ValueError, TypeError):
        yield False, "BITRIX24_TOKEN_KEYS holds a key that is not a Fernet key (manage.py generate_token_key)"
        return
    yield True, f"BITRIX24_TOKEN_KEYS holds {len(keys)} Fernet key(s)"


def _registration() -> Iterator[Result]:
    ok = bool(app_settings.client_id and app_settings.client_secret)
    yield (
        ok,
        "the app's client_id and client_secret are set"
        if ok
        else "set BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET",
    )


def _hosts() -> Iterator[Result]:
    hosts = list(settings.ALLOWED_HOSTS)
    app_host = urlsplit(app_settings.app_url).hostname or ""
    if not hosts or "*" in hosts:
        yield False, "DJANGO_ALLOWED_HOSTS must list the app's host names, not '*'"
    elif not any(h == app_host or (h.startswith(".") and app_host.endswith(h)) for h in hosts):
        yield False, f"DJANGO_ALLOWED_HOSTS does not include {app_host!r}, the host of BITRIX24_APP_URL"
    else:
        yield True, f"ALLOWED_HOSTS includes {app_host}"


def _https() -> Iterator[Result]:
    https = urlsplit(app_settings.app_url).scheme == "https"
    yield (
        https,
        "BITRIX24_APP_URL is https" if https else "BITRIX24_APP_URL must be https:// (Bitrix24 calls it)",
    )
    yield (
        bool(settings.SECURE_SSL_REDIRECT),
        "http is redirected to https" if settings.SECURE_SSL_REDIRECT else "set DJANGO_SECURE_SSL_REDIRECT=1",
    )
    hsts = settings.SECURE_HSTS_SECONDS >= ONE_YEAR
    yield hsts, "HSTS for a year or more" if hsts else f"DJANGO_SECURE_HSTS_SECONDS below {ONE_YEAR}"
    proxy = bool(settings.SECURE_PROXY_SSL_HEADER)
    yield (
        proxy,
        "the proxy's X-Forwarded-Proto is read"
        if proxy
        else "DJANGO_SECURE_PROXY_SSL_HEADER is empty: behind nginx every request looks like http",
    )
    allow_http = app_settings.allow_http
    yield not allow_http, "http endpoints are refused" if not allow_http else "unset BITRIX24_ALLOW_HTTP"


def _cookies() -> Iterator[Result]:
    secure = settings.SESSION_COOKIE_SECURE and settings.CSRF_COOKIE_SECURE
    yield bool(secure), "cookies are https-only" if secure else "set DJANGO_SECURE_COOKIES=1"
    yield (
        bool(settings.SESSION_COOKIE_HTTPONLY),
        "the session cookie is HttpOnly"
        if settings.SESSION_COOKIE_HTTPONLY
        else "SESSION_COOKIE_HTTPONLY is off",
    )


def _framing() -> Iterator[Result]:
    # Pages are DENY by default; the app and placement pages allow their own portal only
    # (portals/views/framing.py). Without the middleware every other page could be framed.
    middleware = "django.middleware.clickjacking.XFrameOptionsMiddleware" in settings.MIDDLEWARE
    deny = settings.X_FRAME_OPTIONS == "DENY"
    yield (
        middleware and deny,
        "pages refuse framing except the app's, by its portal"
        if middleware and deny
        else "keep XFrameOptionsMiddleware with X_FRAME_OPTIONS = 'DENY'",
    )


def _oauth_servers() -> Iterator[Result]:
    servers = app_settings.oauth_servers
    if not servers:
        yield False, "BITRIX24_OAUTH_SERVERS is empty"
        return
    for server in servers:
        parts = urlsplit(server)
        if parts.scheme != "https":
            yield False, f"OAuth server {server} is not https"
        elif parts.hostname not in BITRIX24_OAUTH_HOSTS:
            yield False, f"OAuth server {server} is not Bitrix24's: it would receive the client secret"
    if all(urlsplit(s).scheme == "https" and urlsplit(s).hostname in BITRIX24_OAUTH_HOSTS for s in servers):
        yield True, f"OAuth servers: {', '.join(servers)}"


def _networks() -> Iterator[Result]:
    everyone = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
    for name in ("TRUSTED_PROXIES", "METRICS_ALLOWED_IPS"):
        networks = parse_networks(getattr(settings, name))
        wide = [str(n) for n in networks if n in everyone]
        yield (
            not wide,
            f"{name} is narrow" if not wide else f"{name} includes {', '.join(wide)}: every address",
        )


def _redis() -> Iterator[Result]:
    processes = int(os.environ.get("WEB_CONCURRENCY") or 1)
    client = redis_client()
    if client is None:
        yield (
            processes <= 1,
            "single-process mode (no REDIS_URL) with one web process"
            if processes <= 1
            else f"WEB_CONCURRENCY={processes} without REDIS_URL: processes would not share limits or locks",
        )
        return
    try:
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure to reach Redis is the finding
        yield False, f"REDIS_URL does not answer ({type(e).__name__})"
        return
    yield True, "Redis answers"


def _one_beat() -> Iterator[Result]:
    scheduler = str(getattr(settings, "CELERY_BEAT_SCHEDULER", ""))
    yield (
        scheduler == SINGLETON_SCHEDULER,
        "beat sends only while it holds the beat lease (a second beat stands by)"
        if scheduler == SINGLETON_SCHEDULER
        else f"CELERY_BEAT_SCHEDULER is {scheduler or 'celery default'!r}: two beats would queue every "
        f"periodic task twice; use {SINGLETON_SCHEDULER}",
    )
    client = redis_client()
    if client is None:
        return
    try:
        holder = client.get(f"{settings.REDIS_KEY_PREFIX}{BEAT_LEASE_NAME}")
    except Exception as e:  # noqa: BLE001 - reported as the finding
        yield False, f"the beat lease can't be read ({type(e).__name__})"
        return
    # Advisory: a release runs the doctor before the beat starts, so no holder is no failure.
    yield True, "a beat holds the lease" if holder else "no beat holds the lease yet"


def _django_deploy_checks() -> Iterator[Result]:
    messages = [
        m
        for m in django_checks.run_checks(include_deployment_checks=True)
        if m.level >= django_checks.WARNING and not m.is_silenced()
    ]
    for message in messages:
        yield False, f"check --deploy: {message.id}: {message.msg}"
    if not messages:
        yield True, "check --deploy is clean"


CHECKS: dict[str, Callable[[], Iterator[Result]]] = {
    "debug": _debug,
    "secret key": _secret_key,
    "token keys": _token_keys,
    "registration": _registration,
    "hosts": _hosts,
    "https": _https,
    "cookies": _cookies,
    "framing": _framing,
    "oauth servers": _oauth_servers,
    "addresses": _networks,
    "redis": _redis,
    "one beat": _one_beat,
    "django": _django_deploy_checks,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print failures only")


def handle(options: dict[str, Any], *, stdout: Any, stderr: Any) -> int:
    failed = 0
    for name, check in CHECKS.items():
        for ok, message in check():
            failed += not ok
            if not ok:
                stdout.write(f"FAIL {name}: {message}\n")
            elif not options.get("quiet"):
                stdout.write(f"ok   {name}: {message}\n")
    stdout.write(f"{failed} failed\n" if failed else "all checks passed\n")
    return 1 if failed else 0
