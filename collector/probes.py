"""Service probes, named as blackbox_exporter names them: TCP, HTTP(S), process, systemd unit.

Every probe runs in its own thread with its own deadline, so a silent server
delays nobody but itself. A dead target is data (``probe_success 0`` with a
reason), never an exception.
"""

from __future__ import annotations

import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from collector.model import Evidence, Sample, gauge
from collector.registry import Context, register
from collector.schema import Duration, Regex, compile_regex

if TYPE_CHECKING:
    import ssl

# ssl, http.client and subprocess are imported inside the probes that use them: ssl alone
# maps libssl and libcrypto (5 MB resident), http.client adds the email package.

PROBE_SUCCESS = gauge("probe_success", "Whether the probe succeeded (1) or failed (0).")
PROBE_DURATION = gauge("probe_duration_seconds", "How long the probe took to complete.")
HTTP_STATUS = gauge("probe_http_status_code", "HTTP status code of the response (0: no response).")
HTTP_DURATION = gauge(
    "probe_http_duration_seconds", "HTTP request time by phase: connect, tls, processing, transfer."
)
HTTP_CONTENT_LENGTH = gauge("probe_http_content_length", "Length of the HTTP response body in bytes.")
HTTP_SSL = gauge("probe_http_ssl", "Whether the final HTTP request used TLS (1) or not (0).")
SSL_EXPIRY = gauge(
    "probe_ssl_earliest_cert_expiry", "Unix time at which the certificate the endpoint presented expires."
)
TLS_VERSION = gauge("probe_tls_version_info", "The TLS version negotiated with the endpoint (value is 1).")
FAILED_REGEX = gauge(
    "probe_failed_due_to_regex", "Whether the probe failed because a body or expect regex did not match."
)
FAILURE_INFO = gauge(
    "opsagent_probe_failure_info", "Why the probe failed, as a short reason label (value is 1)."
)
PROCESS_COUNT = gauge("opsagent_probe_processes", "Number of processes matching a process probe.")
UNIT_ACTIVE = gauge(
    "opsagent_systemd_unit_active", "Whether the systemd unit is active (1), not active (0), or unknown (-1)."
)
UNIT_STATE = gauge("node_systemd_unit_state", "systemd unit state as node_exporter: 1 for the current state.")

UNIT_STATES = ("active", "activating", "deactivating", "inactive", "failed")
TIERS = ("", "production", "important", "test")
DEFAULT_TIMEOUT = Duration(5)
ProbeKind = Literal["tcp", "http", "process", "systemd"]


@dataclass(frozen=True)
class ProbeTarget:
    """One probe: what to check, how, and the labels its samples carry."""

    name: str
    kind: ProbeKind
    # tcp: host:port; http: URL; systemd: unit name; process: unused
    target: str = ""
    timeout: Duration = DEFAULT_TIMEOUT
    tier: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # tcp
    send: str = ""
    expect: Regex | None = None
    tls: bool = False
    # http
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    valid_status_codes: tuple[int, ...] = ()
    body_regex: Regex | None = None
    body_not_regex: Regex | None = None
    verify_tls: bool = True
    ca_file: Path | None = None
    # process
    process_name: str = ""
    cmdline_regex: Regex | None = None

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.tier not in TIERS:
            out.append(("tier", f"must be one of production, important, test; got {self.tier!r}"))
        if self.timeout <= 0:
            out.append(("timeout", "must be positive"))
        if self.kind == "tcp":
            try:
                split_host_port(self.target)
            except ValueError as e:
                out.append(("target", str(e)))
        elif self.kind == "http":
            u = urlsplit(self.target)
            if u.scheme not in ("http", "https") or not u.hostname:
                out.append(("target", f"must be an http:// or https:// URL; got {self.target!r}"))
        elif self.kind == "process":
            if not self.process_name and not self.cmdline_regex:
                out.append(("process_name", "a process probe needs process_name or cmdline_regex"))
        elif self.kind == "systemd" and not self.target:
            out.append(("target", "a systemd probe needs the unit name as target"))
        for key in self.labels:
            if key in ("probe", "kind", "target", "tier") or not key.isidentifier():
                out.append((f"labels.{key}", "reserved or invalid label name"))
        return out

    def base_labels(self) -> dict[str, str]:
        lab = {**self.labels, "probe": self.name, "kind": self.kind}
        if self.target:
            lab["target"] = self.target
        if self.tier:
            lab["tier"] = self.tier
        return lab


