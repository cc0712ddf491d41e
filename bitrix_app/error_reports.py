"""What an error report (the DEBUG error page, error e-mails) may show: never a Bitrix24 secret.

Bitrix24 sends secrets as ordinary request parameters: a frame POST carries ``AUTH_ID``,
``REFRESH_ID`` and ``APPLICATION_TOKEN``, an event ``auth[access_token]`` and
``auth[application_token]``, the OAuth callback ``code``. Django's default filter hides only what
a view marked with ``sensitive_post_parameters`` (and nothing at all while DEBUG is on, which is how
the demo runs), and shows GET parameters as they are. So here:

* parameters whose name looks secret (:func:`is_secret`: token, secret, auth, ... but not the
  portal context beside them, such as ``auth[member_id]``) are hidden in POST, GET, the query
  string and in dicts and QueryDicts among the frames' local variables, whatever DEBUG says;
* the values of those parameters are also cut out of everything else the report prints (frame
  variables such as ``request`` or a parsed claim, the exception message, the request URL);
* settings and environment entries are hidden by name (Django's list plus webhooks), and
  passwords inside URLs (``DATABASE_URL``, ``REDIS_URL``) are masked.

Enabled by ``DEFAULT_EXCEPTION_REPORTER_FILTER`` and ``DEFAULT_EXCEPTION_REPORTER`` in settings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.http import HttpRequest, QueryDict
from django.utils.datastructures import MultiValueDict
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

__all__ = ["SECRET_PARAMETER", "SecretsExceptionReporter", "SecretsReporterFilter", "is_secret"]

# Names of request parameters (and frame variables) that carry secrets: AUTH_ID, REFRESH_ID,
# APPLICATION_TOKEN, auth[access_token], client_secret, password; and the OAuth callback's
# ``code``, ``state`` and the app page's signed ``frame`` token, matched as whole names.
SECRET_PARAMETER = re.compile(
    r"token|secret|auth|refresh|passw|signature|(?:^|\[)(?:code|state|frame)(?:\]|$)", re.IGNORECASE
)
# ... except the context that comes in the same ``auth`` block and says which portal, user and
# endpoints are involved: what the report is read for.
_PUBLIC_PARAMETER = re.compile(
    r"(?:^|\[)(?:member_id|domain|user_id|status|scope|client_endpoint|server_endpoint|expires|expires_in)\]?$"
    r"|^AUTH_EXPIRES$",
    re.IGNORECASE,
)
_SUBSTITUTE = SafeExceptionReporterFilter.cleansed_substitute
# Shorter values are not cut out of the rest of the report: "Y" or "1" would mangle everything.
_MIN_SECRET_LENGTH = 6
# scheme://user:password@host → scheme://user:********@host
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@", re.IGNORECASE)


def is_secret(name: str) -> bool:
    """Whether a parameter or variable called ``name`` holds a secret (see :data:`SECRET_PARAMETER`)."""
    return bool(SECRET_PARAMETER.search(name)) and not _PUBLIC_PARAMETER.search(name)


def secret_values(request: HttpRequest | None) -> list[str]:
    """The values of the request's secret-named GET and POST parameters, longest first."""
    if request is None:
        return []
    found: set[str] = set()
    for params in (_get(request), _post(request)):
        for key, values in params.lists():
            if is_secret(key):
                found.update(str(v) for v in values if len(str(v)) >= _MIN_SECRET_LENGTH)
    # Longest first, so a secret containing a shorter one is cut out whole.
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (and every URL password) masked."""
    for secret in secrets:
        text = text.replace(secret, _SUBSTITUTE)
    return _URL_PASSWORD.sub(rf"\g<head>{_SUBSTITUTE}@", text)


def _get(request: HttpRequest) -> MultiValueDict:
    return getattr(request, "GET", None) or QueryDict()


def _post(request: HttpRequest) -> MultiValueDict:
    # Parsing the body can itself fail (too many fields, too large, malformed multipart): the report
    # of that very error must still render.
    try:
        return request.POST if request.method == "POST" else QueryDict()
    except Exception:
        return QueryDict()


class SecretsReporterFilter(SafeExceptionReporterFilter):
    """Hides Bitrix24 secrets by parameter name, always (DEBUG or not); see the module docstring."""

    hidden_settings = re.compile(
        SafeExceptionReporterFilter.hidden_settings.pattern + "|WEBHOOK|REFRESH", re.IGNORECASE
    )

    def is_active(self, request: HttpRequest | None) -> bool:
        # Django turns its filter off under DEBUG; the demo runs with DEBUG on and its error page
        # must not show the tokens of the portal that opened it.
        return True

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        # str(): a lazy string (django-axes' settings) passes isinstance(…, str) but isn't one.
        return redact(str(cleansed), ()) if isinstance(cleansed, str) else cleansed

    def get_safe_request_meta(self, request: HttpRequest | None) -> dict[str, Any]:
        meta = super().get_safe_request_meta(request)
        if "QUERY_STRING" in meta and isinstance(meta["QUERY_STRING"], str):
            meta["QUERY_STRING"] = _cleansed_query(meta["QUERY_STRING"])
        secrets = secret_values(request)
        return {k: redact(v, secrets) if isinstance(v, str) else v for k, v in meta.items()}

    def get_cleansed_multivaluedict(self, request: HttpRequest | None, multivaluedict: Any) -> Any:
        cleansed = super().get_cleansed_multivaluedict(request, multivaluedict).copy()
        for key in cleansed:
            if is_secret(str(key)):
                cleansed.setlist(key, [_SUBSTITUTE])
        return cleansed

    def get_post_parameters(self, request: HttpRequest | None) -> Any:
        if request is None:
            return {}
        return self.get_cleansed_multivaluedict(request, _post(request))

    def get_get_parameters(self, request: HttpRequest | None) -> Any:
        """GET parameters with secret ones hidden (Django's reporter shows request.GET as is)."""
        if request is None:
            return {}
        return self.get_cleansed_multivaluedict(request, _get(request))

    def cleanse_special_types(self, request: HttpRequest | None, value: Any) -> Any:
        value = super().cleanse_special_types(request, value)
        if isinstance(value, Mapping) and not isinstance(value, MultiValueDict):
            return _cleansed_mapping(value)
        return value

    def get_traceback_frame_variables(self, request: HttpRequest | None, tb_frame: Any) -> Any:
        return [
            (name, _SUBSTITUTE if is_secret(name) else value)
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]


class SecretsExceptionReporter(ExceptionReporter):
    """Django's reporter with GET parameters filtered and the request's secrets cut out of the rest.

    Frame variables are already printed to text here, so a secret inside any object (the request's
    repr with its query, a parsed claim, a bytes body) is cut out by value.
    """

    def get_traceback_data(self) -> dict[str, Any]:
        data = super().get_traceback_data()
        secrets = secret_values(self.request)
        for frame in data["frames"]:
            if "vars" in frame:
                frame["vars"] = [(name, redact(text, secrets)) for name, text in frame["vars"]]
            if frame.get("exc_cause") is not None:
                frame["exc_cause"] = redact(str(frame["exc_cause"]), secrets)
        for key in ("exception_value", "exception_notes", "request_insecure_uri"):
            if isinstance(data.get(key), str):
                data[key] = redact(data[key], secrets)
        if self.request is not None:
            get_parameters = getattr(self.filter, "get_get_parameters", None)
            if get_parameters is not None:
                data["request_GET_items"] = get_parameters(self.request).items()
        return data


def _cleansed_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, _SUBSTITUTE if is_secret(k) else v) for k, v in pairs], safe="*[]")


def _cleansed_mapping(value: Mapping[Any, Any], depth: int = 0) -> Any:
    """A copy with secret-named keys hidden, nested mappings included (a decoded event's ``auth``).

    Bounded in depth (a self-referencing dict must not recurse forever) and tolerant of mappings
    that fail to iterate: what isn't cleansed here is still cut out by value in the reporter.
    """
    if depth > 20:
        return value
    try:
        items = list(value.items())
    except Exception:
        return value
    return {
        k: _SUBSTITUTE
        if is_secret(str(k))
        else (_cleansed_mapping(v, depth + 1) if isinstance(v, Mapping) else v)
        for k, v in items
    }
