"""A small HTTP/1.1 server: request parsing with limits, keep-alive, deadlines, optional TLS.

Why not ``http.server``: it imports ``http.client``, which imports ``ssl``
(libssl and libcrypto) and the ``email`` package for header parsing -- about
8 MB of resident memory in an agent whose budget is 30 MB, for a server that
only ever answers ``/metrics`` and a few JSON endpoints. This one stands on
``socketserver`` alone and imports ``ssl`` only when TLS is configured.

What it does, and no more:

* request line and header fields parsed by :func:`parse_head` (pure), with
  limits: the whole head at most ``Limits.max_header_bytes`` (431 beyond),
  a bad request line or header field is a 400, a version other than
  HTTP/1.0 or 1.1 a 505;
* bodies by ``Content-Length`` only (``Transfer-Encoding`` gets 411), at most
  ``Limits.max_body`` (413), read only when the application asks for them
  (after authentication), with ``Expect: 100-continue`` honoured;
* keep-alive (HTTP/1.1 by default, HTTP/1.0 on request);
* deadlines: a connection idle between requests is closed after
  ``idle_timeout``; once a request has started, its head must arrive within
  ``header_timeout`` (else 408 and close) -- a slowloris client holds one
  thread for a bounded time and never delays other clients, each of which
  has its own thread; at most ``max_connections`` at once;
* TLS: the handshake runs in the connection's own thread, under the header
  deadline, so a slow client cannot block the listener.
"""

from __future__ import annotations

import logging
import os
import re
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("opsagent.web")

# RFC 9110 token: method names and header field names
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")
_REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class HttpError(Exception):
    """A request the server answers with ``status`` and closes the connection after."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Sizes and deadlines of the server (see the module docstring)."""

    max_header_bytes: int = 16 * 1024
    max_body: int = 10 * 1024 * 1024
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    body_timeout: float = 30.0
    max_connections: int = 128


class Headers(Mapping[str, str]):
    """Header fields of a request, looked up case-insensitively; repeated fields joined by ", "."""

    __slots__ = ("_d",)

    def __init__(self, fields: list[tuple[str, str]] | None = None):
        self._d: dict[str, tuple[str, str]] = {}
        for name, value in fields or []:
            key = name.lower()
            old = self._d.get(key)
            self._d[key] = (name, f"{old[1]}, {value}" if old else value)

    def __getitem__(self, name: str) -> str:
        return self._d[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._d.values())

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"Headers({list(self._d.values())!r})"


@dataclass(frozen=True, slots=True)
class RequestHead:
    """Request line and header fields."""

    method: str
    target: str
    version: tuple[int, int]
    headers: Headers
    content_length: int = 0

    def wants_keep_alive(self) -> bool:
        """Whether the client wants the connection kept open after this request."""
        tokens = {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        if self.version >= (1, 1):
            return "close" not in tokens
        return "keep-alive" in tokens


def parse_head(data: bytes) -> RequestHead:
    """Parse a request head (request line and header fields, without the blank line).

    Raises :class:`HttpError` (400, 505) for anything malformed; lines may end
    in CRLF or a bare LF.
    """
    lines = data.split(b"\n")
    request_line = lines[0].removesuffix(b"\r")
    parts = request_line.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise HttpError(400, "malformed request line")
    method, target, version_field = parts
    m = _VERSION.fullmatch(version_field)
    if m is None:
        raise HttpError(400, "malformed request line")
    ver = (int(m.group(1)), int(m.group(2)))
    if ver not in ((1, 0), (1, 1)):
        raise HttpError(505, "HTTP version not supported")
    if not (target.startswith(b"/") or target == b"*" or target.startswith((b"http://", b"https://"))):
        raise HttpError(400, "malformed request target")
    try:
        target_text = target.decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "request target is not ASCII") from None
    if any(c < 0x21 or c == 0x7F for c in target):
        raise HttpError(400, "control character in request target")
    fields: list[tuple[str, str]] = []
    for raw in lines[1:]:
        line = raw.removesuffix(b"\r")
        if line[:1] in (b" ", b"\t"):  # obsolete line folding (RFC 9112 5.2): reject
            raise HttpError(400, "folded header field")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise HttpError(400, "malformed header field")
        if b"\r" in value or b"\0" in value:
            raise HttpError(400, "control character in header field")
        fields.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
    headers = Headers(fields)
    lengths = {v for k, v in fields if k.lower() == "content-length"}
    length = 0
    if lengths:
        # repeated identical values are allowed (RFC 9110 8.6); anything else is smuggling bait
        declared = lengths.pop() if len(lengths) == 1 else ""
        if not declared.isdigit() or not declared.isascii():
            raise HttpError(400, "invalid Content-Length")
        length = int(declared)
    return RequestHead(method.decode("ascii"), target_text, ver, headers, length)


