"""The HTTP listener: ``/metrics``, ``/healthz`` and the routes other parts contribute.

``/metrics`` serves the snapshot of the last collection cycle: the daemon
renders the exposition once per cycle and calls :meth:`Exporter.publish`; a
scrape only copies bytes (gzip-compressed once per snapshot, on the first
client that accepts it), so a scrape never triggers a collection and a
scrape storm cannot load the host.

Extension point -- routes. Any part of the agent adds endpoints without
editing this server::

    def handle(req: Request) -> Response:
        return Response(200, b"done\\n")

    exporter.add_route(Route("POST", "/api/v1/alerts", handle, write=True))

A path ending in ``/*`` matches every path under that prefix
(``/reports/*``). ``Request`` carries ``method, path, query`` (name -> last
value), ``headers`` (case-insensitive), ``body`` (bytes), ``client_addr`` and
``user`` (the authenticated basic-auth user, or None). Components contribute
routes through the daemon (see ``agent.cycle``). HTML responses must escape
everything that comes from outside (``html.escape``).

Security, as Prometheus' exporter-toolkit web config: when
``web.basic_auth_users`` is set, every request needs HTTP basic auth
(bcrypt hashes; a verified user/password pair is cached in memory so a
scrape does not pay bcrypt's cost each time). Routes with ``write=True``
additionally, when no users are configured, accept loopback clients only.
A handler may check more (a bearer token, say). TLS is enabled with
``web.tls_cert_file``/``tls_key_file``; the handshake runs in the
connection's own thread, so a slow client cannot block the listener.

The wire protocol (limits, keep-alive, deadlines) is ``agent.webserver``'s.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from agent.errors import UserError
from agent.webserver import HttpError, Limits, Reply, RequestHead, Server
from collector.exposition import CONTENT_TYPE

log = logging.getLogger("opsagent.web")

MAX_BODY = 10 * 1024 * 1024


@dataclass(frozen=True)
class Request:
    """An HTTP request as handlers see it."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    client_addr: str
    user: str | None = None


