"""Methods every caller has: profile, scope, methods, method.get, server.time, app.info (portal
side), app.option.get/set, feature.get."""

from __future__ import annotations

from typing import Any

from sandbox.registry import METHODS, Call, RestError, lookup, method
from sandbox.state import PORTAL_SCOPES
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
    """The caller's scopes; with full=true every scope the portal has (RD common/system/scope.md)."""
    if _truthy(call.params.get("full")):
        return list(PORTAL_SCOPES)
    return sorted(call.auth.scope)


@method("methods", scope=None)
def methods(call: Call) -> Any:
    wanted = call.params.get("scope")
    full = _truthy(call.params.get("full"))
    names = []
    for name, spec in sorted(METHODS.items()):
        if wanted is not None and wanted not in (spec.scopes or ("",)):
            continue
        if not full and not spec.granted(call.auth.scope):
            continue
        names.append(name)
    return ["batch", *names] if wanted is None else names


@method("method.get", scope=None)
def method_get(call: Call) -> Any:
    """Whether a method exists on the portal and whether this caller may call it
    (RD common/system/method-get.md); no name gives false for both."""
    name = str(call.params.get("name") or call.params.get("NAME") or "").strip()
    if not name:
        return {"isExisting": False, "isAvailable": False}
    if name.lower() == "batch":
        return {"isExisting": True, "isAvailable": True}
    spec = lookup(name)
    if spec is None:
        return {"isExisting": False, "isAvailable": False}
    available = spec.granted(call.auth.scope) and (call.auth.is_app or not spec.app_only)
    return {"isExisting": True, "isAvailable": available}


@method("server.time", scope=None)
def server_time(call: Call) -> Any:
    return iso(call.sandbox.clock.time())


@method("app.info", scope=None)
def app_info(call: Call) -> Any:
    """The calling app's installation; a webhook gets its scopes and the portal's licence.

    RD common/system/app-info.md answers 400 ACCESS_DENIED outside app context; both official
    SDKs model the webhook answer {SCOPE, LICENSE} and the Python SDK's integration test gets it
    from a real portal, so a webhook gets that (docs/sandbox.md, "Where sources disagree").
    """
    app = call.auth.app
    plan = PLANS[call.portal.plan]
    if app is None:
        assert call.auth.webhook is not None
        return {"SCOPE": list(call.auth.webhook.scope), "LICENSE": f"en_{plan['license_family']}"}
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


def _app_options(call: Call) -> dict[str, Any]:
    """The calling app's stored options. They live on the installation, so they survive an
    uninstall without CLEAN and come back on reinstall (RD settings/app-uninstallation.md)."""
    app = call.auth.app
    if app is None:
        raise RestError("AccessException", "Application context required", 400)
    options: dict[str, Any] = app.extra.setdefault("options", {})
    return options


@method("app.option.get", scope=None)
def app_option_get(call: Call) -> Any:
    """One option (null when unset) or all of them (RD common/settings/app-option-get.md)."""
    options = _app_options(call)
    name = call.params.get("option")
    if name in (None, ""):
        return dict(options)
    return options.get(str(name))


@method("app.option.set", scope=None, write=True)
def app_option_set(call: Call) -> Any:
    """Write options; administrators only (RD common/settings/app-option-set.md)."""
    options = _app_options(call)
    if not call.is_admin:
        raise RestError("AccessException", "Administrator authorization required", 400)
    given = call.params.get("options")
    if not isinstance(given, dict) or not given:
        raise RestError("ArgumentNullException", "options is empty", 400)
    options.update({str(key): value for key, value in given.items()})
    return True


@method("feature.get", scope=None)
def feature_get(call: Call) -> Any:
    code = str(call.params.get("CODE", call.params.get("code", "")))
    plans = FEATURES.get(code)
    return {"value": plans.get(call.portal.plan, "N") if plans else "N"}


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "y")
