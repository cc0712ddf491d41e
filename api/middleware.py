"""/api/v1/ is answered right after the security middleware, past the browser's middleware.

Sessions, locale, CSRF, authentication, messages, frame options and the login lockout serve the
console and the app's pages; an API request carries a key, not a cookie, and none of them has
anything to do for it, yet together they cost about a third of a cached answer's time
(docs/api.md, "Figures"). What sits above this middleware (probes, the request's log scope and
id, SecurityMiddleware's HTTPS redirect and headers) still runs for every API request.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from .errors import error_response

API_PREFIX = "/api/v1/"


class ApiMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return error_response(404, "not_found", "no such resource")
        request.resolver_match = match
        response: HttpResponse = match.func(request, *match.args, **match.kwargs)
        return response
