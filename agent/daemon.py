"""``opsagent run``: the long-running agent.

The main thread owns everything that changes state: it runs the collection
cycles and the named checks and applies reloads. Signal handlers and HTTP
threads only queue requests and wake it through a self-pipe, so no lock is
needed around the cycle, and a signal can never interrupt a half-applied
reload.

* ``SIGTERM``/``SIGINT``: stop within seconds -- waiting collectors are
  abandoned (their threads are daemons), the HTTP server is shut down and
  the store closed.
* ``SIGHUP`` and ``POST /-/reload``: reload the configuration; an invalid
  file is rejected with a logged error, the old configuration keeps
  running and ``opsagent_config_last_reload_successful`` becomes 0.
  ``web.listen_address``, TLS files and ``agent.state_file`` need a restart.
"""

from __future__ import annotations

import logging
import math
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from types import FrameType

from agent import __version__
from agent.config import Config, load_config, split_address
from agent.cycle import Cycle, last_check_runs, mark_interrupted, record_skipped
from agent.errors import UserError
from agent.exporter import Exporter, Request, Response, Route
from agent.logging import setup_logging
from agent.malloc import pin_malloc_thresholds
from agent.schedule import CheckSpec, plan
from agent.store import Store, StoreError, StoreKeyValue
from collector.model import Sample, counter, gauge
from collector.schema import ConfigError

log = logging.getLogger("opsagent")
# what platform.python_version() returns ("3.11.7"), without importing platform
_PYTHON_VERSION = sys.version.split()[0]

BUILD_INFO = gauge("opsagent_build_info", "A metric with a constant 1 labelled by opsagent's version.")
RELOAD_OK = gauge(
    "opsagent_config_last_reload_successful", "Whether the last configuration reload attempt was successful."
)
RELOAD_TS = gauge(
    "opsagent_config_last_reload_success_timestamp_seconds",
    "Timestamp of the last successful configuration reload.",
)
CPU = counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
RSS = gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
START = gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")


