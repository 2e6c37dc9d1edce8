"""The agent's HTTP/1.1 server against misbehaving clients: real sockets on 127.0.0.1."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from agent.exporter import Exporter, Request, Response, Route
from agent.webserver import HttpError, Limits, parse_head


@pytest.fixture
def server() -> Iterator[Exporter]:
    exp = Exporter(
        ("127.0.0.1", 0),
        limits=Limits(max_header_bytes=4096, max_body=1024, header_timeout=1.0, idle_timeout=2.0),
    )
    exp.publish(b"# TYPE up gauge\nup 1\n")
    exp.add_route(Route("POST", "/echo", lambda req: Response(200, req.body[::-1]), write=True))
    exp.start()
    yield exp
    exp.shutdown()


def raw(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send bytes, read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def scrape(port: int) -> float:
    """Seconds one /metrics request takes."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    assert conn.getresponse().read() == b"# TYPE up gauge\nup 1\n"
    conn.close()
    return time.monotonic() - t0


@pytest.mark.parametrize(
    "request_line",
    [b"GARBAGE", b"GET /metrics", b"GET  /metrics HTTP/1.1", b"GET metrics HTTP/1.1", b"G(T / HTTP/1.1"],
)
def test_bad_request_line_is_400_and_closes(server: Exporter, request_line: bytes) -> None:
    out = raw(server.port, request_line + b"\r\nHost: x\r\n\r\n")
    assert status(out) == 400 and b"Connection: close" in out


def test_unsupported_version_is_505(server: Exporter) -> None:
    assert status(raw(server.port, b"GET /metrics HTTP/2.0\r\n\r\n")) == 505


def test_oversized_headers_are_431(server: Exporter) -> None:
    big = b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 100) for i in range(60))
    assert status(raw(server.port, big + b"\r\n")) == 431
    # also when the client never ends the head
    assert status(raw(server.port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 8000)) == 431


def test_malformed_header_and_content_length_are_400(server: Exporter) -> None:
    assert status(raw(server.port, b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n")) == 400
    assert status(raw(server.port, b"GET /metrics HTTP/1.1\r\nX: a\r\n folded\r\n\r\n")) == 400
    bad_len = b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    assert status(raw(server.port, bad_len)) == 400


def test_slowloris_times_out_without_blocking_other_scrapers(server: Exporter) -> None:
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    # dribble a byte at a time: each recv arrives in time, but the head as a whole does not
    for _ in range(3):
        assert scrape(server.port) < 0.5
        try:
            slow.sendall(b"X")
        except OSError:
            break
        time.sleep(0.3)
    out = b""
    while chunk := slow.recv(4096):
        out += chunk
    slow.close()
    assert status(out) == 408
    assert time.monotonic() - t0 < 3  # header_timeout is 1 s


def test_idle_keep_alive_connection_is_closed(server: Exporter) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        t0 = time.monotonic()
        assert s.recv(10) == b""  # closed by the server, without an answer
        assert 1.5 < time.monotonic() - t0 < 5


def test_many_idle_connections_do_not_block_a_scrape(server: Exporter) -> None:
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    try:
        assert scrape(server.port) < 0.5
    finally:
        for s in idle:
            s.close()


def test_keep_alive_pipelining_and_bodies(server: Exporter) -> None:
    reqs = (
        b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /healthz HTTP/1.1\r\n\r\n"
        b"HEAD /metrics HTTP/1.1\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    out = raw(server.port, reqs)
    assert out.count(b"HTTP/1.1 200 OK") == 4
    parts = out.split(b"\r\n\r\n")
    assert parts[1].startswith(b"cba") and parts[2].startswith(b"ok\n")
    # HEAD: Content-Length of the body, but no body; the next response follows directly
    assert b"Content-Length: 21" in parts[2] and parts[3].startswith(b"HTTP/1.1 200")
    assert parts[4] == b"ok\n"


def test_http10_closes_unless_asked_to_keep_alive(server: Exporter) -> None:
    out = raw(server.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert status(out) == 200 and out.endswith(b"ok\n")


def test_body_limits(server: Exporter) -> None:
    too_big = b"POST /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + b"a" * 5000
    assert status(raw(server.port, too_big)) == 413
    chunked = b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert status(raw(server.port, chunked)) == 411
    # a body that never arrives in full: 408, not a thread held forever
    short = b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(short)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b""  # peer closed half-way: nothing to answer


def test_expect_100_continue(server: Exporter) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hi\r\n")  # trailing CRLF before the next request is ignored
        s.sendall(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(4096):
            out += chunk
    assert out.count(b" 200 OK") == 2 and b"\r\n\r\nih" in out


def test_unread_body_of_a_rejected_request_closes_the_connection(server: Exporter) -> None:
    # 404 before the body is read: the body must not be parsed as the next request
    out = raw(server.port, b"POST /nope HTTP/1.1\r\nContent-Length: 27\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")
    assert status(out) == 404 and out.count(b"HTTP/1.1") == 1


def test_concurrent_scrapers_while_a_handler_is_slow(server: Exporter) -> None:
    gate = threading.Event()

    def slow(req: Request) -> Response:
        gate.wait(5)
        return Response(200, b"slow\n")

    server.add_route(Route("GET", "/slow", slow))
    t = threading.Thread(target=raw, args=(server.port, b"GET /slow HTTP/1.1\r\nConnection: close\r\n\r\n"))
    t.start()
    try:
        assert all(scrape(server.port) < 0.5 for _ in range(5))
    finally:
        gate.set()
        t.join()


def test_parse_head() -> None:
    head = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\naccept-encoding: gzip\r\nX-A: 1\r\nx-a: 2")
    assert (head.method, head.target, head.version) == ("GET", "/metrics?x=1", (1, 1))
    assert head.headers["Accept-Encoding"] == "gzip" and head.headers.get("X-A") == "1, 2"
    assert head.wants_keep_alive() and head.content_length == 0
    assert not parse_head(b"GET / HTTP/1.1\nConnection: close").wants_keep_alive()
    assert not parse_head(b"GET / HTTP/1.0").wants_keep_alive()
    assert parse_head(b"POST / HTTP/1.1\r\nContent-Length: 7\r\ncontent-length: 7").content_length == 7
    for bad in (b"GET / HTTP/1.1\r\nContent-Length: -1", b"GET /\x01 HTTP/1.1", b"GET /\xff HTTP/1.1"):
        with pytest.raises(HttpError) as e:
            parse_head(bad)
        assert e.value.status == 400
