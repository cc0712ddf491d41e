"""Run the sandbox: ``python -m sandbox`` / ``python manage.py sandbox``.

Listeners: in the default mode every portal gets its own loopback address (portal N on
127.0.0.(N+1), continuing into 127.0.1.x) with one HTTPS and one HTTP socket, all on the same two
port numbers; the OAuth server and the control API live on ``--host`` (127.0.0.1). With
``--shared-address`` there is one wildcard socket per scheme instead, which scales to any number
of portals: the portal is still told apart by the address the client connected to (every
127.0.0.0/8 address routes to loopback on Linux) and the Host header, and connections to any
non-loopback address are closed unanswered.

All listeners run in one event loop as uvicorn protocol instances on pre-bound sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import errno
import ipaddress
import json
import logging
import os
import resource
import signal
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from sandbox import extensions
from sandbox.config import Config, CostModel
from sandbox.state import Sandbox, portal_address
from sandbox.tls import CertificateAuthority

log = logging.getLogger("sandbox.server")


class SandboxProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus: the transport is handed to the app (``scope["sandbox.transport"]``)
    so a fault can close the socket without an answer, and in shared-address mode connections to
    non-loopback addresses are closed at once."""

    loopback_only = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope["sandbox.transport"] = self.transport
            await inner(scope, receive, send)

        self.app = app

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.loopback_only:
            local = transport.get_extra_info("sockname")
            if not local or not ipaddress.ip_address(local[0]).is_loopback:
                transport.close()
                return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # h11 writes headers and body separately; without TCP_NODELAY the body waits for the
            # client's delayed ACK (~40 ms per request).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[arg-type]


class LoopbackOnlyProtocol(SandboxProtocol):
    loopback_only = True


