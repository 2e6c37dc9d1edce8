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
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from agent.errors import UserError
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
                self.gz = gzip.compress(self.plain, compresslevel=6, mtime=0)
            return self.gz


class Exporter:
    """The agent's HTTP server (stdlib ThreadingHTTPServer) and its route table."""

    def __init__(
        self,
        listen_address: tuple[str, int],
        basic_auth_users: Mapping[str, str] | None = None,
        tls_cert_file: Path | None = None,
        tls_key_file: Path | None = None,
    ):
        self.address = listen_address
        self.auth = Authenticator(basic_auth_users or {})
        self.tls = (tls_cert_file, tls_key_file) if tls_cert_file and tls_key_file else None
        self._routes: dict[tuple[str, str], Route] = {}
        self._prefix_routes: list[Route] = []
        self._snapshot = _Snapshot(b"")
        self._server: ThreadingHTTPServer | None = None
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
        server_cls = _Server6 if ":" in host else _Server
        try:
            self._server = server_cls((host, port), _make_handler(self))
        except OSError as e:
            reason = e.strerror or str(e)
            raise UserError(f"cannot listen on {_fmt_addr(host, port)}: {reason}") from None
        if self.tls:
            self._server.ssl_context = _ssl_context(*self.tls)

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
            target=self._server.serve_forever, kwargs={"poll_interval": 0.5}, name="http", daemon=True
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    ssl_context: Any = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None:
            # handshake in the connection's thread, with the handler's timeout
            request.settimeout(_HandlerBase.timeout)
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except OSError as e:  # ssl.SSLError is an OSError
                log.debug("TLS handshake failed", extra={"client": client_address[0], "error": str(e)})
                request.close()
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hangs up mid-response is not an agent error
        log.debug("connection error", extra={"client": client_address[0]}, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _HandlerBase(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: without TCP_NODELAY the second waits
    # for the client's delayed ACK (40 ms per scrape)
    disable_nagle_algorithm = True
    timeout = 30
    server_version = "opsagent"
    sys_version = ""


def _make_handler(exporter: Exporter) -> type[BaseHTTPRequestHandler]:
    class _Handler(_HandlerBase):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # access logs would cost more than the scrape itself

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            route, known = exporter.find(self.command, url.path)
            if route is None:
                if known:
                    self._reject(405, b"method not allowed\n")
                else:
                    self._reject(404, b"not found\n")
                return
            auth = exporter.auth
            user = None
            if auth.enabled:
                user = auth.check(self.headers.get("Authorization"))
                if user is None:
                    self._reject(401, b"unauthorized\n", {"WWW-Authenticate": 'Basic realm="opsagent"'})
                    return
            elif route.write and not is_loopback(self.client_address[0]):
                self._reject(403, b"write endpoints accept loopback clients only\n")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._reject(413, b"request body too large\n")
                return
            body = self.rfile.read(length) if length > 0 else b""
            req = Request(
                method=self.command,
                path=url.path,
                query=dict(parse_qsl(url.query)),
                headers=self.headers,  # type: ignore[arg-type]
                body=body,
                client_addr=self.client_address[0],
                user=user,
            )
            try:
                resp = route.handler(req)
            except Exception:
                log.exception("handler failed", extra={"path": url.path})
                resp = Response(500, b"internal error\n")
            self._send(resp)

        def _reject(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            # the request body was not read: close rather than parse it as the next request
            self.close_connection = True
            self._send(Response(status, body, headers=headers or {}))

        def _send(self, resp: Response) -> None:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch

    return _Handler
