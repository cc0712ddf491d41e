"""The web process's WSGI entry point: the whole Django site, with a lean lane for machine clients.

Requests from machines go through a second ``WSGIHandler`` built without the middleware that
serves browsers: the Bitrix24 event receiver (``/bitrix/events/``) and the outward API
(``/api/v1/``). They carry an application token or an API key, never a session: sessions,
authentication and messages, CSRF (their views are csrf-exempt), the login lockout, locale, static
files (nothing static lives there) and frame options (the answers are JSON, never framed) have
nothing to do for them. Everything else in ``settings.MIDDLEWARE`` — the probes, the request's log
scope, security headers and redirects, and any middleware added later — still runs, and the views
are the same Django views, reached through Django's URL resolver, signals (connection management)
and exception handling. Every other request goes through Django's handler with all of
``settings.MIDDLEWARE``.

Why: on these paths those middleware cost more CPU than much of the work itself (measured:
docs/events.md, Benchmark; docs/api.md, Figures).

    granian --interface wsgi bitrix_app.wsgi:application      (deploy/web.sh)
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bitrix_app.settings")

import django  # noqa: E402  (the settings module must be chosen first)
from django.conf import settings  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.urls import reverse  # noqa: E402

#: Middleware the machine clients' requests do not need (see the module docstring).
LEAN_SKIPS = frozenset(
    {
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
        "django.middleware.locale.LocaleMiddleware",
        "axes.middleware.AxesMiddleware",
    }
)


#: Paths under this prefix take the lean lane (the outward API; its docs page is a browser's).
API_PREFIX = "/api/v1/"


class LeanHandler(WSGIHandler):
    """Django's WSGI handler with ``settings.MIDDLEWARE`` minus :data:`LEAN_SKIPS`."""

    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler.load_middleware reads settings.MIDDLEWARE and nothing else; it runs once, at
        # start-up, before any request is served, so swapping the list around it is race-free.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = [path for path in full if path not in LEAN_SKIPS]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


class Application:
    """Routes the receiver's path and the API to :class:`LeanHandler`, everything else to the
    full site."""

    def __init__(self) -> None:
        django.setup(set_prefix=False)
        self.site = WSGIHandler()
        self.lean = LeanHandler()
        self.receiver_path = reverse("events:receive")
        # Everything loaded so far (Django, the apps, their modules) lives as long as the process:
        # moved out of the collector's sight, it is no longer scanned by every full collection,
        # which holds the GIL and stalls every request in flight (docs/events.md).
        gc.freeze()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == self.receiver_path or path.startswith(API_PREFIX):
            return self.lean(environ, start_response)
        return self.site(environ, start_response)


application = Application()
