"""``Sandbox``: the whole emulated world in one object (config, clock, portals, tokens, limits).

One instance lives in the server process (``request.app.state.sandbox``); every REST handler gets
it as ``call.sandbox``. Identities (member ids, addresses, webhook secrets, the app's client
credentials) are fixed at construction and survive ``reset()``, because the state file that
tells clients where the portals are is written once; everything else is rebuilt by ``reset()``.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import random
import secrets
import string
import struct
from dataclasses import dataclass, field
from typing import Any

from sandbox.clock import Clock
from sandbox.config import Config
from sandbox.counters import Counters
from sandbox.faults import Faults
from sandbox.limits import LeakyBucket, OperatingLedger
from sandbox.seed import make_users, seed_portal
from sandbox.store import PLANS, AppInstall, Portal, Token, Webhook

ALL_SCOPES = [
    "crm",
    "user",
    "user_brief",
    "user_basic",
    "department",
    "placement",
    "app",
    "entity",
    "task",
    "im",
]
# Every scope a portal has, as RD api-reference/scopes/permissions.md lists them: `scope` with
# full=true answers this list, whatever the caller was granted (the sandbox emulates a part of it).
PORTAL_SCOPES = sorted(
    {
        *ALL_SCOPES,
        *"ai_admin biconnector bizproc booking calendar call cashbox catalog contact_center".split(),
        *"documentgenerator delivery disk humanresources humanresources.hcmlink imbot".split(),
        *"imconnector imopenlines intranet landing lists log mailservice main messageservice".split(),
        *"mobile pay_system pull rpa sale salescenter sign.b2e sonet_group socialnetwork".split(),
        *"telephony timeman user.userfield userfieldconfig userconsent vote".split(),
    }
)
LETTERS_AND_DIGITS = string.ascii_letters + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits


def portal_address(index: int) -> str:
    """Loopback address of portal ``index`` (1-based): 127.0.0.2, 127.0.0.3, ... then 127.0.1.0, ..."""
    n = 0x7F000001 + index
    if n > 0x7FFFFFFE:
        raise ValueError("no loopback address left")
    return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def make_token(expires: float, user_id: int) -> str:
    """A token shaped like a modern Bitrix24 one: 70 lower-case hex chars, bytes 0-3 the expiry
    (little-endian unix time), bytes 12-15 the user id (big-endian), the rest random."""
    raw = struct.pack("<I", int(expires) & 0xFFFFFFFF) + secrets.token_bytes(8) + struct.pack(">I", user_id)
    return (raw + secrets.token_bytes(19)).hex()


def new_client_id(prefix: str) -> str:
    return f"{prefix}.{secrets.token_hex(7)}.{secrets.randbelow(10**8):08d}"


def new_client_secret() -> str:
    """A client secret shaped like Bitrix24's: 50 letters and digits (RD settings/oauth/index.md's
    example), nothing else, as some SDKs' configuration checks."""
    return "".join(secrets.choice(LETTERS_AND_DIGITS) for _ in range(50))


def new_webhook_secret(rng: random.Random | None = None) -> str:
    """An inbound webhook's code: 16 lower-case letters and digits, as Bitrix24 generates them."""
    choice = rng.choice if rng is not None else secrets.choice
    return "".join(choice(LOWER_ALNUM) for _ in range(16))


@dataclass
class AuthCode:
    code: str = field(repr=False)
    member_id: str
    client_id: str
    user_id: int
    expires: float


