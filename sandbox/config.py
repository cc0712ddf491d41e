"""Sandbox settings: one dataclass, filled from the command line, adjustable through the control API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DAY = 86400.0


@dataclass
class CostModel:
    """Modelled server time per call, in seconds (multiplied by ``scale`` before use).

    time(call) = per_call
               + per_row        x rows returned
               + per_offset_row x rows skipped by ``start`` (OFFSET)
               + per_count_row  x rows matched, when the total is counted (any ``start`` but -1)
               + per_write      x rows written (add / update / delete)

    The time is applied as real latency inside the portal's concurrency limit and charged to the
    method's operating time, so a benchmark can compute the physical limit from these numbers.
    """

    per_call: float = 0.010
    per_row: float = 0.0004
    per_offset_row: float = 0.00002
    per_count_row: float = 0.000004
    per_write: float = 0.030
    scale: float = 1.0


@dataclass
class Config:
    portals: int = 1
    deals: int = 20
    leads: int = 10
    contacts: int = 10
    companies: int = 5
    users: int = 5
    plan: str = "standard"
    seed: int = 1
    host: str = "127.0.0.1"
    port: int = 8443
    http_port: int = 8080
    # The default ports were not asked for explicitly: when they are taken (a demo's sandbox runs),
    # free ones are used instead of failing.
    ports_fallback: bool = False
    shared_address: bool = False
    # Whether portals start with the app installed (False: a person installs it from the portal page).
    app_installed: bool = True
    state_file: str = "var/sandbox/state.json"
    app_url: str = "http://127.0.0.1:8000"
    # Where /oauth/authorize/ sends the code ("taken from the app settings" in Bitrix24).
    redirect_uri: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    # OAuth lifetimes (seconds). Refresh: current docs say 180 days, real tokens decode to 30.
    access_lifetime: float = 3600.0
    refresh_lifetime: float = 30 * DAY
    # Whether a refresh kills the previous access token at once (the old docs' rule) or leaves it
    # valid until its own expiry (what the official SDKs' OAuth tests need; docs/sandbox.md).
    refresh_revokes_access: bool = False
    code_lifetime: float = 30.0
    # Leaky bucket; None takes the plan's documented values (2/50 standard, 5/250 enterprise).
    drain: float | None = None
    burst: int | None = None
    # Operating-time limit per method per app/webhook: limit seconds in window seconds, in 10 buckets.
    operating_limit: float = 480.0
    operating_window: float = 600.0
    concurrency: int = 4
    request_timeout: float = 60.0
    cost: CostModel = field(default_factory=CostModel)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("client_secret")
        return data

    def update(self, changes: dict[str, Any]) -> None:
        """Apply runtime changes (control API); unknown keys raise KeyError, secrets are not settable."""
        for key, value in changes.items():
            if key == "cost":
                for cost_key, cost_value in value.items():
                    if not hasattr(self.cost, cost_key):
                        raise KeyError(f"cost.{cost_key}")
                    setattr(self.cost, cost_key, float(cost_value))
            elif key in _RUNTIME_KEYS:
                current = getattr(self, key)
                if isinstance(current, bool) and not isinstance(value, bool):
                    # bool("false") is True: a switch takes JSON true/false only.
                    raise ValueError(f"{key} must be true or false")
                setattr(
                    self, key, type(current)(value) if current is not None and value is not None else value
                )
            else:
                raise KeyError(key)


_RUNTIME_KEYS = {
    "access_lifetime",
    "refresh_lifetime",
    "refresh_revokes_access",
    "code_lifetime",
    "drain",
    "burst",
    "operating_limit",
    "operating_window",
    "concurrency",
    "request_timeout",
    "app_url",
    "redirect_uri",
}