@dataclass(frozen=True)
class ProbesConfig:
    """Service probes (TCP, HTTP(S), process presence, systemd unit state)."""

    enabled: bool | None = None
    # blackbox-style checks every 30 s (Prometheus scrapes blackbox_exporter every 1m by
    # default); SLA response times are minutes. Set schedule.interval to probe every cycle
    interval: Duration | None = Duration(30)
    # default: the longest probe timeout plus 2s, so the framework never cuts a probe short
    timeout: Duration | None = None
    targets: tuple[ProbeTarget, ...] = ()

    def __post_init__(self) -> None:
        if self.timeout is None and self.targets and all(t is not None for t in self.targets):
            longest = max(float(t.timeout) for t in self.targets)
            object.__setattr__(self, "timeout", Duration(longest + 2))

    def check(self) -> list[tuple[str, str]]:
        seen: set[str] = set()
        out = []
        for i, t in enumerate(self.targets):
            if t is not None and t.name in seen:
                out.append((f"targets[{i}].name", f"duplicate probe name {t.name!r}"))
            if t is not None:
                seen.add(t.name)
        return out


def split_host_port(target: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError on anything else."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be host:port; got {target!r}")
    return host.strip("[]"), int(port)


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    """socket.create_connection, with an ASCII host passed as bytes.

    getaddrinfo() encodes a str host with the "idna" codec, which imports
    encodings.idna, stringprep and unicodedata (+0.4 MB RSS) on the first
    probe; ASCII names and addresses need none of it.
    """
    addr: str | bytes = host.encode("ascii") if host.isascii() else host
    return socket.create_connection((addr, port), timeout=timeout)  # type: ignore[arg-type]


@dataclass
class Outcome:
    """What one probe found: success, samples beyond probe_success, and why it failed."""

    success: bool = False
    reason: str = ""
    detail: str = ""
    samples: list[tuple[Any, float, dict[str, str]]] = field(default_factory=list)
    known: bool = True

    def add(self, desc: Any, value: float, **labels: str) -> None:
        self.samples.append((desc, value, labels))

    def fail(self, reason: str, detail: str) -> Outcome:
        self.success, self.reason, self.detail = False, reason, detail
        return self


def _reason_of(e: BaseException) -> str:
    tls = sys.modules.get("ssl")  # an SSL error means ssl was imported
    if tls is not None and isinstance(e, tls.SSLCertVerificationError):
        return "certificate"
    if tls is not None and isinstance(e, tls.SSLError):
        return "tls"
    if isinstance(e, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, socket.gaierror):
        return "dns"
    return "error"


class Deadline:
    """Time left until a probe must give up (monotonic clock)."""

    def __init__(self, seconds: float, monotonic: Callable[[], float] = time.monotonic):
        self.monotonic = monotonic
        self.end = monotonic() + seconds

    def left(self) -> float:
        left = self.end - self.monotonic()
        if left <= 0:
            raise TimeoutError("probe deadline exceeded")
        return left