class Sandbox:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.clock = Clock()
        if not config.client_id:
            config.client_id = new_client_id("app")
        if not config.redirect_uri:
            config.redirect_uri = config.app_url.rstrip("/") + "/bitrix/oauth/callback/"
        if not config.client_secret:
            config.client_secret = new_client_secret()
        # Stable identities: derived from the seed so a restarted sandbox with the same options
        # (and the same state file) keeps its portals' member ids and webhook secrets.
        ident = random.Random(f"identity:{config.seed}:{config.client_id}")
        self.identities: list[tuple[str, str]] = [
            (ident.getrandbits(128).to_bytes(16, "big").hex(), new_webhook_secret(ident))
            for _ in range(config.portals)
        ]
        self.portals: list[Portal] = []
        self.by_member: dict[str, Portal] = {}
        self.by_host: dict[str, Portal] = {}
        self.by_address: dict[str, Portal] = {}
        # Old host (domain or http_domain) of a renamed portal -> the portal, for the 302s.
        self.renamed: dict[str, Portal] = {}
        self.counters = Counters()
        self.faults = Faults()
        self.tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, Token] = {}
        self.codes: dict[str, AuthCode] = {}
        self.buckets: dict[str, LeakyBucket] = {}
        self.operating = OperatingLedger()
        self.semaphores: dict[str, asyncio.Semaphore] = {}
        # Set by the server: called as rename_listener(old_portal_address, new_address) to bind
        # listeners for a renamed portal's new address (None in shared-address mode).
        self.listeners: Any = None
        self.ca_bundle = ""
        self.reset()

    # --- world -------------------------------------------------------------------------------

    def reset(self) -> None:
        """A fresh world with the same identities: data reseeded, tokens, faults, counters,
        limits and the clock offset cleared, the app installed (status F, paid) everywhere, or
        nowhere with ``config.app_installed`` off."""
        # Building thousands of portals allocates millions of small objects; with the cyclic GC
        # running meanwhile, most of the time goes into rescanning them.
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._rebuild()
        finally:
            if enabled:
                gc.enable()

    def _rebuild(self) -> None:
        config = self.config
        self.clock.offset = 0.0
        self.counters.reset()
        self.faults.clear()
        self.tokens.clear()
        self.refresh_tokens.clear()
        self.codes.clear()
        self.buckets.clear()
        self.operating = OperatingLedger()
        self.semaphores.clear()
        now = self.clock.time()
        self.portals = []
        self.by_member.clear()
        self.by_host.clear()
        self.by_address.clear()
        self.renamed.clear()
        staff = make_users(seed=config.seed, users=config.users, admin_user_id=1, now=now)
        for index, (member_id, hook_secret) in enumerate(self.identities, start=1):
            address = portal_address(index)
            portal = Portal(
                index=index,
                member_id=member_id,
                address=address,
                domain=f"{address}:{config.port}",
                http_domain=f"{address}:{config.http_port}",
                plan=config.plan,
            )
            seed_portal(
                portal,
                seed=config.seed,
                deals=config.deals,
                leads=config.leads,
                contacts=config.contacts,
                companies=config.companies,
                users=config.users,
                now=now,
                user_templates=staff,
            )
            portal.webhooks[(portal.admin_user_id, hook_secret)] = Webhook(
                user_id=portal.admin_user_id, secret=hook_secret, scope=list(ALL_SCOPES)
            )
            if config.app_installed:
                self.app_install(
                    portal, client_id=config.client_id, client_secret=config.client_secret, status="F"
                )
            self.add_portal(portal)

    def add_portal(self, portal: Portal) -> None:
        self.portals.append(portal)
        self.by_member[portal.member_id] = portal
        self.index_portal(portal)

    def index_portal(self, portal: Portal) -> None:
        self.by_host[portal.domain] = portal
        self.by_host[portal.http_domain] = portal
        self.by_address[portal.address] = portal

    def portal_by_host(self, host: str) -> Portal | None:
        return self.by_host.get(host)

    # --- apps and tokens ----------------------------------------------------------------------

    def app_install(
        self,
        portal: Portal,
        *,
        client_id: str,
        client_secret: str,
        status: str,
        scope: list[str] | None = None,
        installed: bool = True,
    ) -> AppInstall:
        """Install (or reinstall) an app on ``portal``; a reinstall keeps the app's ``extra`` data
        and issues a new application_token, as Bitrix24 does."""
        old = portal.apps.get(client_id)
        app = AppInstall(
            client_id=client_id,
            client_secret=client_secret,
            status=status,
            installed=installed,
            scope=list(scope or ALL_SCOPES),
            installed_at=self.clock.time(),
            app_id=old.app_id if old else len(portal.apps) + 1,
            code=old.code if old else ("sandbox.app" if not client_id.startswith("local.") else client_id),
            extra=old.extra if old else {},
        )
        portal.apps[client_id] = app
        return app

    def app_uninstall(self, portal: Portal, client_id: str, *, clean: bool = False) -> AppInstall | None:
        """Mark the app uninstalled and revoke every token it holds on the portal."""
        app = portal.apps.get(client_id)
        if app is None:
            return None
        app.present = False
        app.installed = False
        if clean:
            app.extra = {}
        for token in list(self.tokens.values()):
            if token.member_id == portal.member_id and token.client_id == client_id:
                self.token_revoke(token)
        return app

    def token_issue(self, portal: Portal, app: AppInstall, user_id: int, *, grant: str) -> Token:
        """Mint a new token pair for ``user_id`` of ``portal`` in ``app`` (counted as ``grant``)."""
        now = self.clock.time()
        expires = now + self.config.access_lifetime
        refresh_expires = now + self.config.refresh_lifetime
        token = Token(
            access_token=make_token(expires, user_id),
            refresh_token=make_token(refresh_expires, user_id),
            member_id=portal.member_id,
            client_id=app.client_id,
            user_id=user_id,
            scope=list(app.scope),
            expires=float(int(expires)),
            refresh_expires=float(int(refresh_expires)),
            issued_at=now,
        )
        self.tokens[token.access_token] = token
        self.refresh_tokens[token.refresh_token] = token
        self.counters.token_grants[portal.member_id][grant] += 1
        return token

    def token_revoke(self, token: Token) -> None:
        token.access_valid = False
        token.refresh_used = True

    def token_response(self, token: Token, portal: Portal, app: AppInstall) -> dict[str, Any]:
        """The OAuth server's token JSON, fields in the order real responses have them."""
        return {
            "access_token": token.access_token,
            "expires": int(token.expires),
            "expires_in": int(self.config.access_lifetime),
            "scope": ",".join(token.scope),
            "domain": self.oauth_host,
            "server_endpoint": self.server_endpoint,
            "status": app.status,
            "client_endpoint": portal.client_endpoint,
            "member_id": portal.member_id,
            "user_id": token.user_id,
            "refresh_token": token.refresh_token,
        }

    async def portal_rename(self, portal: Portal) -> str:
        """Move ``portal`` to a new loopback address (new listeners are bound); the old hosts then
        answer 302 with Location on the new host for every path. Returns the old domain."""
        if self.listeners is None:
            raise RuntimeError("renaming needs the server's listeners")
        old_hosts = (portal.domain, portal.http_domain)
        address = await self.listeners.add_address()
        self.by_address.pop(portal.address, None)
        portal.renamed_from.append(portal.domain)
        portal.address = address
        portal.domain = f"{address}:{self.config.port}"
        portal.http_domain = f"{address}:{self.config.http_port}"
        for host in old_hosts:
            self.by_host.pop(host, None)
            self.renamed[host] = portal
        self.index_portal(portal)
        return old_hosts[0]

    # --- addresses ----------------------------------------------------------------------------

    @property
    def oauth_host(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    @property
    def server_endpoint(self) -> str:
        return f"https://{self.oauth_host}/rest/"

    @property
    def oauth_server(self) -> str:
        return f"https://{self.oauth_host}/"

    @property
    def control_url(self) -> str:
        return f"http://{self.config.host}:{self.config.http_port}/_sandbox/"

    # --- limits -------------------------------------------------------------------------------

    def drain_burst(self, portal: Portal) -> tuple[float, int]:
        plan = PLANS[portal.plan]
        drain = self.config.drain if self.config.drain is not None else plan["drain"]
        burst = self.config.burst if self.config.burst is not None else plan["burst"]
        return float(drain), int(burst)

    def bucket(self, portal: Portal) -> LeakyBucket:
        bucket = self.buckets.get(portal.member_id)
        if bucket is None:
            bucket = self.buckets[portal.member_id] = LeakyBucket(last=self.clock.time())
        return bucket

    def bucket_levels(self) -> dict[str, float]:
        now = self.clock.time()
        levels = {}
        for portal in self.portals:
            bucket = self.buckets.get(portal.member_id)
            if bucket is not None:
                levels[portal.member_id] = round(bucket.current(now, self.drain_burst(portal)[0]), 3)
        return levels

    def semaphore(self, portal: Portal) -> asyncio.Semaphore:
        semaphore = self.semaphores.get(portal.member_id)
        if semaphore is None:
            semaphore = self.semaphores[portal.member_id] = asyncio.Semaphore(max(1, self.config.concurrency))
        return semaphore

    # --- state file ---------------------------------------------------------------------------

    def state(self, ca_bundle: str | None = None) -> dict[str, Any]:
        """The state file's content (shape fixed by docs/architecture.md)."""
        ca_bundle = self.ca_bundle if ca_bundle is None else ca_bundle
        return {
            "oauth_server": self.oauth_server,
            "server_endpoint": self.server_endpoint,
            "ca_bundle": ca_bundle,
            "control_url": self.control_url,
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            "app_url": self.config.app_url,
            "portals": [
                {
                    "member_id": p.member_id,
                    "domain": p.domain,
                    "client_endpoint": p.client_endpoint,
                    "http_endpoint": p.http_endpoint,
                    "webhook_url": p.webhook_url(),
                    "plan": p.plan,
                    "admin_user_id": p.admin_user_id,
                }
                for p in self.portals
            ],
        }


def secret_digest(value: str) -> str:
    """A short non-reversible tag for a secret, for logs and counters."""
    return hashlib.sha256(value.encode()).hexdigest()[:8]
