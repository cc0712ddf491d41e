"""The app's own settings: every ``BITRIX24_*`` setting, typed, documented and read in one place.

Each setting is one field of :class:`AppSettings`: its name (``event_max_bytes`` is the environment
variable and Django setting ``BITRIX24_EVENT_MAX_BYTES``), its type, its default and what it means.
``bitrix_app/settings.py`` reads them from the environment with :meth:`AppSettings.from_env` into
Django's settings, so ``override_settings`` and pytest-django's ``settings`` fixture keep working;
the code reads them only through :data:`app_settings`::

    from portals.conf import app_settings

    if size > app_settings.event_max_bytes: ...

docs/configuration.md is the table :func:`settings_doc` gives (a test keeps the two equal).

The model is django-allauth's ``app_settings``: a lazy, typed accessor over Django's settings. This
module imports nothing of the project, so the settings module can import it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, cast

# Django's settings object is lazy, and django.conf is loaded before any settings module: importing
# it here is safe even from bitrix_app/settings.py.
from django.conf import settings as django_settings

PREFIX = "BITRIX24_"
PLANS = ("standard", "enterprise")


def _setting(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, kw_only=True)
class AppSettings:
    # --- Registration and addresses ------------------------------------------------------------
    client_id: str = _setting("", "The marketplace app's client_id (local apps keep theirs on the portal).")
    client_secret: str = _setting("", "The marketplace app's client_secret.")
    app_url: str = _setting(
        "http://127.0.0.1:8000",
        "The public base URL Bitrix24 calls (handlers, redirect URI), e.g. https://app.example.com.",
    )
    oauth_servers: tuple[str, ...] = _setting(
        ("https://oauth.bitrix.info/", "https://oauth.bitrix24.tech/"),
        "OAuth servers the app will ever send a client_secret or a refresh token to.",
    )
    token_keys: tuple[str, ...] = _setting(
        (),
        "Fernet keys for tokens at rest, newest first (rotate: prepend a key, run "
        "`manage.py rotate_token_keys`). Empty: a key derived from SECRET_KEY (development only).",
    )
    ca_bundle: str = _setting(
        "", "An extra CA bundle to trust (the sandbox portal's CA in development and tests)."
    )
    allow_http: bool = _setting(False, "Development only: accept http:// endpoints and webhooks.")
    webhook_url: str = _setting("", "An inbound webhook for single-portal use (`manage.py bitrix call`).")
    js_sdk_url: str = _setting(
        "https://api.bitrix24.com/api/v1/", "The BX24 JavaScript library the install and app pages load."
    )
    connect_timeout: float = _setting(5.0, "Seconds to connect to Bitrix24.")
    read_timeout: float = _setting(
        65.0, "Seconds to wait for an answer (Bitrix24 cuts requests off at 60 s)."
    )

    # --- Client: rate limits, retries ----------------------------------------------------------
    default_plan: str = _setting(
        "standard",
        'The plan of webhooks and of portals whose plan is unknown: "standard" (2/s, burst 50) or '
        '"enterprise" (5/s, burst 250).',
    )
    limiter_headroom: float = _setting(
        2.0, "Slots of a portal's burst never used, to absorb clock and network jitter."
    )
    operating_limit: float = _setting(480.0, "Operating-time limit per method per 10 minutes (seconds).")
    operating_headroom: float = _setting(30.0, "Seconds below the operating limit at which pacing starts.")
    client_concurrency: int = _setting(
        4, "Requests one client keeps in flight to one portal (batch chunks, list parts, imports)."
    )
    retry_rate_limit_attempts: int = _setting(
        8, "Attempts per call when Bitrix24 refuses for the rate limit."
    )
    retry_transient_attempts: int = _setting(5, "Attempts per call after transient failures (network, 5xx).")

    # --- Portals: token lifecycle --------------------------------------------------------------
    token_refresh_margin: int = _setting(
        60, "Refresh ahead of a call when the access token expires within this many seconds."
    )
    refresh_lock_timeout: float = _setting(60.0, "Seconds one refresh may hold the portal's refresh lock.")
    refresh_lock_wait: float = _setting(75.0, "Seconds other callers wait for a refresh in progress.")
    refresh_connect_attempts: int = _setting(
        4, "Attempts, with backoff, when the OAuth server cannot even be reached."
    )
    dormant_refresh_days: float = _setting(
        20.0, "Keep-alive: refresh a dormant portal's refresh token untouched for this many days."
    )
    warm_work_minutes: float = _setting(
        10.0, "Keep access tokens warm only for portals with background work due within this many minutes."
    )
    token_sweep_seconds: float = _setting(300.0, "How often the token sweep runs.")
    token_sweep_jitter: float = _setting(240.0, "Seconds of jitter spreading the refreshes one sweep queues.")
    token_sweep_batch: int = _setting(2000, "Portals one sweep looks at.")
    beat_lease_seconds: float = _setting(
        30.0,
        "Exactly one beat: the leader renews its lease this often at least three times; a standby "
        "beat takes over within this long after the leader dies.",
    )
    uninstall_clean_grace_hours: float = _setting(
        72.0,
        'Hours after a confirmed uninstall with "delete app data" before the portal\'s data is deleted '
        "(a reinstall in between keeps it).",
    )

    # --- Events --------------------------------------------------------------------------------
    event_max_bytes: int = _setting(
        65_536, "Event bodies larger than this are refused (413) before they are read."
    )
    event_max_skew_seconds: int = _setting(
        3600, "Online events whose ts is further than this from now are refused as replays."
    )
    event_token_cache_seconds: float = _setting(
        30.0, "How long a process trusts its cached member_id → application-token digest."
    )
    event_token_recheck_seconds: float = _setting(
        1.0, "A token mismatch re-reads the database at most this often per portal (forged floods)."
    )
    event_shards: int = _setting(8, "Outbox shards: each is drained by one worker at a time.")
    event_batch_size: int = _setting(200, "Events one drain takes from its shard at a time.")
    event_group_commit: bool = _setting(
        True, "A web process's concurrent receiver requests share one INSERT and one commit."
    )
    event_group_commit_linger_ms: float = _setting(
        2.0, "How long a group commit's leader waits for more rows (0: write at once)."
    )
    event_max_attempts: int = _setting(6, "Attempts per event before it fails (replayable from the admin).")
    event_retry_base_seconds: float = _setting(
        10.0, "Backoff before an event's first retry; doubles per attempt."
    )
    event_retry_max_seconds: float = _setting(900.0, "The longest backoff between an event's attempts.")
    event_retention_days: int = _setting(
        14, "Finished events are kept this long (dedupe, audit); keep it above the skew window."
    )
    offline_events: tuple[str, ...] = _setting(
        (),
        "Handled events that portals allowing offline events deliver through their offline queue "
        "(event_type=offline) instead of to the receiver.",
    )
    event_offline_batch: int = _setting(50, "Records fetched per event.offline.get call.")
    event_handler_modules: tuple[str, ...] = _setting(
        (), "Extra modules defining @on_event handlers, imported at start-up (besides apps' event_handlers)."
    )

    # --- Mirror and outward API (mirror/, api/; docs/mirror.md, docs/api.md) --------------------
    mirror_sync_share: float = _setting(
        0.8,
        "Share (0-1] of a portal's request rate and burst the mirror's initial sync and "
        "reconciliation may take; the rest stays for the app's own calls.",
    )
    mirror_reconcile_minutes: float = _setting(
        60.0, "How often each portal's mirror is reconciled (changes by DATE_MODIFY, deletions by ID)."
    )
    mirror_reconcile_overlap_minutes: float = _setting(
        10.0, "A reconciliation re-reads changes this far before the last DATE_MODIFY it saw (clock skew)."
    )
    mirror_sweep_seconds: float = _setting(
        300.0, "How often the beat starts due mirror work (initial syncs, resumptions, reconciliations)."
    )
    api_rate_limit: int = _setting(
        100, "Requests per minute per API key, and per client address for unauthenticated requests."
    )
    api_cache_seconds: int = _setting(
        1800, "How long API answers stay cached (a mirror write makes them unreachable at once)."
    )
    api_key_cache_seconds: float = _setting(
        5.0, "How long a process trusts a checked API key (a revocation reaches every process within it)."
    )
    api_key_rotation_overlap_hours: float = _setting(
        24.0, "When a key is rotated, the old key keeps working this many hours beside the new one."
    )

    # --- Operator console ----------------------------------------------------------------------
    console_flush_seconds: float = _setting(
        5.0, "How often each process writes the figures it gathered into the console's rollups."
    )
    console_rollup_days: float = _setting(
        8.0, "Hourly rollups (the console's day and week charts) are kept this long; minute ones 2 hours."
    )
    console_reauth_link_days: float = _setting(
        7.0, "How long a re-authorisation link the console makes for a portal's administrator stays valid."
    )

    def __post_init__(self) -> None:
        if self.default_plan not in PLANS:
            raise ValueError(
                f"{PREFIX}DEFAULT_PLAN must be one of {', '.join(PLANS)}, not {self.default_plan!r}"
            )
        if not 0 < self.mirror_sync_share <= 1:
            raise ValueError(f"{PREFIX}MIRROR_SYNC_SHARE must be in (0, 1], not {self.mirror_sync_share!r}")
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"{setting_name(spec.name)} must not be negative, not {value!r}")

    @classmethod
    def from_env(cls, env: Any) -> AppSettings:
        """Read every setting from the environment through django-environ's ``env`` object."""
        readers = {str: env.str, bool: env.bool, int: env.int, float: env.float, tuple: env.list}
        return cls._read(lambda name, default: readers[type(default)](name, default=default))

    @classmethod
    def from_django(cls, settings: Any) -> AppSettings:
        """The settings as Django holds them now (tests may have changed them)."""
        return cls._read(lambda name, default: getattr(settings, name, default))

    @classmethod
    def _read(cls, read: Any) -> AppSettings:
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            value = read(setting_name(spec.name), spec.default)
            values[spec.name] = tuple(value) if isinstance(spec.default, tuple) else value
        return cls(**values)

    def as_django_settings(self) -> dict[str, Any]:
        return {setting_name(spec.name): getattr(self, spec.name) for spec in dataclasses.fields(self)}