def _tls_context(verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    import ssl

    if verify:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _tls_facts(sock: ssl.SSLSocket, out: Outcome) -> None:
    from collector.certificates import decode_cert

    version = sock.version()
    if version:
        out.add(TLS_VERSION, 1, version=version.replace("TLSv", "TLS "))
    der = sock.getpeercert(binary_form=True)
    if der:
        try:
            out.add(SSL_EXPIRY, decode_cert(der).not_after)
        except ValueError:
            pass  # an undecodable peer certificate is reported by the handshake, not here


def probe_tcp(t: ProbeTarget, deadline: Deadline) -> Outcome:
    """Connect (optionally over TLS), send, and wait for the expected answer."""
    out = Outcome()
    host, port = split_host_port(t.target)
    sock: socket.socket | None = None
    try:
        sock = _connect(host, port, deadline.left())
        if t.tls:
            sock.settimeout(deadline.left())
            sock = _tls_context(t.verify_tls, t.ca_file).wrap_socket(sock, server_hostname=host)
            _tls_facts(sock, out)
        if t.send:
            sock.settimeout(deadline.left())
            sock.sendall(t.send.encode())
        if t.expect:
            rx = compile_regex(t.expect)
            buf = b""
            while True:
                sock.settimeout(deadline.left())
                chunk = sock.recv(4096)
                if chunk:
                    buf = (buf + chunk)[-65536:]
                if rx.search(buf.decode("utf-8", errors="replace")):
                    break
                if not chunk:
                    out.add(FAILED_REGEX, 1)
                    return out.fail("expect", f"connection closed before {t.expect!r} was received")
            out.add(FAILED_REGEX, 0)
        out.success = True
        return out
    except (OSError, ValueError) as e:
        return out.fail(_reason_of(e), str(e) or type(e).__name__)
    finally:
        if sock is not None:
            sock.close()


def probe_http(t: ProbeTarget, deadline: Deadline) -> Outcome:
    """One HTTP(S) request with phases timed, status and body checked, the certificate read."""
    import http.client

    out = Outcome()
    u = urlsplit(t.target)
    https = u.scheme == "https"
    host = u.hostname or ""
    port = u.port or (443 if https else 80)
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    out.add(HTTP_SSL, 1 if https else 0)
    status = 0
    phases: dict[str, float] = {}
    sock: socket.socket | None = None
    try:
        t0 = time.monotonic()
        sock = _connect(host, port, deadline.left())
        phases["connect"] = time.monotonic() - t0
        if https:
            t1 = time.monotonic()
            sock.settimeout(deadline.left())
            sock = _tls_context(t.verify_tls, t.ca_file).wrap_socket(sock, server_hostname=host)
            phases["tls"] = time.monotonic() - t1
            _tls_facts(sock, out)
        conn = http.client.HTTPConnection(host, port, timeout=deadline.left())
        conn.sock = sock
        t2 = time.monotonic()
        headers = {"User-Agent": "opsagent-probe", **t.headers}
        conn.request(t.method, path, body=t.body.encode() if t.body else None, headers=headers)
        sock.settimeout(deadline.left())
        resp = conn.getresponse()
        phases["processing"] = time.monotonic() - t2
        status = resp.status
        t3 = time.monotonic()
        body = bytearray()
        while len(body) < 10 * 1024 * 1024:
            deadline.left()  # http.client may already have closed the socket: check, don't set
            chunk = resp.read(65536)
            if not chunk:
                break
            body += chunk
        phases["transfer"] = time.monotonic() - t3
        out.add(HTTP_CONTENT_LENGTH, len(body))
    except (OSError, ValueError, http.client.HTTPException) as e:
        out.add(HTTP_STATUS, status)
        for phase, secs in phases.items():
            out.add(HTTP_DURATION, secs, phase=phase)
        return out.fail(_reason_of(e), str(e) or type(e).__name__)
    finally:
        if sock is not None:
            sock.close()
    out.add(HTTP_STATUS, status)
    for phase, secs in phases.items():
        out.add(HTTP_DURATION, secs, phase=phase)
    ok_codes = t.valid_status_codes
    if (status not in ok_codes) if ok_codes else not 200 <= status < 300:
        return out.fail("status", f"HTTP status {status}")
    text = body.decode("utf-8", errors="replace")
    if t.body_regex or t.body_not_regex:
        bad = bool(t.body_regex and not compile_regex(t.body_regex).search(text)) or bool(
            t.body_not_regex and compile_regex(t.body_not_regex).search(text)
        )
        out.add(FAILED_REGEX, 1 if bad else 0)
        if bad:
            return out.fail("regex", "response body did not satisfy body_regex/body_not_regex")
    out.success = True
    return out


@dataclass(frozen=True, slots=True)
class ProcessEntry:
    """One process as seen in /proc: its pid, short name and command line."""

    pid: int
    comm: str
    cmdline: str


def read_processes(proc: Path, comm: bool = True, cmdline: bool = True) -> list[ProcessEntry]:
    """Every process under ``proc``; processes that exit while read are skipped.

    ``comm=False`` / ``cmdline=False`` leave that field empty without reading its file:
    each read is a syscall round per process per cycle, and most configurations match
    on only one of the two.
    """
    out: list[ProcessEntry] = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return out
    base = os.fspath(proc)
    for name in entries:
        if not name.isdigit():
            continue
        # plain string paths and binary reads: pathlib and text decoding doubled the cost of
        # this loop, which runs over every process each cycle
        short = line = ""
        try:
            if comm:
                with open(f"{base}/{name}/comm", "rb") as f:
                    short = f.read().rstrip(b"\n").decode(errors="replace")
            if cmdline:
                with open(f"{base}/{name}/cmdline", "rb") as f:
                    raw = f.read()
                line = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out.append(ProcessEntry(int(name), short, line))
    return out


def count_processes(t: ProbeTarget, procs: list[ProcessEntry]) -> int:
    """Processes matching the probe's name (exact comm) and command-line regex (RE2)."""
    rx = compile_regex(t.cmdline_regex) if t.cmdline_regex else None
    n = 0
    for p in procs:
        if t.process_name and p.comm != t.process_name:
            continue
        if rx is not None and not rx.search(p.cmdline):
            continue
        n += 1
    return n


def parse_systemctl_show(text: str) -> dict[str, str]:
    """``Key=value`` lines of ``systemctl show`` into a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def probe_systemd(t: ProbeTarget, deadline: Deadline) -> Outcome:
    """ActiveState of a unit from ``systemctl show``; unknown (not failed) without systemd."""
    import subprocess

    out = Outcome()
    try:
        r = subprocess.run(
            ["systemctl", "show", "--property=ActiveState,SubState,LoadState", "--", t.target],
            capture_output=True, text=True, timeout=deadline.left(), check=False,
        )
    except FileNotFoundError:
        out.known = False
        return out.fail("unknown", "systemctl not found: this machine does not run systemd")
    except (subprocess.TimeoutExpired, TimeoutError):
        out.known = False
        return out.fail("unknown", "systemctl did not answer in time")
    props = parse_systemctl_show(r.stdout)
    state = props.get("ActiveState", "")
    if r.returncode != 0 or not state:
        out.known = False
        why = (r.stderr.strip().splitlines() or ["no ActiveState in systemctl output"])[0]
        return out.fail("unknown", f"systemd state unknown: {why}")
    if props.get("LoadState") == "not-found":
        out.add(UNIT_ACTIVE, 0)
        return out.fail("not_found", f"unit {t.target} is not installed")
    for s in UNIT_STATES:
        out.add(UNIT_STATE, 1 if s == state else 0, state=s)
    out.add(UNIT_ACTIVE, 1 if state == "active" else 0)
    if state != "active":
        return out.fail("inactive", f"unit {t.target} is {state} ({props.get('SubState', '?')})")
    out.success = True
    return out


_PROBERS: Mapping[str, Callable[[ProbeTarget, Deadline], Outcome]] = {
    "tcp": probe_tcp,
    "http": probe_http,
    "systemd": probe_systemd,
}


class ProbeWorkers:
    """Prober threads kept across cycles; another starts whenever none is idle.

    A pool per cycle cost a thread start and teardown every cycle. Here a
    probe never queues behind a busy worker (a prober stuck in a name lookup
    keeps its thread; the next probe gets a new one), at most ``limit``
    threads exist, and a worker idle for ``idle_timeout`` seconds exits, so
    the threads of a collector dropped on reload go away by themselves.
    """

    def __init__(self, limit: int = 64, idle_timeout: float = 300.0):
        self.limit = limit
        self.idle_timeout = idle_timeout
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting for work that no submitted item has claimed yet
        self._threads = 0

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn()`` on an idle worker, or a new one; its result or exception in the future."""
        fut: Future[Any] = Future()
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                start = False
            else:
                start = self._threads < self.limit
                self._threads += start
        self._queue.put((fut, fn))
        if start:
            threading.Thread(target=self._work, name="probe", daemon=True).start()
        return fut

    @property
    def threads(self) -> int:
        """Worker threads alive now."""
        return self._threads

    def _work(self) -> None:
        while True:
            try:
                fut, fn = self._queue.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody counts on this worker: leave
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue  # a submitter just claimed this worker: its item is on the way
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as e:  # the caller sees it through the future
                    fut.set_exception(e)
            del fut, fn  # do not keep the last result alive while idle
            with self._lock:
                self._idle += 1


@register("probes", config=ProbesConfig, default=True)
class ProbesCollector:
    """Service probes: TCP, HTTP(S), process presence, systemd units, each with its own deadline."""

    name = "probes"

    def __init__(self, config: ProbesConfig):
        self.config = config
        self.workers = ProbeWorkers()

    def collect(self, ctx: Context) -> Iterator[Sample]:
        targets = list(self.config.targets)
        if not targets:
            return
        wanted = [t for t in targets if t.kind == "process"]
        procs = (
            read_processes(
                ctx.paths.proc,
                comm=any(t.process_name for t in wanted),
                cmdline=any(t.cmdline_regex for t in wanted),
            )
            if wanted
            else []
        )
        results: dict[str, tuple[Outcome, float]] = {}
        # a worker per probe: a queued probe would otherwise wait out a slow one
        futures: dict[Future[Any], ProbeTarget] = {}
        for t in targets:
            if t.kind == "process":
                results[t.name] = (self._process(t, procs), 0.0)
            else:
                futures[self.workers.submit(partial(self._timed, t))] = t
        longest = max((float(t.timeout) for t in futures.values()), default=0.0)
        done, _ = wait_futures(futures, timeout=longest + 1.0)
        for fut in futures:
            fut.cancel()  # a probe not even started by now is not wanted any more
        for fut, t in futures.items():
            if fut in done:
                results[t.name] = fut.result()
            else:  # the prober overran its own deadline (e.g. a stuck name lookup)
                results[t.name] = (Outcome().fail("timeout", "probe deadline exceeded"), float(t.timeout))
        now = ctx.now()
        for t in targets:
            out, secs = results[t.name]
            lab = t.base_labels()
            if out.known:
                yield PROBE_SUCCESS.sample(1 if out.success else 0, lab)
            if t.kind != "process":
                yield PROBE_DURATION.sample(secs, lab)
            for desc, value, extra in out.samples:
                yield desc.sample(value, lab, **extra)
            if not out.success:
                yield FAILURE_INFO.sample(1, lab, reason=out.reason)
                ctx.add_evidence(Evidence("probe", f"{t.name} ({t.kind} {t.target}): {out.detail}", lab, now))

    @staticmethod
    def _timed(t: ProbeTarget) -> tuple[Outcome, float]:
        t0 = time.monotonic()
        deadline = Deadline(float(t.timeout))
        try:
            out = _PROBERS[t.kind](t, deadline)
        except TimeoutError as e:
            out = Outcome().fail("timeout", str(e))
        return out, time.monotonic() - t0

    @staticmethod
    def _process(t: ProbeTarget, procs: list[ProcessEntry]) -> Outcome:
        out = Outcome()
        n = count_processes(t, procs)
        out.add(PROCESS_COUNT, n)
        if n == 0:
            what = t.process_name or f"command line ~ {t.cmdline_regex}"
            return out.fail("not_running", f"no process matches {what}")
        out.success = True
        return out
