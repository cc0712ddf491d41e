"""The error the lifecycle's REST methods and actions raise.

`LifecycleError` is the core's RestError (code, description, HTTP status, extra envelope keys), so the
REST layer renders it through its one error choke point; the alias keeps the lifecycle's pure modules
readable on their own.
"""

from __future__ import annotations

from sandbox.registry import RestError


class LifecycleError(RestError):
    """A Bitrix24 error envelope raised by event/placement/offline methods."""


class ActionError(Exception):
    """A portal-page or control action that cannot run in the current state (HTTP 409 on the control API)."""
