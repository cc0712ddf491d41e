"""Methods every caller has: profile, scope, methods, server.time, app.info (portal side),
feature.get."""

from __future__ import annotations

from typing import Any

from sandbox.registry import METHODS, Call, RestError, method
from sandbox.state import ALL_SCOPES
from sandbox.store import PLANS
from sandbox.wire import iso

# feature.get codes and which plans have them.
FEATURES = {
    "rest_offline_extended": {"standard": "N", "enterprise": "Y"},
    "rest_auth_connector": {"standard": "N", "enterprise": "Y"},
}


@method("profile", scope=None)
def profile(call: Call) -> Any:
    user = call.user
    return {
        "ID": user["ID"],
        "ADMIN": call.is_admin,
        "NAME": user.get("NAME", ""),
        "LAST_NAME": user.get("LAST_NAME", ""),
        "PERSONAL_GENDER": user.get("PERSONAL_GENDER", ""),
        "PERSONAL_PHOTO": user.get("PERSONAL_PHOTO", ""),
        "TIME_ZONE": user.get("TIME_ZONE", ""),
        "TIME_ZONE_OFFSET": int(user.get("TIME_ZONE_OFFSET") or 0),
    }


@method("scope", scope=None)
def scope(call: Call) -> Any:
    if _truthy(call.params.get("full")):
        return list(ALL_SCOPES)
    return sorted(call.auth.scope)


@method("methods", scope=None)
def methods(call: Call) -> Any:
    wanted = call.params.get("scope")
    full = _truthy(call.params.get("full"))
    names = []
    for name, spec in sorted(METHODS.items()):
        if wanted is not None and (spec.scope or "") != wanted:
            continue
        if not full and spec.scope is not None and spec.scope not in call.auth.scope:
            continue
        names.append(name)
    return ["batch", *names] if wanted is None else names


@method("server.time", scope=None)
def server_time(call: Call) -> Any:
    return iso(call.sandbox.clock.time())


@method("app.info", scope=None)
def app_info(call: Call) -> Any:
    app = call.auth.app
    if app is None:
        raise RestError("ACCESS_DENIED", "Access denied! Application context required", 400)
    plan = PLANS[call.portal.plan]
    return {
        "ID": app.app_id,
        "CODE": app.code,
        "VERSION": app.version,
        "STATUS": app.status,
        "INSTALLED": app.installed,
        "PAYMENT_EXPIRED": "Y" if app.payment_expired else "N",
        "DAYS": app.days,
        "LANGUAGE_ID": "en",
        "LICENSE": f"en_{plan['license_family']}",
        "LICENSE_TYPE": plan["license_type"],
        "LICENSE_FAMILY": plan["license_family"],
    }


@method("feature.get", scope=None)
def feature_get(call: Call) -> Any:
    code = str(call.params.get("CODE", call.params.get("code", "")))
    plans = FEATURES.get(code)
    return {"value": plans.get(call.portal.plan, "N") if plans else "N"}


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "y")
