"""The lifecycle's own state beside the core's store: the app's registered URLs, per-portal delivery
workers, the delivery log, and per-portal switches (offline-extended feature).

One `LifecycleRuntime` per running sandbox; `reset()` gives a fresh one (the control API's reset).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sandbox.lifecycle.delivery import DEFAULT_TIMEOUT, DeliveryLog, DeliveryWorker, Poster, post_form


@dataclass
class AppUrls:
    """Where the app registered its pages, as in an app card (protocol §1.1). Built from `app_url` with
    the project's defaults; each one can be overridden (control API, CLI)."""

    installer: str  # "" for an app without UI (protocol §1.3: installed immediately)
    install_event: str
    app_page: str
    placement: str  # a template: "{name}" is replaced by the lower-case placement code
    oauth_redirect: str
    events: str

    @classmethod
    def from_app_url(cls, app_url: str, **overrides: str) -> AppUrls:
        base = app_url.rstrip("/")
        urls = cls(
            installer=f"{base}/bitrix/install/",
            install_event=f"{base}/bitrix/install/",
            app_page=f"{base}/bitrix/app/",
            placement=f"{base}/bitrix/placement/{{name}}/",
            oauth_redirect=f"{base}/bitrix/oauth/callback/",
            events=f"{base}/bitrix/events/",
        )
        urls.update({k: v for k, v in overrides.items() if v})
        return urls

    def update(self, changes: dict[str, Any]) -> None:
        """Apply overrides; unknown keys raise KeyError, non-http(s) URLs raise ValueError."""
        for key, value in changes.items():
            if key not in self.__dataclass_fields__:
                raise KeyError(key)
            if key == "installer" and value == "":
                self.installer = ""  # an app without UI: installed at once, no installer, no installFinish
                continue
            if value in (None, ""):
                continue
            parts = urlsplit(str(value))
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{key}: not an absolute http(s) URL")
            setattr(self, key, str(value))

    def placement_url(self, placement: str) -> str:
        return self.placement.replace("{name}", placement.lower())

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


PAGE_SESSION_LIFETIME = 3600.0


@dataclass(frozen=True)
class PageSession:
    """The portal page's own credential for its calls on the frame's behalf (installFinish,
    refreshAuth), as a real portal page has the user's session: never given to the app, and not the
    app's token, which the app may rotate away at once (an install exchanges the refresh token)."""

    member_id: str
    user_id: int
    expires: float


@dataclass
class LifecycleRuntime:
    """Everything the lifecycle keeps outside the store, for one running sandbox."""

    urls: AppUrls
    # "auto": a command-line install whose installer answered 2xx counts as installFinish;
    # "explicit": the caller must call installFinish (control API / CLI `finish`).
    finish_mode: str = "auto"
    delivery_timeout: float = DEFAULT_TIMEOUT
    offline_extended: dict[str, bool] = field(default_factory=dict)  # member_id → feature flag
    log: DeliveryLog = field(default_factory=DeliveryLog)
    workers: dict[str, DeliveryWorker] = field(default_factory=dict)
    poster: Poster = post_form
    clock: Callable[[], float] = time.time  # the sandbox clock, for the events' `ts`
    page_sessions: dict[str, PageSession] = field(default_factory=dict)

    def page_session_new(self, *, member_id: str, user_id: int) -> str:
        """A new page session for one frame render (expired ones are dropped first)."""
        now = self.clock()
        for value in [v for v, session in self.page_sessions.items() if session.expires <= now]:
            del self.page_sessions[value]
        value = secrets.token_urlsafe(24)
        self.page_sessions[value] = PageSession(member_id, user_id, now + PAGE_SESSION_LIFETIME)
        return value

    def page_session(self, value: str, *, member_id: str) -> PageSession | None:
        """The live page session ``value`` of portal ``member_id``, else None."""
        session = self.page_sessions.get(value)
        if session is None or session.member_id != member_id or session.expires <= self.clock():
            return None
        return session

    def worker(self, member_id: str) -> DeliveryWorker:
        """The portal's delivery worker, created on first use (inside the running loop)."""
        worker = self.workers.get(member_id)
        if worker is None:
            timeout: Callable[[], float] = lambda: self.delivery_timeout  # noqa: E731 - read at delivery time
            worker = DeliveryWorker(
                member_id=member_id, log_=self.log, timeout=timeout, clock=self.clock, poster=self.poster
            )
            self.workers[member_id] = worker
        return worker

    async def idle(self) -> None:
        """Wait until every portal's queue has been worked off."""
        for worker in list(self.workers.values()):
            await worker.idle()

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.workers.clear()

    def settings(self) -> dict[str, Any]:
        return {
            "urls": self.urls.as_dict(),
            "finish_mode": self.finish_mode,
            "delivery_timeout": self.delivery_timeout,
            "offline_extended": dict(self.offline_extended),
        }