TLS_HANDSHAKE = 0x16  # the content type of the TLS record every TLS connection opens with
SNIFF_TIMEOUT = 30.0  # seconds a connection may stay silent before its first byte


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _first_byte(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """The connection's first byte, peeked (left in the socket); b"" when the client hung up."""
    while True:
        try:
            return conn.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(conn.fileno(), _resolve, readable)
            try:
                await readable
            finally:
                loop.remove_reader(conn.fileno())


class TlsOrPlainServer:
    """An HTTPS port that also answers plain HTTP: each connection's first byte decides.

    A TLS handshake record is served over TLS as usual; anything else is served as plain HTTP,
    which the app answers with a redirect to the portal's http listener (sandbox.app). Browsers
    refuse the sandbox's self-signed CA, so a development app (BITRIX24_ALLOW_HTTP) sends them to
    ``http://<portal domain>/...``; a real portal redirects that to https, the sandbox to its http
    page. Has the two methods of asyncio.Server that Listeners uses (close, wait_closed).
    """

    def __init__(
        self, sock: socket.socket, protocol_factory: Any, ssl_context: ssl.SSLContext, backlog: int
    ) -> None:
        self.sock = sock
        self.protocol_factory = protocol_factory
        self.ssl_context = ssl_context
        sock.listen(backlog)
        self.sniffing: set[asyncio.Task[None]] = set()
        self.accepting = asyncio.get_running_loop().create_task(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _peer = await loop.sock_accept(self.sock)
            except OSError:  # out of descriptors, or a connection reset before accept: keep serving
                await asyncio.sleep(0.05)
                continue
            task = loop.create_task(self._serve(conn))
            self.sniffing.add(task)
            task.add_done_callback(self.sniffing.discard)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        try:
            async with asyncio.timeout(SNIFF_TIMEOUT):
                first = await _first_byte(loop, conn)
            if not first:
                conn.close()
                return
            tls = self.ssl_context if first[0] == TLS_HANDSHAKE else None
            await loop.connect_accepted_socket(self.protocol_factory, conn, ssl=tls)
        except OSError:  # a failed handshake (ssl.SSLError), a reset, the timeout
            conn.close()

    def close(self) -> None:
        self.accepting.cancel()
        for task in list(self.sniffing):
            task.cancel()
        self.sock.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self.accepting


class Listeners:
    """The bound sockets and their asyncio servers; can add an address (rename) and take the OAuth
    server's HTTPS listener down and up (the "OAuth server down, connection refused" fault)."""

    def __init__(
        self, sandbox: Sandbox, app: Any, ca: CertificateAuthority, *, quiet_log: bool = True
    ) -> None:
        self.sandbox = sandbox
        self.ca = ca
        self.config = uvicorn.Config(
            app,
            http=LoopbackOnlyProtocol if sandbox.config.shared_address else SandboxProtocol,
            lifespan="off",
            proxy_headers=False,
            server_header=False,
            date_header=False,
            access_log=False,
            log_level="warning" if quiet_log else "info",
            timeout_keep_alive=30,
            backlog=4096,
        )
        self.config.load()
        self.state = ServerState()
        self.ssl_context = ca.server_context()
        self.servers: dict[tuple[str, int], asyncio.Server | TlsOrPlainServer] = {}
        self.addresses: list[str] = []
        self._oauth_reopen: asyncio.TimerHandle | None = None

    def _protocol(self) -> asyncio.Protocol:
        protocol_class = self.config.http_protocol_class
        return protocol_class(config=self.config, server_state=self.state, app_state={})  # type: ignore[call-arg]

    @staticmethod
    def bind(address: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.setblocking(False)
        return sock

    async def serve(self, sock: socket.socket, tls: bool) -> None:
        address, port = sock.getsockname()[:2]
        if tls:
            self.servers[(address, port)] = TlsOrPlainServer(
                sock, self._protocol, self.ssl_context, self.config.backlog
            )
            return
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._protocol, sock=sock, backlog=self.config.backlog)
        self.servers[(address, port)] = server

    async def start(self, first: dict[tuple[str, int], socket.socket]) -> None:
        config = self.sandbox.config
        if config.shared_address:
            wanted = ["0.0.0.0"]  # noqa: S104 - loopback-only is enforced per connection (LoopbackOnlyProtocol)
        else:
            wanted = [config.host, *(p.address for p in self.sandbox.portals)]
        for address in wanted:
            for port, tls in ((config.port, True), (config.http_port, False)):
                sock = first.pop((address, port), None) or self.bind(address, port)
                await self.serve(sock, tls)
        for sock in first.values():
            sock.close()
        self.addresses = [config.host, *(p.address for p in self.sandbox.portals)]

    async def add_address(self) -> str:
        """Bind a fresh portal address (for a rename) and re-issue the certificate to cover it."""
        config = self.sandbox.config
        used = set(self.addresses)
        index = len(self.addresses)
        while portal_address(index) in used:
            index += 1
        address = portal_address(index)
        if not config.shared_address:
            await self.serve(self.bind(address, config.port), True)
            await self.serve(self.bind(address, config.http_port), False)
        self.addresses.append(address)
        self.ca.issue_server(self.addresses)
        self.ca.reload(self.ssl_context)
        return address

    def _oauth_key(self) -> tuple[str, int]:
        config = self.sandbox.config
        return ("0.0.0.0" if config.shared_address else config.host, config.port)  # noqa: S104

    def oauth_down(self, until: float | None) -> None:
        """Close the OAuth server's HTTPS listener (clients get connection refused)."""
        if self.sandbox.config.shared_address:
            return  # one socket serves every portal there: the 503 mode is used instead
        server = self.servers.pop(self._oauth_key(), None)
        if server is not None:
            server.close()
        if until is not None:
            delay = max(0.0, until - self.sandbox.clock.time())
            loop = asyncio.get_running_loop()
            self._oauth_reopen = loop.call_later(delay, lambda: loop.create_task(self._reopen()))

    def oauth_up(self) -> None:
        if self._oauth_reopen is not None:
            self._oauth_reopen.cancel()
            self._oauth_reopen = None
        asyncio.get_running_loop().create_task(self._reopen())

    async def _reopen(self) -> None:
        key = self._oauth_key()
        if key not in self.servers:
            await self.serve(self.bind(*key), True)

    async def close(self) -> None:
        for server in self.servers.values():
            server.close()
        for connection in list(self.state.connections):
            connection.shutdown()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                while self.state.tasks:
                    await asyncio.sleep(0.05)
        for server in self.servers.values():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await server.wait_closed()


def raise_fd_limit(config: Config) -> None:
    """Thousands of portals need thousands of sockets: take the hard limit, and refuse to start
    (pointing at --shared-address) when per-portal sockets could not fit under it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Two listeners per address, plus room for client connections and the state/CA files.
    needed = 2 * (config.portals + 1) + 1024
    if not config.shared_address and hard != resource.RLIM_INFINITY and needed > hard:
        raise SystemExit(
            f"{config.portals} portals need about {needed} open files with a socket pair per portal, "
            f"but the limit is {hard}: use --shared-address"
        )


def build_parser(prog: str = "python -m sandbox") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run the sandbox Bitrix24 portals.")
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Config()
    cost = CostModel()
    parser.add_argument("--portals", type=int, default=defaults.portals, help="number of portals")
    parser.add_argument(
        "--deals", type=int, default=defaults.deals, help="deals per portal (generated lazily)"
    )
    parser.add_argument("--leads", type=int, default=defaults.leads)
    parser.add_argument("--contacts", type=int, default=defaults.contacts)
    parser.add_argument("--companies", type=int, default=defaults.companies)
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--plan", choices=["standard", "enterprise"], default=defaults.plan)
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed of generated data and identities"
    )
    parser.add_argument("--host", default=defaults.host, help="address of the OAuth server and control API")
    # Without --port/--http-port the defaults are used, or free ports when those are taken.
    parser.add_argument(
        "--port", type=int, default=None, help=f"HTTPS port (default {defaults.port}; 0: pick a free one)"
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=None,
        help=f"HTTP port (default {defaults.http_port}; 0: pick a free one)",
    )
    parser.add_argument("--shared-address", action="store_true", help="one wildcard listener per scheme")
    parser.add_argument(
        "--without-app",
        action="store_true",
        help="portals start without the app (install it from the portal page or python -m sandbox.lifecycle)",
    )
    parser.add_argument("--state-file", default=defaults.state_file)
    parser.add_argument("--app-url", default=os.environ.get("BITRIX24_APP_URL", defaults.app_url))
    parser.add_argument(
        "--redirect-uri", default="", help="OAuth redirect URI (default: APP_URL/bitrix/oauth/callback/)"
    )
    parser.add_argument("--client-id", default=os.environ.get("BITRIX24_CLIENT_ID", ""))
    parser.add_argument("--client-secret", default=os.environ.get("BITRIX24_CLIENT_SECRET", ""))
    parser.add_argument("--access-lifetime", type=float, default=defaults.access_lifetime)
    parser.add_argument("--refresh-lifetime", type=float, default=defaults.refresh_lifetime)
    parser.add_argument(
        "--refresh-revokes-access",
        action="store_true",
        help="a refresh kills the previous access token at once (old docs) instead of at its expiry",
    )
    parser.add_argument(
        "--drain", type=float, default=None, help="leaky bucket drain per second (plan default)"
    )
    parser.add_argument("--burst", type=int, default=None, help="leaky bucket size (plan default)")
    parser.add_argument("--operating-limit", type=float, default=defaults.operating_limit)
    parser.add_argument(
        "--concurrency", type=int, default=defaults.concurrency, help="requests at once per portal"
    )
    parser.add_argument("--request-timeout", type=float, default=defaults.request_timeout)
    parser.add_argument("--cost-scale", type=float, default=cost.scale, help="0 makes every call instant")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")


def config_from_args(args: argparse.Namespace) -> Config:
    defaults = Config()
    config = Config(
        portals=args.portals,
        deals=args.deals,
        leads=args.leads,
        contacts=args.contacts,
        companies=args.companies,
        users=args.users,
        plan=args.plan,
        seed=args.seed,
        host=args.host,
        port=defaults.port if args.port is None else args.port,
        http_port=defaults.http_port if args.http_port is None else args.http_port,
        ports_fallback=args.port is None and args.http_port is None,
        shared_address=args.shared_address,
        app_installed=not args.without_app,
        state_file=args.state_file,
        app_url=args.app_url,
        redirect_uri=args.redirect_uri,
        client_id=args.client_id,
        client_secret=args.client_secret,
        access_lifetime=args.access_lifetime,
        refresh_lifetime=args.refresh_lifetime,
        refresh_revokes_access=args.refresh_revokes_access,
        drain=args.drain,
        burst=args.burst,
        operating_limit=args.operating_limit,
        concurrency=args.concurrency,
        request_timeout=args.request_timeout,
    )
    config.cost.scale = args.cost_scale
    return config


def _bind_pair(host: str, port: int, http_port: int) -> tuple[socket.socket, socket.socket]:
    https = Listeners.bind(host, port)
    try:
        return https, Listeners.bind(host, http_port)
    except OSError:
        https.close()
        raise


def _first_sockets(config: Config, out: Any) -> dict[tuple[str, int], socket.socket]:
    """Bind the control host's sockets first, so port 0 resolves to real ports for everyone.

    With ``config.ports_fallback`` (no port asked for) default ports that are taken, e.g. by the
    demo's sandbox, give way to free ones, with a line saying so.
    """
    host = "0.0.0.0" if config.shared_address else config.host  # noqa: S104
    try:
        https, http = _bind_pair(host, config.port, config.http_port)
    except OSError as e:
        if not (config.ports_fallback and e.errno == errno.EADDRINUSE):
            raise
        out.write(
            f"Port {config.port} or {config.http_port} is taken (another sandbox?): using free ports.\n"
        )
        https, http = _bind_pair(host, 0, 0)
    config.port = https.getsockname()[1]
    config.http_port = http.getsockname()[1]
    return {(host, config.port): https, (host, config.http_port): http}


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle, indent=2)
    tmp.replace(path)


def summary(sandbox: Sandbox, out: Any, *, quiet: bool) -> None:
    config = sandbox.config
    # write() with explicit newlines: Django's OutputWrapper would double print()'s separate "\n".
    out.write(
        f"Sandbox: {len(sandbox.portals)} portal(s), plan {config.plan}; "
        f"OAuth server {sandbox.oauth_server}; control {sandbox.control_url}; state {config.state_file}\n"
    )
    if not quiet:
        out.write(f"App: client_id={config.client_id} client_secret={config.client_secret}\n")
        for portal in sandbox.portals:
            out.write(f"  {portal.domain}  member_id={portal.member_id}  webhook={portal.webhook_url()}\n")
    out.flush()


async def serve(config: Config, *, out: Any = sys.stdout, quiet: bool = False) -> None:
    # Handlers first: a supervisor may stop us as soon as the summary is out.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    raise_fd_limit(config)
    import sandbox.methods  # noqa: F401 - registers the built-in methods

    extensions.load_extensions()
    first = _first_sockets(config, out)
    world = Sandbox(config)
    state_path = Path(config.state_file).resolve()
    ca = CertificateAuthority(state_path.parent)
    ca.issue_server([config.host, *(p.address for p in world.portals)])
    world.ca_bundle = str(ca.ca_path)

    from sandbox.app import SandboxApp

    app = SandboxApp(world)
    listeners = Listeners(world, app, ca)
    world.listeners = listeners
    await listeners.start(first)
    for hook in extensions.on_startup:
        result = hook(world)
        if asyncio.iscoroutine(result):
            await result
    write_state(state_path, world.state())
    summary(world, out, quiet=quiet)

    async def date_header() -> None:
        # uvicorn's own Server loop would refresh this; we run the protocols without it.
        while True:
            listeners.state.default_headers = [(b"date", email.utils.formatdate(usegmt=True).encode())]
            await asyncio.sleep(1)

    ticker = asyncio.create_task(date_header())
    await stop.wait()
    ticker.cancel()
    await listeners.close()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(config_from_args(args), quiet=args.quiet))
