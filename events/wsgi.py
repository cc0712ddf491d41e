"""The web process's WSGI entry point: the whole Django site, with a lean lane for Bitrix24 events.

Every request except those to the event receiver goes through Django's ``WSGIHandler`` with all
of ``settings.MIDDLEWARE``. Requests to the receiver (``/bitrix/events/``) go through a second
``WSGIHandler`` built without the middleware the receiver never uses: sessions, authentication and
messages (Bitrix24 has no session), CSRF (the view is csrf-exempt; authenticity is the
application_token), static files (nothing static lives there) and frame options (the answer is
JSON, never framed). Everything else in ``settings.MIDDLEWARE`` — security headers and redirects,
and any middleware added later — still runs, and the view is the same Django view, reached through
Django's URL resolver, signals (connection management) and exception handling.

Why: those middleware cost ~0.2 ms of CPU per request, about half of a forged event's whole path,
at the thousand events per second the receiver is sized for (docs/events.md, Benchmark).

    granian --interface wsgi events.wsgi:application      (deploy/web.sh)
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

#: Middleware the event receiver does not need (see the module docstring).
RECEIVER_SKIPS = frozenset(
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


class ReceiverHandler(WSGIHandler):
    """Django's WSGI handler with ``settings.MIDDLEWARE`` minus :data:`RECEIVER_SKIPS`."""

    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler.load_middleware reads settings.MIDDLEWARE and nothing else; it runs once, at
        # start-up, before any request is served, so swapping the list around it is race-free.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = [path for path in full if path not in RECEIVER_SKIPS]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


class Application:
    """Routes the receiver's path to :class:`ReceiverHandler`, everything else to the full site."""

    def __init__(self) -> None:
        django.setup(set_prefix=False)
        self.site = WSGIHandler()
        self.receiver = ReceiverHandler()
        self.receiver_path = reverse("events:receive")
        # Everything loaded so far (Django, the apps, their modules) lives as long as the process:
        # moved out of the collector's sight, it is no longer scanned by every full collection,
        # which holds the GIL and stalls every request in flight (docs/events.md).
        gc.freeze()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == self.receiver_path:
            return self.receiver(environ, start_response)
        return self.site(environ, start_response)


application = Application()