def setting_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def settings_doc() -> list[tuple[str, str, str]]:
    """(environment variable, default, meaning) of every setting, in declaration order."""
    rows = []
    for spec in dataclasses.fields(AppSettings):
        default = spec.default
        if isinstance(default, tuple):
            shown = ",".join(default)
        elif isinstance(default, bool):
            shown = "1" if default else "0"
        else:
            shown = str(default)
        rows.append((setting_name(spec.name), shown, spec.metadata["doc"]))
    return rows


def settings_table() -> str:
    """docs/configuration.md's table (``python -m portals.conf`` prints it)."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += [
        f"| `{name}` | {f'`{shown}`' if shown else '—'} | {doc} |" for name, shown, doc in settings_doc()
    ]
    return "\n".join(lines)


class _Accessor:
    """Reads :class:`AppSettings` from Django's settings once, again after a ``BITRIX24_*`` change."""

    def __init__(self) -> None:
        self._current: AppSettings | None = None

    def __getattr__(self, name: str) -> Any:
        current = self._current
        if current is None:
            current = self._current = AppSettings.from_django(django_settings)
        return getattr(current, name)

    def reset(self, *, setting: str = PREFIX, **kwargs: Any) -> None:
        """A ``setting_changed`` receiver (connected in PortalsConfig.ready)."""
        if setting.startswith(PREFIX):
            self._current = None


_accessor = _Accessor()
app_settings: AppSettings = cast(AppSettings, _accessor)
reset_on_setting_changed = _accessor.reset


if __name__ == "__main__":
    print(settings_table())