def system_zone(name: str = "") -> tzinfo:
    """The configured zone, else the system's (TZ, /etc/timezone, /etc/localtime), else UTC."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    candidates = [name] if name else [os.environ.get("TZ", "").lstrip(":")]
    if not name:
        try:
            candidates.append(Path("/etc/timezone").read_text().strip())
        except OSError:
            pass
        try:
            target = os.readlink("/etc/localtime")
            candidates.append(target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "")
        except OSError:
            pass
    for key in candidates:
        if key:
            try:
                return ZoneInfo(key)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    if not name:
        try:
            with open("/etc/localtime", "rb") as f:
                return ZoneInfo.from_file(f, key="localtime")
        except (OSError, ValueError):
            pass
    return UTC


def check_specs(config: Config) -> list[CheckSpec]:
    """The enabled named checks of the configuration."""
    return [
        CheckSpec.parse(name, c.at, c.days) for name, c in config.schedule.checks.items() if c.enabled
    ]


def _rss_bytes() -> float:
    try:
        with open("/proc/self/statm") as f:
            return float(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass
class _Reload:
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    message: str = ""


class Daemon:
    """The agent process: store, HTTP listener, cycle, schedule, signals."""

    def __init__(self, config: Config, config_path: Path, clock: Callable[[], float] = time.time):
        self.config = config
        self.config_path = config_path
        self.clock = clock
        self.started = clock()
        self.reload_ok = True
        self.reload_ts = self.started
        self._stopping = False
        self._requests: deque[_Reload | None] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._signals_installed = False
        # wall-clock time before which no named check can be due (see loop)
        self._checks_idle_until = 0.0
        self.store: Store | None = None
        self.exporter: Exporter | None = None
        self.cycle: Cycle | None = None

    # -- lifecycle

    def open(self) -> None:
        """Bind the listener and open the store (errors here are the user's: one line)."""
        web = self.config.web
        self.exporter = Exporter(
            split_address(web.listen_address), web.basic_auth_users, web.tls_cert_file, web.tls_key_file
        )
        self.exporter.bind()
        try:
            self.store = Store(self.config.agent.state_file)
        except StoreError as e:
            self.exporter.shutdown()
            raise UserError(str(e)) from None
        n = mark_interrupted(self.store, self.clock())
        if n:
            log.warning("check runs interrupted by the previous shutdown", extra={"count": n})
        self.exporter.add_route(Route("POST", "/-/reload", self._http_reload, write=True))
        self.cycle = self._build_cycle(self.config)
        self._install_routes(self.cycle)
        self.cycle.snapshot(self.clock())

    def _build_cycle(self, config: Config) -> Cycle:
        assert self.store is not None and self.exporter is not None
        cycle = Cycle(
            config,
            self.store,
            self.exporter.publish,
            agent_samples=self.agent_samples,
            cancelled=lambda: self._stopping,
        )
        cycle.load_components()
        log.info(
            "collectors configured",
            extra={"collectors": ",".join(cycle.runner.jobs) or "none", "interval": config.schedule.interval},
        )
        return cycle

    def _install_routes(self, cycle: Cycle) -> None:
        assert self.exporter is not None
        for route in cycle.routes:
            self.exporter.add_route(route)

    def agent_samples(self, now: float) -> list[Sample]:
        """The agent's own metrics: build info, reload status, process figures."""
        t = os.times()
        return [
            BUILD_INFO.sample(1, version=__version__, pyversion=_PYTHON_VERSION),
            RELOAD_OK.sample(1 if self.reload_ok else 0),
            RELOAD_TS.sample(self.reload_ts),
            CPU.sample(t.user + t.system),
            RSS.sample(_rss_bytes()),
            START.sample(self.started),
        ]

    def install_signals(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads (main thread only)."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        # The kernel may deliver a signal to any thread (webserver, collector
        # workers); the Python handler then runs only when the main thread
        # leaves select(), which can sleep up to a minute. The wakeup fd is
        # written by the C-level handler in whichever thread got the signal,
        # so the main loop wakes at once and runs the handler.
        self._signals_installed = True
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._requests.append(None)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:  # the pipe is full: the loop is already awake
            pass

    def stop(self) -> None:
        """Ask the main loop to stop (safe from signal handlers and other threads)."""
        self._stopping = True
        self._wake()

    def run(self) -> int:
        """Open, serve until stopped, close. Returns the exit code."""
        pin_malloc_thresholds()  # before the threads start: see agent.malloc
        self.open()
        assert self.exporter is not None and self.cycle is not None
        # collect before serving: the socket already queues scrapes, and the first
        # answer is a full snapshot rather than the agent's own metrics only
        self.cycle.collect(None, self.clock())
        self.exporter.start()
        log.info("opsagent started", extra={"version": __version__, "config": self.config_path})
        try:
            self.loop()
        finally:
            self.close()
        log.info("opsagent stopped")
        return 0

    def close(self) -> None:
        """Shut the listener down, close the stages and the store."""
        if self.exporter is not None:
            self.exporter.shutdown()
        if self.cycle is not None:
            self.cycle.close()
        if self.store is not None:
            self.store.close()
        if self._signals_installed:
            signal.set_wakeup_fd(-1)
            self._signals_installed = False
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the loop

    def loop(self) -> None:
        """Collect when due, run named checks when due, apply reloads; until stopped."""
        assert self.store is not None
        first = StoreKeyValue(self.store, "agent")
        raw = first.get("first_started")
        if raw is None:
            first.put("first_started", repr(self.started).encode())
            first_started = self.started
        else:
            first_started = float(raw.decode())
        while not self._stopping:
            self._apply_reloads()
            cycle = self.cycle
            assert cycle is not None
            due = cycle.runner.due(time.monotonic())
            if due:
                cycle.collect(due, self.clock())
            if self._stopping:
                break
            wait = cycle.next_due_in(time.monotonic())
            specs = check_specs(self.config) if self.clock() >= self._checks_idle_until else []
            if specs:
                tz = system_zone(self.config.agent.timezone)
                last = {s.name: first_started for s in specs} | last_check_runs(self.store)
                now = self.clock()
                grace = float(self.config.schedule.misfire_grace)
                p = plan(specs, last, now, tz, grace)
                for d in p.skipped:
                    log.warning("check skipped: missed by more than misfire_grace", extra={"check": d.name})
                    record_skipped(self.store, d, now, grace)
                for d in p.due:
                    if self._stopping:
                        break
                    cycle.run_check(d, self.clock)
                if p.next_at is not None:
                    wait = min(wait, max(0.0, p.next_at - self.clock()))
                if not p.due and not p.skipped:
                    # Nothing can fall due before next_at (runs only ever add to `last`),
                    # so the zone lookup, the SQL query and the calendar arithmetic
                    # wait until then; at least every 5 minutes, to notice a new zone.
                    self._checks_idle_until = min(p.next_at or math.inf, now + 300.0)
            elif self._checks_idle_until > self.clock():
                wait = min(wait, max(0.0, self._checks_idle_until - self.clock()))
            # wake at least every minute, so a wall-clock jump is noticed
            self._sleep(min(wait, 60.0))

    def _sleep(self, seconds: float) -> None:
        if self._stopping or self._requests:
            return
        try:
            ready, _, _ = select.select([self._wake_r], [], [], seconds)
        except InterruptedError:  # pragma: no cover - PEP 475 retries select itself
            return
        if ready:
            os.read(self._wake_r, 4096)

    # -- reload

    def _http_reload(self, req: Request) -> Response:
        r = _Reload()
        self._requests.append(r)
        self._wake()
        if not r.done.wait(60):
            return Response(503, b"reload still pending\n")
        return Response(200 if r.ok else 500, (r.message + "\n").encode())

    def _apply_reloads(self) -> None:
        while self._requests:
            r = self._requests.popleft()
            ok, message = self.reload()
            if r is not None:
                r.ok, r.message = ok, message
                r.done.set()

    def reload(self) -> tuple[bool, str]:
        """Load the config file again; keep the running config if it is invalid."""
        assert self.cycle is not None and self.exporter is not None
        try:
            new = load_config(self.config_path)
            # components read their own files (rules, templates) in setup: build before switching
            new_cycle = self._build_cycle(new)
        except ConfigError as e:
            self.reload_ok = False
            for p in e.problems:
                log.error("config reload failed, keeping the running config", extra={"problem": str(p)})
            self.cycle.snapshot(self.clock())
            return False, str(e)
        except Exception as e:  # a component's bug must not take the running agent down
            self.reload_ok = False
            log.exception("config reload failed, keeping the running config")
            self.cycle.snapshot(self.clock())
            return False, f"{type(e).__name__}: {e}"
        old = self.config
        for what, changed in (
            ("web.listen_address", old.web.listen_address != new.web.listen_address),
            ("web.tls_cert_file", (old.web.tls_cert_file, old.web.tls_key_file)
             != (new.web.tls_cert_file, new.web.tls_key_file)),
            ("agent.state_file", old.agent.state_file != new.agent.state_file),
        ):
            if changed:
                log.warning("setting changed; it takes effect after a restart", extra={"key": what})
        setup_logging(new.agent.log_level, new.agent.log_format)
        self.exporter.set_users(new.web.basic_auth_users)
        new_cycle.latest = {k: v for k, v in self.cycle.latest.items() if k in new_cycle.runner.jobs}
        self.cycle.close()
        for route in self.cycle.routes:
            self.exporter.remove_route(route.method, route.path)
        self._install_routes(new_cycle)
        self.config = new
        self._checks_idle_until = 0.0  # the new schedule is planned at once
        self.cycle = new_cycle
        self.reload_ok = True
        self.reload_ts = self.clock()
        self.cycle.snapshot(self.reload_ts)
        log.info("configuration reloaded", extra={"config": self.config_path})
        return True, "config reloaded"
