"""The REST method registry: ``@method("crm.deal.get", scope="crm")`` and what a handler gets.

A handler is ``def handler(call: Call) -> Any`` (or ``async def``). It returns the ``result``
value of the envelope, or a :class:`ListPage` for list methods (which adds ``next``/``total``).
It signals a Bitrix24 error by raising :class:`RestError` with the documented code and HTTP status.

Handlers registered here are served on every portal at ``/rest/<method>`` (OAuth ``auth=``) and
``/rest/<user>/<secret>/<method>`` (webhooks), inside ``batch``, with the leaky bucket, the
operating-time limit, the cost model and the faults applied by the REST layer around them.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.hooks import DataChange, notify

if TYPE_CHECKING:
    from sandbox.state import Sandbox
    from sandbox.store import AppInstall, Portal, Token, Webhook


class RestError(Exception):
    """A Bitrix24 error envelope: ``{"error": code, "error_description": description, **extra}``."""

    def __init__(self, code: str, description: str = "", status: int = 400, **extra: Any) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.description, **self.extra}


@dataclass(frozen=True)
class Auth:
    """Who is calling: an app's OAuth token or an inbound webhook.

    ``kind`` is ``"oauth"`` or ``"webhook"``; ``app`` is the calling app's installation on this
    portal (None for webhooks); ``scope`` is what the token or webhook was granted.
    """

    kind: str
    user_id: int
    scope: frozenset[str]
    token: Token | None = None
    webhook: Webhook | None = None
    app: AppInstall | None = None

    @property
    def client_id(self) -> str | None:
        return self.app.client_id if self.app else None

    @property
    def is_app(self) -> bool:
        return self.kind == "oauth"


@dataclass
class ListPage:
    """A page of a list method: rows plus ``total`` and ``next`` (None when there is no next page)."""

    rows: Any
    total: int
    next: int | None


@dataclass
class Call:
    """One method invocation (a REST request or one batch sub-call)."""

    sandbox: Sandbox
    portal: Portal
    auth: Auth
    method: str
    params: dict[str, Any]
    # Server time this call is charged by the cost model (seconds, before scaling).
    cost: float = 0.0
    in_batch: bool = False
    changes: list[DataChange] = field(default_factory=list)

    @property
    def user(self) -> dict[str, Any]:
        return self.portal.users[self.auth.user_id]

    @property
    def is_admin(self) -> bool:
        return self.auth.user_id == self.portal.admin_user_id or bool(self.user.get("IS_ADMIN"))

    def charge(self, seconds: float) -> None:
        """Add modelled server time (applied as latency and counted into operating time)."""
        self.cost += seconds

    def changed(self, event: str, object_id: int) -> None:
        """Announce a stored change to the data-change subscribers (and count the write)."""
        change = DataChange(
            portal=self.portal,
            event=event,
            object_id=object_id,
            user_id=self.auth.user_id,
            client_id=self.auth.client_id,
        )
        self.changes.append(change)
        notify(change)


Handler = Callable[[Call], Any | Awaitable[Any]]


@dataclass(frozen=True)
class MethodSpec:
    """What the REST layer needs to know about a method.

    ``scope`` None means every token may call it (profile, scope, methods, app.info...); a tuple
    means any one of those scopes suffices (user.search: user, user_brief or user_basic).
    ``write`` marks methods charged the per-write cost. ``batchable`` False gives
    ERROR_BATCH_METHOD_NOT_ALLOWED inside batch. ``app_only`` gives WRONG_AUTH_TYPE to webhooks.
    """

    name: str
    handler: Handler
    scope: str | tuple[str, ...] | None
    write: bool = False
    batchable: bool = True
    app_only: bool = False
    admin_only: bool = False

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes any one of which lets a caller in (empty: no scope needed)."""
        if self.scope is None:
            return ()
        return (self.scope,) if isinstance(self.scope, str) else self.scope

    def granted(self, scope: frozenset[str]) -> bool:
        """Whether a caller holding ``scope`` may call this method, as far as scopes go."""
        return not self.scopes or any(s in scope for s in self.scopes)

    async def run(self, call: Call) -> Any:
        result = self.handler(call)
        if inspect.isawaitable(result):
            result = await result
        return result


METHODS: dict[str, MethodSpec] = {}


def method(
    name: str,
    *,
    scope: str | tuple[str, ...] | None,
    write: bool = False,
    batchable: bool = True,
    app_only: bool = False,
    admin_only: bool = False,
) -> Callable[[Handler], Handler]:
    """Register the decorated function as REST method ``name`` (case-insensitive)."""

    def register(handler: Handler) -> Handler:
        key = name.lower()
        METHODS[key] = MethodSpec(
            name=key,
            handler=handler,
            scope=scope,
            write=write,
            batchable=batchable,
            app_only=app_only,
            admin_only=admin_only,
        )
        return handler

    return register


def lookup(name: str) -> MethodSpec | None:
    return METHODS.get(name.lower())