@dataclass
class Response:
    """What a handler returns."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    """``method path -> handler``; ``write`` routes change state and are protected (see module doc)."""

    method: str
    path: str
    handler: Handler
    write: bool = False


class Authenticator:
    """Basic-auth check against bcrypt hashes, with a cache of verified credentials."""

    def __init__(self, users: Mapping[str, str]):
        self.users = {u: h.encode() for u, h in users.items()}
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.users)

    def check(self, header: str | None) -> str | None:
        """The user name if ``header`` (an Authorization value) is valid, else None."""
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, sep, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        hashed = self.users.get(user)
        if not sep or hashed is None:
            return None
        # lazily: hashlib loads libcrypto (3.5 MB), paid only when users are configured
        import hashlib
        import hmac

        # the cache key is a keyed digest, so the plain password is not kept in memory
        key = hmac.new(hashed, password.encode(), hashlib.sha256).digest()
        with self._lock:
            if key in self._verified:
                return user
        import bcrypt

        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            ok = False
        if ok:
            with self._lock:
                if len(self._verified) > 1024:
                    self._verified.clear()
                self._verified.add(key)
            return user
        return None


def is_loopback(addr: str) -> bool:
    """Whether a client address is on the loopback interface."""
    try:
        ip = ipaddress.ip_address(addr.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class _Snapshot:
    """Rendered exposition bytes plus a lazily computed gzip copy."""

    __slots__ = ("gz", "lock", "plain")

    def __init__(self, plain: bytes):
        self.plain = plain
        self.gz: bytes | None = None
        self.lock = threading.Lock()

    def gzipped(self) -> bytes:
        with self.lock:
            if self.gz is None:
                # wbits 31: a gzip member (mtime 0), without the gzip module. Level 1:
                # the example's 43 KB snapshot gives 8.1 KB in 0.16 ms; level 6 7.1 KB in
                # 0.48 ms, paid once per snapshot that is scraped, i.e. every cycle
                c = zlib.compressobj(1, zlib.DEFLATED, 31)
                self.gz = c.compress(self.plain) + c.flush()
            return self.gz


class Exporter:
    """The agent's HTTP server (``agent.webserver``) and its route table."""

    def __init__(
        self,
        listen_address: tuple[str, int],
        basic_auth_users: Mapping[str, str] | None = None,
        tls_cert_file: Path | None = None,
        tls_key_file: Path | None = None,
        limits: Limits | None = None,
    ):
        self.address = listen_address
        self.limits = limits or Limits(max_body=MAX_BODY)
        self.auth = Authenticator(basic_auth_users or {})
        self.tls = (tls_cert_file, tls_key_file) if tls_cert_file and tls_key_file else None
        self._routes: dict[tuple[str, str], Route] = {}
        self._prefix_routes: list[Route] = []
        self._snapshot = _Snapshot(b"")
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.add_route(Route("GET", "/metrics", self._metrics))
        self.add_route(Route("GET", "/healthz", lambda req: Response(200, b"ok\n")))

    # -- content

    def publish(self, exposition: bytes) -> None:
        """Replace the ``/metrics`` snapshot (called once per collection cycle)."""
        self._snapshot = _Snapshot(exposition)

    def add_route(self, route: Route) -> None:
        """Add or replace a route (see the module docstring)."""
        if route.path.endswith("/*"):
            self._prefix_routes = [
                r for r in self._prefix_routes if (r.method, r.path) != (route.method, route.path)
            ]
            self._prefix_routes.append(route)
            self._prefix_routes.sort(key=lambda r: -len(r.path))
        else:
            self._routes[(route.method, route.path)] = route

    def remove_route(self, method: str, path: str) -> None:
        """Remove a route if present."""
        self._routes.pop((method, path), None)
        self._prefix_routes = [r for r in self._prefix_routes if (r.method, r.path) != (method, path)]

    def set_users(self, users: Mapping[str, str]) -> None:
        """Replace the basic-auth users (on reload)."""
        self.auth = Authenticator(users)

    def find(self, method: str, path: str) -> tuple[Route | None, bool]:
        """The route for ``method path``, and whether the path exists with another method."""
        m = "GET" if method == "HEAD" else method
        route = self._routes.get((m, path))
        if route is not None:
            return route, True
        for r in self._prefix_routes:
            if path.startswith(r.path[:-1]) or path == r.path[:-2]:
                if r.method == m:
                    return r, True
        known = any(p == path for (_, p) in self._routes) or any(
            path.startswith(r.path[:-1]) for r in self._prefix_routes
        )
        return None, known

    def _metrics(self, req: Request) -> Response:
        snap = self._snapshot
        if "gzip" in req.headers.get("Accept-Encoding", ""):
            return Response(200, snap.gzipped(), CONTENT_TYPE, {"Content-Encoding": "gzip"})
        return Response(200, snap.plain, CONTENT_TYPE)

    # -- lifecycle

    def bind(self) -> None:
        """Open the listening socket; a busy or bad address is a UserError (one line, exit 1)."""
        host, port = self.address
        ctx = _ssl_context(*self.tls) if self.tls else None
        try:
            self._server = Server((host, port), self._answer, self.limits, ctx)
        except OSError as e:
            reason = e.strerror or str(e)
            raise UserError(f"cannot listen on {_fmt_addr(host, port)}: {reason}") from None

    def _answer(self, head: RequestHead, client_addr: str, read_body: Callable[[], bytes]) -> Reply:
        """Route, authenticate, read the body, run the handler (``agent.webserver.Application``)."""
        url = urlsplit(head.target)
        route, known = self.find(head.method, url.path)
        if route is None:
            if known:
                return Reply(405, b"method not allowed\n")
            return Reply(404, b"not found\n")
        auth = self.auth
        user = None
        if auth.enabled:
            user = auth.check(head.headers.get("Authorization"))
            if user is None:
                return Reply(401, b"unauthorized\n", headers={"WWW-Authenticate": 'Basic realm="opsagent"'})
        elif route.write and not is_loopback(client_addr):
            return Reply(403, b"write endpoints accept loopback clients only\n")
        body = read_body()
        req = Request(
            method=head.method,
            path=url.path,
            query=dict(parse_qsl(url.query)),
            headers=head.headers,
            body=body,
            client_addr=client_addr,
            user=user,
        )
        try:
            resp = route.handler(req)
        except HttpError:
            raise
        except Exception:
            log.exception("handler failed", extra={"path": url.path})
            resp = Response(500, b"internal error\n")
        return Reply(resp.status, resp.body, resp.content_type, resp.headers)

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a background thread (bind first if needed)."""
        if self._server is None:
            self.bind()
        assert self._server is not None
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http", daemon=True
        )
        self._thread.start()
        log.info("listening", extra={"address": _fmt_addr(*self.address), "tls": bool(self.tls)})

    def shutdown(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
            self._server.server_close()
            self._server = None


def _fmt_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ssl_context(cert: Path, key: Path) -> Any:
    import ssl  # lazily: only a TLS listener pays for it

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as e:
        raise UserError(f"cannot load TLS certificate {cert} / key {key}: {e}") from None
    return ctx
