"""The HTTP listener of a real ``opsagent run``: /metrics, /healthz, gzip, TLS, basic auth, routes."""

from __future__ import annotations

import base64
import gzip
import http.client
import socket
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from daemon_harness import Agent, cli, example_config, free_port, wait_for, write_config

from agent.exporter import Exporter, Request, Response, Route, is_loopback
from tests.loopback import loopback_cert


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    tmp = tmp_path_factory.mktemp("exporter")
    # a long interval: every collection after the first would be visible in the cycle counter
    cfg = example_config(tmp, schedule={"interval": "1h", "checks": {}})
    a = Agent(write_config(tmp / "config.yaml", cfg), cfg)
    a.wait_ready()
    yield a
    a.stop()


def test_metrics_serve_the_collection_with_agent_metrics(agent: Agent) -> None:
    status, body, headers = agent.get("/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "node_load1 " in text
    assert 'opsagent_collector_success{collector="load"} 1' in text
    assert 'opsagent_build_info{pyversion="' in text and 'version="0.1.0"} 1' in text
    assert "opsagent_config_last_reload_successful 1" in text
    assert "opsagent_config_last_reload_success_timestamp_seconds " in text
    assert "process_resident_memory_bytes " in text


def test_scrapes_do_not_trigger_collection(agent: Agent) -> None:
    assert wait_for(lambda: agent.metric("opsagent_collection_cycles_total") == 1)
    first = agent.get("/metrics")[1]
    for _ in range(20):
        assert agent.get("/metrics")[1] == first
    assert agent.metric("opsagent_collection_cycles_total") == 1


def test_metrics_are_gzipped_for_clients_that_accept_it(agent: Agent) -> None:
    plain = agent.get("/metrics")[1]
    status, body, headers = agent.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == plain
    assert len(body) < len(plain) / 3


def test_healthz_and_unknown_paths(agent: Agent) -> None:
    assert agent.get("/healthz")[:2] == (200, b"ok\n")
    assert agent.get("/nope")[0] == 404
    assert agent.request("DELETE", "/metrics")[0] == 405


def test_keep_alive_serves_many_requests_on_one_connection(agent: Agent) -> None:
    host, port = agent.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    for _ in range(5):
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        assert r.read() == b"ok\n"
    conn.close()


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = example_config(tmp_path, web={"listen_address": f"127.0.0.1:{port}"})
        r = cli("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"opsagent: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_tls_and_basic_auth(tmp_path: Path) -> None:
    cert, key = loopback_cert(tmp_path, days=1)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    cfg = example_config(
        tmp_path,
        web={"tls_cert_file": str(cert), "tls_key_file": str(key), "basic_auth_users": {"prom": hashed}},
        schedule={"interval": "1h", "checks": {}},
    )
    a = Agent(write_config(tmp_path / "c.yaml", cfg), cfg, scheme="https")
    ctx = ssl.create_default_context(cafile=str(cert))
    good = {"Authorization": "Basic " + base64.b64encode(b"prom:s3cret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"prom:wrong").decode()}
    try:
        a.wait_ready(context=ctx, headers=good)
        status, body, _ = a.get("/metrics", headers=good, context=ctx)
        assert status == 200 and b"node_load1" in body
        for _ in range(3):  # cached verification: still accepted
            assert a.get("/metrics", headers=good, context=ctx)[0] == 200
        status, _, headers = a.get("/metrics", context=ctx)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert a.get("/metrics", headers=bad, context=ctx)[0] == 401
        assert a.get("/metrics", headers={"Authorization": "Basic !!!"}, context=ctx)[0] == 401
        assert a.request("POST", "/-/reload", headers=bad, context=ctx)[0] == 401
        assert a.request("POST", "/-/reload", headers=good, context=ctx)[0] == 200
        # plain HTTP on the TLS port gets nothing useful, and the agent keeps serving
        with pytest.raises((http.client.HTTPException, OSError)):
            urllib.request.urlopen(a.url.replace("https", "http") + "/metrics", timeout=5).read()
        assert a.get("/healthz", headers=good, context=ctx)[0] == 200
    finally:
        a.stop()


def test_write_routes_accept_only_loopback_clients_without_users() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("10.0.0.1") and not is_loopback("192.168.1.2") and not is_loopback("garbage")


def test_routes_added_by_other_parts_are_served() -> None:
    exp = Exporter(("127.0.0.1", free_port()))
    seen: list[Request] = []

    def echo(req: Request) -> Response:
        seen.append(req)
        return Response(201, req.body[::-1], "application/json", {"X-Test": "1"})

    exp.add_route(Route("POST", "/api/v1/alerts", echo, write=True))
    exp.add_route(Route("GET", "/reports/*", lambda req: Response(200, req.path.encode())))
    exp.start()
    try:
        base = f"http://127.0.0.1:{exp.port}"
        r = urllib.request.urlopen(
            urllib.request.Request(base + "/api/v1/alerts?x=1", data=b"abc"), timeout=5
        )
        assert (r.status, r.read(), r.headers["X-Test"]) == (201, b"cba", "1")
        assert seen[0].query == {"x": "1"} and seen[0].client_addr == "127.0.0.1" and seen[0].user is None
        assert (
            urllib.request.urlopen(base + "/reports/2024/a.html", timeout=5).read() == b"/reports/2024/a.html"
        )
    finally:
        exp.shutdown()