def http_date(t: float) -> str:
    """An IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), independent of the locale."""
    g = time.gmtime(t)
    return (
        f"{_DAYS[g.tm_wday]}, {g.tm_mday:02d} {_MONTHS[g.tm_mon - 1]} {g.tm_year}"
        f" {g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d} GMT"
    )


@dataclass
class Reply:
    """What the application answers: status, body, content type, extra header fields."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


class Application(Protocol):
    """Answers a request; calls ``read_body()`` only when it wants the body (after its checks)."""

    def __call__(self, head: RequestHead, client_addr: str, read_body: Callable[[], bytes]) -> Reply: ...


class _Closed(Exception):
    """The peer went away or stayed silent: close without an answer."""


class _Connection:
    """One client connection: requests in order, until close, error or deadline."""

    def __init__(self, sock: socket.socket, client_addr: str, app: Application, limits: Limits):
        self.sock = sock
        self.client_addr = client_addr
        self.app = app
        self.limits = limits
        self.buf = bytearray()

    def serve(self) -> None:
        while True:
            try:
                head = self._read_head()
            except _Closed:
                return
            except HttpError as e:
                self._send(Reply(e.status, f"{e.message}\n".encode()), keep_alive=False)
                return
            if head is None:
                return
            keep_alive = self._answer(head)
            if not keep_alive:
                return

    def _answer(self, head: RequestHead) -> bool:
        """Run the application for one request; whether the connection stays open."""
        consumed = False

        def read_body() -> bytes:
            nonlocal consumed
            consumed = True
            if "Transfer-Encoding" in head.headers:
                raise HttpError(411, "chunked request bodies are not supported; send Content-Length")
            n = head.content_length
            if n > self.limits.max_body:
                raise HttpError(413, "request body too large")
            if n and head.version >= (1, 1) and head.headers.get("Expect", "").lower() == "100-continue":
                self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            return self._read_exactly(n)

        try:
            reply = self.app(head, self.client_addr, read_body)
        except HttpError as e:
            self._send(Reply(e.status, f"{e.message}\n".encode()), keep_alive=False)
            return False
        except _Closed:
            return False
        # a body the application did not read would be parsed as the next request: close instead
        has_body = head.content_length > 0 or "Transfer-Encoding" in head.headers
        keep_alive = head.wants_keep_alive() and (consumed or not has_body)
        self._send(reply, keep_alive, head_only=head.method == "HEAD", http10=head.version < (1, 1))
        return keep_alive

    def _recv(self, deadline: float | None, idle: float) -> bool:
        """Receive more bytes into the buffer; False on a clean close by the peer."""
        timeout = idle if deadline is None else deadline - time.monotonic()
        if timeout <= 0:
            raise TimeoutError
        self.sock.settimeout(timeout)
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def _read_head(self) -> RequestHead | None:
        limit = self.limits.max_header_bytes
        deadline: float | None = None
        while True:
            # RFC 9112 2.2: ignore empty lines before a request line
            while self.buf[:2] == b"\r\n" or self.buf[:1] == b"\n":
                del self.buf[: 2 if self.buf[:1] == b"\r" else 1]
            end, skip = _head_end(self.buf)
            if end >= 0:
                if end > limit:
                    raise HttpError(431, "request header fields too large")
                data = bytes(self.buf[:end])
                del self.buf[: end + skip]
                return parse_head(data)
            if len(self.buf) > limit:
                raise HttpError(431, "request header fields too large")
            if self.buf and deadline is None:
                deadline = time.monotonic() + self.limits.header_timeout
            try:
                if not self._recv(deadline, self.limits.idle_timeout):
                    if self.buf:
                        raise _Closed
                    return None
            except TimeoutError:
                if not self.buf:
                    raise _Closed from None  # idle keep-alive connection: close quietly
                raise HttpError(408, "request not received in time") from None
            except OSError:
                raise _Closed from None

    def _read_exactly(self, n: int) -> bytes:
        deadline = time.monotonic() + self.limits.body_timeout
        while len(self.buf) < n:
            try:
                if not self._recv(deadline, self.limits.body_timeout):
                    raise _Closed
            except TimeoutError:
                raise HttpError(408, "request body not received in time") from None
            except OSError:
                raise _Closed from None
        body = bytes(self.buf[:n])
        del self.buf[:n]
        return body

    def _send(self, reply: Reply, keep_alive: bool, head_only: bool = False, http10: bool = False) -> None:
        lines = [
            f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}",
            "Server: opsagent",
            f"Date: {http_date(time.time())}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
        ]
        for k, v in reply.headers.items():
            if any(c in k or c in v for c in "\r\n\0"):  # a handler must not split the response
                log.error("response header with a line break dropped", extra={"header": k})
                continue
            lines.append(f"{k}: {v}")
        if not keep_alive:
            lines.append("Connection: close")
        elif http10:
            lines.append("Connection: keep-alive")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        try:
            self.sock.settimeout(self.limits.body_timeout)
            # one write: with a second small write the client's delayed ACK would stall it
            self.sock.sendall(data if head_only else data + reply.body)
        except OSError:
            pass  # the client hung up: nothing to tell it


def _head_end(buf: bytearray) -> tuple[int, int]:
    """Index of the blank line ending the head, and its length; (-1, 0) if not there yet."""
    crlf = buf.find(b"\r\n\r\n")
    lf = buf.find(b"\n\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf, 2
    return (crlf, 4) if crlf >= 0 else (-1, 0)


class Server(socketserver.ThreadingTCPServer):
    """A threading TCP server speaking :class:`_Connection`'s HTTP/1.1 to ``app``."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        app: Application,
        limits: Limits | None = None,
        ssl_context: Any = None,
    ):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self.limits = limits or Limits()
        self.ssl_context = ssl_context
        self._active = 0
        self._lock = threading.Lock()
        # serve_forever sleeps in select() without a timeout; shutdown() wakes it through this pipe
        self._stop_r, self._stop_w = os.pipe()
        os.set_blocking(self._stop_r, False)
        os.set_blocking(self._stop_w, False)
        self._stop_requested = False
        self._stopped = threading.Event()
        self._stopped.set()
        super().__init__(address, socketserver.BaseRequestHandler)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept connections until :meth:`shutdown`; ``poll_interval`` is ignored.

        socketserver's loop wakes every ``poll_interval`` to look for a
        shutdown request: two wake-ups a second for an agent that collects
        every 15 s (~1 ms of CPU per cycle). Here the listener sleeps until a
        client connects or ``shutdown()`` writes to a pipe.
        """
        self._stopped.clear()
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(self, selectors.EVENT_READ)
                sel.register(self._stop_r, selectors.EVENT_READ)
                while not self._stop_requested:
                    for key, _ in sel.select():
                        if key.fileobj is self and not self._stop_requested:
                            self._accept()
                    self.service_actions()
        finally:
            self._stop_requested = False
            try:
                os.read(self._stop_r, 64)  # the shutdown byte, so a later serve_forever sleeps again
            except BlockingIOError:
                pass
            self._stopped.set()

    def _accept(self) -> None:
        """Accept one connection and hand it to a thread (socketserver's ``_handle_request_noblock``)."""
        try:
            request, client_address = self.get_request()
        except OSError:
            return
        if not self.verify_request(request, client_address):
            self.shutdown_request(request)
            return
        try:
            self.process_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait until it has returned."""
        # set even when not serving (yet): a serve_forever about to start returns at once
        self._stop_requested = True
        try:
            os.write(self._stop_w, b"x")
        except BlockingIOError:  # a byte is already waiting
            pass
        self._stopped.wait()

    def server_close(self) -> None:
        super().server_close()
        for fd in (self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if self._active >= self.limits.max_connections:
                full = True
            else:
                full = False
                self._active += 1
        if full:
            log.warning("too many connections, refusing one", extra={"client": client_address[0]})
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:  # thread start failed
            with self._lock:
                self._active -= 1
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._active -= 1

    def finish_request(self, request: Any, client_address: Any) -> None:
        sock = request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is None:
            _Connection(sock, str(client_address[0]), self.app, self.limits).serve()
            return  # shutdown_request closes the socket
        sock.settimeout(self.limits.header_timeout)
        try:
            tls = self.ssl_context.wrap_socket(sock, server_side=True)
        except OSError as e:  # ssl.SSLError is an OSError
            log.debug("TLS handshake failed", extra={"client": client_address[0], "error": str(e)})
            return
        try:
            _Connection(tls, str(client_address[0]), self.app, self.limits).serve()
        finally:
            tls.close()  # the TLS socket took over the descriptor

    def handle_error(self, request: Any, client_address: Any) -> None:
        # an unexpected error in one connection is logged, never fatal to the server
        log.error("connection error", extra={"client": client_address[0]}, exc_info=True)
