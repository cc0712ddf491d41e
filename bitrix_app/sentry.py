"""Sentry, when ``SENTRY_DSN`` is set: errors of the web and worker processes, without secrets.

``send_default_pii`` stays off (no cookies, no user, no client address). What the SDK still
collects passes through :func:`scrub` first: the value of every key naming a secret (the same rule
as the logs: tokens, auth blocks, client secret, passwords) is replaced at any depth, query strings
and the command line are dropped (a frame's GET may carry AUTH_ID, ``--webhook`` a webhook's URL),
and URLs keep only scheme and host (an inbound webhook's path is its secret).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from bitrix_app.logs import HIDDEN, masked


def _origin(url: Any) -> Any:
    if not isinstance(url, str) or "://" not in url:
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/{HIDDEN}" if parts.path.strip("/") else url


def scrub(event: dict[str, Any], hint: Any = None) -> dict[str, Any]:
    """``event`` (an error, a transaction or a breadcrumb) without secret values; never drops it."""
    event = masked(event)
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("query_string", None)
        request.pop("cookies", None)
        if "url" in request:
            request["url"] = _origin(request["url"])
    extra = event.get("extra")
    if isinstance(extra, dict):
        extra.pop("sys.argv", None)  # `manage.py bitrix call --webhook URL`: the URL is a secret
    crumbs = event.get("breadcrumbs")
    for crumb in crumbs.get("values", []) if isinstance(crumbs, dict) else []:
        _scrub_crumb(crumb)
    return event


def _scrub_crumb(crumb: dict[str, Any]) -> None:
    data = crumb.get("data")
    if isinstance(data, dict):
        for key in ("url", "http.query", "http.fragment"):
            if key in data:
                data[key] = _origin(data[key]) if key == "url" else HIDDEN


def scrub_breadcrumb(crumb: dict[str, Any], hint: Any = None) -> dict[str, Any]:
    scrubbed: dict[str, Any] = masked(crumb)
    _scrub_crumb(scrubbed)
    return scrubbed


def sentry_init(*, dsn: str, environment: str, traces_sample_rate: float = 0.0) -> bool:
    """Start the SDK (Django and Celery integrations) when ``dsn`` is set; returns whether it did."""
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        send_default_pii=False,
        traces_sample_rate=traces_sample_rate,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        before_send=scrub,
        before_send_transaction=scrub,
        before_breadcrumb=scrub_breadcrumb,
        # Local variables of a frame can hold a token pair: stack traces carry code, not values.
        include_local_variables=False,
        max_request_body_size="never",
    )
    return True
