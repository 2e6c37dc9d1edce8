"""Service probes against real servers on 127.0.0.1: TCP, HTTP, HTTPS with a generated certificate."""

from __future__ import annotations

import datetime as dt
import http.server
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collector.model import Sample
from collector.probes import (
    ProbesCollector,
    ProbesConfig,
    ProbeTarget,
    count_processes,
    parse_systemctl_show,
    read_processes,
)
from collector.registry import Context, Paths
from collector.schema import Builder, Duration, Regex, compose
from tests.loopback import free_port


def make_cert(tmp: Path, days: float, name: str = "localhost") -> tuple[Path, Path, float]:
    """A self-signed certificate for 127.0.0.1/localhost valid for ``days``; returns (cert, key, notAfter)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_after = now + dt.timedelta(days=days)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path, not_after.timestamp()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"status: all systems go" if self.path == "/health" else b"nothing here"
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[int, Path, float]]:
    cert, key, not_after = make_cert(tmp_path, days=5)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv.server_address[1], cert, not_after
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def http_server() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def run(*targets: ProbeTarget, paths: Paths | None = None) -> tuple[list[Sample], Context]:
    ctx = Context(config=None, paths=paths or Paths(), clock=lambda: 1_700_000_000.0)
    samples = list(ProbesCollector(ProbesConfig(targets=targets)).collect(ctx))
    return samples, ctx


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def test_https_probe_reports_certificate_expiry_and_tls_version(
    https_server: tuple[int, Path, float],
) -> None:
    port, cert, not_after = https_server
    t = ProbeTarget("web", "http", f"https://127.0.0.1:{port}/health", ca_file=cert, tier="production",
                    body_regex=Regex("all systems go"), labels={"team": "ops"})
    samples, _ = run(t)
    assert value(samples, "probe_success", probe="web", tier="production", team="ops") == 1
    assert value(samples, "probe_http_status_code", probe="web") == 200
    assert value(samples, "probe_http_ssl", probe="web") == 1
    assert value(samples, "probe_ssl_earliest_cert_expiry", probe="web") == pytest.approx(not_after, abs=1)
    assert value(samples, "probe_tls_version_info", probe="web") == 1
    assert value(samples, "probe_failed_due_to_regex", probe="web") == 0
    assert value(samples, "probe_http_duration_seconds", probe="web", phase="tls") is not None


def test_untrusted_certificate_fails_with_reason_unless_verification_is_off(
    https_server: tuple[int, Path, float],
) -> None:
    port, _, not_after = https_server
    strict = ProbeTarget("strict", "http", f"https://127.0.0.1:{port}/health")
    lax = ProbeTarget("lax", "http", f"https://127.0.0.1:{port}/health", verify_tls=False)
    samples, ctx = run(strict, lax)
    assert value(samples, "probe_success", probe="strict") == 0
    assert value(samples, "opsagent_probe_failure_info", probe="strict", reason="certificate") == 1
    assert any("certificate verify failed" in e.text for e in ctx.evidence if e.labels["probe"] == "strict")
    assert value(samples, "probe_success", probe="lax") == 1
    # the expiry is read even when the chain is not verified
    assert value(samples, "probe_ssl_earliest_cert_expiry", probe="lax") == pytest.approx(not_after, abs=1)


def test_http_status_and_body_regex_failures(http_server: int) -> None:
    base = f"http://127.0.0.1:{http_server}"
    samples, _ = run(
        ProbeTarget("missing", "http", f"{base}/nope"),
        ProbeTarget("allowed404", "http", f"{base}/nope", valid_status_codes=(404,)),
        ProbeTarget("wrongbody", "http", f"{base}/health", body_regex=Regex("^maintenance")),
    )
    assert value(samples, "probe_success", probe="missing") == 0
    assert value(samples, "probe_http_status_code", probe="missing") == 404
    assert value(samples, "opsagent_probe_failure_info", probe="missing", reason="status") == 1
    assert value(samples, "probe_success", probe="allowed404") == 1
    assert value(samples, "probe_success", probe="wrongbody") == 0
    assert value(samples, "probe_failed_due_to_regex", probe="wrongbody") == 1


def test_tcp_open_and_closed_ports() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    closed = free_port()
    try:
        samples, ctx = run(
            ProbeTarget("open", "tcp", f"127.0.0.1:{port}"),
            ProbeTarget("closed", "tcp", f"127.0.0.1:{closed}", tier="production"),
        )
    finally:
        listener.close()
    assert value(samples, "probe_success", probe="open") == 1
    assert value(samples, "probe_success", probe="closed", tier="production") == 0
    assert value(samples, "opsagent_probe_failure_info", probe="closed", reason="refused") == 1
    assert any(e.labels["probe"] == "closed" for e in ctx.evidence)


def test_hung_server_hits_its_deadline_without_stalling_other_probes() -> None:
    hung = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) but never answers
    banner = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve_banner() -> None:
        banner.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = banner.accept()
            except TimeoutError:
                continue
            conn.sendall(b"SSH-2.0-Test\r\n")
            conn.close()

    th = threading.Thread(target=serve_banner, daemon=True)
    th.start()
    try:
        t0 = time.monotonic()
        samples, _ctx = run(
            ProbeTarget("hung", "tcp", f"127.0.0.1:{hung.getsockname()[1]}", expect=Regex("^SSH-2.0"),
                        timeout=Duration(1.5)),
            ProbeTarget("ssh", "tcp", f"127.0.0.1:{banner.getsockname()[1]}", expect=Regex("^SSH-2.0"),
                        timeout=Duration(1.5)),
        )
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        th.join()
        hung.close()
        banner.close()
    assert value(samples, "probe_success", probe="hung") == 0
    assert value(samples, "opsagent_probe_failure_info", probe="hung", reason="timeout") == 1
    assert value(samples, "probe_success", probe="ssh") == 1
    # the good probe finished quickly; the whole run is bounded by the hung probe's own deadline
    assert value(samples, "probe_duration_seconds", probe="ssh") < 1.0  # type: ignore[operator]
    assert elapsed < 3.5


def test_process_presence_by_name_and_cmdline(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid, comm, cmd in [(1, "systemd", b"/sbin/init\0"), (42, "nginx", b"nginx: master process\0"),
                           (43, "java", b"/usr/bin/java\0-jar\0/opt/app/billing.jar\0")]:
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(comm + "\n")
        (proc / str(pid) / "cmdline").write_bytes(cmd)
    procs = read_processes(proc)
    assert {p.pid for p in procs} == {1, 42, 43}
    samples, _ctx = run(
        ProbeTarget("web", "process", process_name="nginx"),
        ProbeTarget("billing", "process", cmdline_regex=Regex(r"billing\.jar")),
        ProbeTarget("db", "process", process_name="postgres", tier="production"),
        paths=Paths(proc=proc),
    )
    assert value(samples, "opsagent_probe_processes", probe="web") == 1
    assert value(samples, "probe_success", probe="billing") == 1
    assert value(samples, "probe_success", probe="db") == 0
    assert value(samples, "opsagent_probe_processes", probe="db") == 0
    assert count_processes(ProbeTarget("x", "process", process_name="java"), procs) == 1


def test_process_probe_on_the_real_proc_finds_this_test() -> None:
    samples, _ = run(ProbeTarget("me", "process", cmdline_regex=Regex(f"python.*pytest|{os.getpid()}")))
    assert value(samples, "probe_success", probe="me") == 1


def test_systemd_state_parsed_and_unknown_without_systemd() -> None:
    props = parse_systemctl_show("ActiveState=failed\nSubState=failed\nLoadState=loaded\n")
    assert props["ActiveState"] == "failed"
    # this machine's systemctl either works or says systemd is not running: never a crash
    samples, _ctx = run(ProbeTarget("cron", "systemd", "cron.service", timeout=Duration(5)))
    active = value(samples, "opsagent_systemd_unit_active", probe="cron")
    if value(samples, "probe_success", probe="cron") is None:
        assert value(samples, "opsagent_probe_failure_info", probe="cron", reason="unknown") == 1
        assert active is None
    else:
        assert active in (0, 1)


def test_config_errors_name_the_key() -> None:
    text = "targets:\n  - {name: a, kind: tcp, target: nohostport}\n" \
           "  - {name: b, kind: http, target: ftp://x}\n" \
           "  - {name: c, kind: process}\n  - {name: d, kind: tcp, target: '1.2.3.4:5', tier: prod}\n" \
           "  - {name: e, kind: tcp, target: 'x:1', expect: '(unclosed'}\n"
    b = Builder("probes.yml")
    b.build(ProbesConfig, compose(text, "probes.yml"))
    msgs = [str(p) for p in b.problems]
    assert any("targets[0].target" in m and "host:port" in m for m in msgs)
    assert any("targets[1].target" in m for m in msgs)
    assert any("targets[2].process_name" in m for m in msgs)
    assert any("targets[3].tier" in m for m in msgs)
    assert any("targets[4].expect" in m and "invalid regular expression" in m for m in msgs)
    assert all(m.startswith("probes.yml:") for m in msgs)



def test_default_rules_classify_by_tier_and_certificate_expiry(https_server: tuple[int, Path, float]) -> None:
    from rule_harness import firing

    port, _, _ = https_server
    closed = free_port()
    samples, _ = run(
        ProbeTarget("shop", "tcp", f"127.0.0.1:{closed}", tier="production"),
        ProbeTarget("staging", "tcp", f"127.0.0.1:{closed}", tier="test"),
        ProbeTarget("portal", "http", f"https://127.0.0.1:{port}/health", verify_tls=False),
    )
    alerts = firing("probes.yml", [samples], time.time())
    down = {a.labels["probe"]: a.level for a in alerts["ServiceDown"]}
    assert down == {"shop": "P1", "staging": "P3"}
    (cert,) = alerts["EndpointCertificateExpiring"]
    assert cert.level == "P2"  # 5 days left: within 7 days
    assert "expires in" in cert.annotation("summary") and "过期" in cert.annotation("summary", "zh-CN")


@pytest.mark.skipif(not __import__("shutil").which("promtool"), reason="promtool not installed")
def test_exposition_of_this_areas_collectors_passes_promtool(tmp_path: Path) -> None:
    import subprocess

    from collector.backups import BackupJob, BackupsCollector, BackupsConfig, BackupSet
    from collector.baseline import BaselineCollector, BaselineConfig
    from collector.configfiles import ConfigFilesCollector, ConfigFilesConfig
    from collector.exposition import render

    (tmp_path / "app.conf").write_text("a=1\n")
    (tmp_path / "b.tar").write_bytes(b"x" * 10)
    ctx = Context(config=None, clock=time.time)
    samples, _ = run(ProbeTarget("down", "tcp", f"127.0.0.1:{free_port()}"),
                     ProbeTarget("me", "process", cmdline_regex=Regex("pytest")))
    samples += list(ConfigFilesCollector(ConfigFilesConfig(paths=(f"{tmp_path}/app.conf",))).collect(ctx))
    samples += list(BaselineCollector(BaselineConfig(setuid_dirs=("/usr/bin",))).collect(ctx))
    job = BackupJob("j", full=BackupSet(f"{tmp_path}/*.tar", max_age=Duration(86400)))
    samples += list(BackupsCollector(BackupsConfig(jobs=(job,))).collect(ctx))
    r = subprocess.run(["promtool", "check", "metrics"], input=render(samples), capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_process_probes_read_only_the_file_they_match_on(tmp_path: Path) -> None:
    # /proc/<pid>/comm is not read when no probe matches on the name, nor cmdline
    # when none matches on the command line: a process missing the other file still counts
    proc = tmp_path / "proc"
    (proc / "7").mkdir(parents=True)
    (proc / "7" / "cmdline").write_bytes(b"/usr/bin/java\0-jar\0billing.jar\0")
    (proc / "8").mkdir(parents=True)
    (proc / "8" / "comm").write_text("nginx\n")
    billing = ProbeTarget("billing", "process", cmdline_regex=Regex(r"billing\.jar"))
    samples, _ctx = run(billing, paths=Paths(proc=proc))
    assert value(samples, "opsagent_probe_processes", probe="billing") == 1
    samples, _ctx = run(ProbeTarget("web", "process", process_name="nginx"), paths=Paths(proc=proc))
    assert value(samples, "opsagent_probe_processes", probe="web") == 1
    assert [p.pid for p in read_processes(proc)] == []  # both files needed when both are asked for


class SlowHandler(Handler):
    def do_GET(self) -> None:
        time.sleep(2.2)  # slower than ServiceSlow's P3 threshold (2 s), under the probe's timeout
        super().do_GET()


def test_default_rules_slow_service_is_p3_after_five_minutes() -> None:
    from rule_harness import firing

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        samples, _ = run(ProbeTarget("portal", "http", f"http://127.0.0.1:{srv.server_address[1]}/health",
                                     tier="production"))
    finally:
        srv.shutdown()
        srv.server_close()
    assert value(samples, "probe_success") == 1
    assert firing("probes.yml", [samples] * 3, time.time()).get("ServiceSlow") is None  # 2 min: pending
    (slow,) = firing("probes.yml", [samples] * 7, time.time())["ServiceSlow"]  # 6 min: for 5m elapsed
    assert slow.level == "P3" and slow.labels["probe"] == "portal"
    assert "answers slowly" in slow.annotation("summary")
