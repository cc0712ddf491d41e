"""REST methods of the lifecycle: event.*, event.offline.*, placement.*, feature.get.

Registered on the core's method registry; each handler is thin: it finds the calling app's
registrations and hands the parameters to `bindings` / `offline`, which own the semantics.
"""

from __future__ import annotations

from typing import Any

from sandbox.lifecycle import bindings, core, service
from sandbox.lifecycle.bindings import AppRegistrations
from sandbox.lifecycle.errors import LifecycleError
from sandbox.lifecycle.service import registrations
from sandbox.registry import Call, ListPage, method

FEATURES = ("rest_offline_extended", "rest_auth_connector")


def _regs(call: Call) -> AppRegistrations:
    """The calling app's registrations. `app_only` methods never see a webhook, but an app whose
    installation is gone has no registrations to touch."""
    app = call.auth.app
    if app is None or not app.present:
        raise LifecycleError(
            "WRONG_AUTH_TYPE", "Current authorization type is denied for this method", status=403
        )
    return registrations(app)


def _require_admin(call: Call) -> None:
    if not call.is_admin:
        raise LifecycleError("ACCESS_DENIED", "Access denied! Admin permissions required", status=403)


@method("event.bind", scope=None, app_only=True, write=True)
def event_bind(call: Call) -> bool:
    return bindings.event_bind(_regs(call), call.params, user_id=call.auth.user_id, is_admin=call.is_admin)


@method("event.unbind", scope=None, app_only=True, write=True)
def event_unbind(call: Call) -> dict[str, int]:
    return bindings.event_unbind(_regs(call), call.params, user_id=call.auth.user_id, is_admin=call.is_admin)


@method("event.get", scope=None, app_only=True)
def event_get(call: Call) -> list[dict[str, Any]]:
    return bindings.event_get(_regs(call), user_id=call.auth.user_id, is_admin=call.is_admin)


@method("events", scope=None)
def events_list(call: Call) -> list[str]:
    """Event names the portal offers (the `events` method); `SCOPE` narrows to one scope's events."""
    scope = str(call.params.get("SCOPE") or call.params.get("scope") or "").lower()
    names = sorted(bindings.KNOWN_EVENTS)
    if scope == "crm":
        return [n for n in names if n.startswith("ONCRM")]
    return names


def _offline_extended(call: Call) -> bool:
    return core.runtime(call.sandbox).offline_extended.get(call.portal.member_id, True)


@method("event.offline.get", scope=None, app_only=True, write=True)
def event_offline_get(call: Call) -> dict[str, Any]:
    _require_admin(call)
    return _regs(call).offline.get(call.params, extended=_offline_extended(call))


@method("event.offline.clear", scope=None, app_only=True, write=True)
def event_offline_clear(call: Call) -> bool:
    _require_admin(call)
    return _regs(call).offline.clear(call.params)


@method("event.offline.error", scope=None, app_only=True, write=True)
def event_offline_error(call: Call) -> bool:
    _require_admin(call)
    return _regs(call).offline.error(call.params)


@method("event.offline.list", scope=None, app_only=True)
def event_offline_list(call: Call) -> ListPage:
    _require_admin(call)
    rows, total, following = _regs(call).offline.list(call.params)
    return ListPage(rows=rows, total=total, next=following)


@method("feature.get", scope=None)
def feature_get(call: Call) -> dict[str, str]:
    """feature.get: rest_offline_extended follows the per-portal switch (on by default);
    rest_auth_connector needs a Professional-or-higher plan (the sandbox's enterprise)."""
    code = str(call.params.get("CODE") or call.params.get("code") or "").strip()
    if not code or code == "0":
        raise LifecycleError("CODE_EMPTY", "CODE can't be empty")
    if code == "rest_offline_extended":
        return {"value": "Y" if _offline_extended(call) else "N"}
    if code == "rest_auth_connector":
        return {"value": "Y" if call.portal.plan == "enterprise" else "N"}
    return {"value": "Y"}  # unknown codes answer Y, as the docs warn


@method("placement.bind", scope="placement", app_only=True, write=True)
def placement_bind(call: Call) -> bool:
    return bindings.placement_bind(_regs(call), call.params, is_admin=call.is_admin)


@method("placement.unbind", scope="placement", app_only=True, write=True)
def placement_unbind(call: Call) -> dict[str, int]:
    return bindings.placement_unbind(_regs(call), call.params, is_admin=call.is_admin)


@method("placement.get", scope="placement", app_only=True)
def placement_get(call: Call) -> list[dict[str, Any]]:
    return bindings.placement_get(_regs(call), is_admin=call.is_admin)


@method("placement.list", scope="placement", app_only=True)
def placement_list(call: Call) -> list[str]:
    """Placement codes available to the app (placement.list), by SCOPE / FULL as documented."""
    return bindings.placement_list(call.params, granted=call.auth.scope)


@method("event.test", scope=None, app_only=True)
def event_test(call: Call) -> int:
    """event.test: fires ONAPPTEST with the call's parameters under data[QUERY] to bound handlers."""
    app = call.auth.app
    if app is None or not app.present:
        raise LifecycleError(
            "WRONG_AUTH_TYPE", "Current authorization type is denied for this method", status=403
        )
    service.events_deliver(
        call.sandbox,
        portal=call.portal,
        event="ONAPPTEST",
        data={"QUERY": dict(call.params)},
        acting_user=call.auth.user_id,
        app=app,
    )
    return 1
