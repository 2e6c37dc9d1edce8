"""The real daemon: reloads, clean shutdown, named checks across restarts, lazy heavy imports."""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from daemon_harness import ROOT, Agent, example_config, wait_for, write_config

from agent.store import Store, StoreKeyValue


def _start(tmp: Path, **sections: dict) -> Agent:
    cfg = example_config(tmp, **sections)
    a = Agent(write_config(tmp / "config.yaml", cfg), cfg)
    a.wait_ready()
    return a


def test_sigterm_stops_within_5_seconds(tmp_path: Path) -> None:
    a = _start(tmp_path, schedule={"interval": "1s", "checks": {}})
    assert wait_for(lambda: (a.metric("opsagent_collection_cycles_total") or 0) >= 2)
    elapsed = a.stop()
    assert a.proc.returncode == 0
    assert elapsed < 5
    assert "opsagent stopped" in a.log()
    # the store was closed cleanly: the WAL was checkpointed away
    assert not (tmp_path / "state.db-wal").exists() or (tmp_path / "state.db-wal").stat().st_size == 0


def test_reload_by_sighup_and_http_keeps_old_config_when_invalid(tmp_path: Path) -> None:
    a = _start(tmp_path, schedule={"interval": "1h", "checks": {}})
    try:
        assert a.metric("opsagent_config_last_reload_successful") == 1
        body = a.get("/metrics")[1].decode()
        assert 'opsagent_collector_success{collector="uname"}' in body

        # valid change over HTTP: disable a collector
        cfg = yaml.safe_load(a.config_path.read_text())
        cfg["collectors"]["uname"] = {"enabled": False}
        a.config_path.write_text(yaml.safe_dump(cfg))
        status, text, _ = a.request("POST", "/-/reload")
        assert (status, text) == (200, b"config reloaded\n")
        assert 'collector="uname"' not in a.get("/metrics")[1].decode()

        # invalid config by SIGHUP: rejected, logged, the metric flips, the old config keeps running
        a.config_path.write_text(a.config_path.read_text() + "bogus_section: 1\n")
        a.signal(signal.SIGHUP)
        assert wait_for(lambda: a.metric("opsagent_config_last_reload_successful") == 0)
        assert "config reload failed" in a.log() and "bogus_section: unknown key" in a.log()
        assert a.get("/healthz")[0] == 200
        assert 'opsagent_collector_success{collector="load"} 1' in a.get("/metrics")[1].decode()

        # invalid config by HTTP: 500 with the reason
        status, text, _ = a.request("POST", "/-/reload")
        assert status == 500 and b"bogus_section: unknown key" in text

        # fixed again: back to 1, with a newer success timestamp
        before = a.metric("opsagent_config_last_reload_success_timestamp_seconds")
        a.config_path.write_text(yaml.safe_dump(cfg))
        a.signal(signal.SIGHUP)
        assert wait_for(lambda: a.metric("opsagent_config_last_reload_successful") == 1), a.log()
        assert (a.metric("opsagent_config_last_reload_success_timestamp_seconds") or 0) >= (before or 0)
    finally:
        a.stop()
    assert a.proc.returncode == 0


def _signal_thread(pid: int, sig: int) -> int:
    """tgkill(2): deliver sig to one non-main thread of pid, as the kernel may do for kill(2).

    Worker threads come and go (an idle collector worker exits), so a thread that
    is gone by the time it is signalled (ESRCH) is passed over for the next one.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    sys_tgkill = 234  # x86_64
    for _ in range(50):
        for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid):
            if libc.syscall(sys_tgkill, pid, tid, int(sig)) == 0:
                return tid
            if ctypes.get_errno() != errno.ESRCH:
                raise OSError(ctypes.get_errno(), "tgkill")
        time.sleep(0.1)
    raise AssertionError("the daemon has no thread besides the main one")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="tgkill syscall number is x86_64's")
def test_signal_delivered_to_a_worker_thread_is_handled_at_once(tmp_path: Path) -> None:
    # a process-directed signal may land on any thread; the main loop sleeps in
    # select() for up to a minute and must not wait for that to handle it
    a = _start(tmp_path, schedule={"interval": "1h", "checks": {}})
    try:
        pid = a.proc.pid
        a.config_path.write_text(a.config_path.read_text() + "bogus_section: 1\n")
        time.sleep(1)  # let the main loop settle into its long sleep
        _signal_thread(pid, signal.SIGHUP)
        assert wait_for(lambda: a.metric("opsagent_config_last_reload_successful") == 0, timeout=15), a.log()
        _signal_thread(pid, signal.SIGTERM)
        a.proc.wait(15)
        assert a.proc.returncode == 0 and "opsagent stopped" in a.log()
    finally:
        a.stop()


def _utc_hhmm(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%H:%M")


def test_missed_check_runs_once_at_startup_and_state_survives_restart(tmp_path: Path) -> None:
    # the agent was installed three hours ago and then was down
    store = Store(tmp_path / "state.db")
    StoreKeyValue(store, "agent").put("first_started", repr(time.time() - 3 * 3600).encode())
    store.close()
    checks = {
        "morning": {"at": _utc_hhmm(timedelta(minutes=-10))},  # missed, within grace: runs once
        "evening": {"at": _utc_hhmm(timedelta(minutes=-150))},  # missed by more than grace: skipped
        "weekly": {"at": _utc_hhmm(timedelta(minutes=+30))},  # not due yet
    }
    sections = {
        "agent": {"timezone": "UTC"},
        "schedule": {"interval": "1h", "misfire_grace": "1h", "checks": checks},
    }

    def runs() -> list[tuple[str, str]]:
        db = sqlite3.connect(tmp_path / "state.db")
        try:
            return [tuple(r) for r in db.execute("SELECT name, status FROM check_runs ORDER BY id")]
        finally:
            db.close()

    a = _start(tmp_path, **sections)
    try:
        assert wait_for(lambda: ("morning", "ok") in runs())
        body = a.get("/metrics")[1].decode()
        assert 'opsagent_check_runs_total{check="morning",status="ok"} 1' in body
    finally:
        a.stop()
    assert sorted(runs()) == [("evening", "skipped"), ("morning", "ok")]

    a = _start(tmp_path, **sections)  # restart: nothing runs again
    try:
        time.sleep(1)
    finally:
        a.stop()
    assert sorted(runs()) == [("evening", "skipped"), ("morning", "ok")]


def _modules_loaded_by_example_daemon(tmp_path: Path, probe: str) -> str:
    """Run the example daemon's parse, open, one collection and close in a fresh interpreter,
    then ``probe`` (Python printing what it found in sys.modules); return what it printed."""
    path = write_config(tmp_path / "c.yaml", example_config(tmp_path))
    script = f"""
import sys, time
from pathlib import Path
from agent.cli import build_parser
from agent.config import load_config
from agent.daemon import Daemon
build_parser().parse_args(["run", "-c", {str(path)!r}])
d = Daemon(load_config({str(path)!r}), Path({str(path)!r}))
d.open()
d.cycle.collect(None, time.time())
d.close()
{probe}
"""
    r = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_example_config_does_not_import_ssh_or_snmp_clients(tmp_path: Path) -> None:
    probe = "heavy = ('paramiko', 'pysnmp', 'prometheus_client')\n" \
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    assert _modules_loaded_by_example_daemon(tmp_path, probe) == "[]"


def test_example_daemon_keeps_costly_stdlib_modules_out(tmp_path: Path) -> None:
    # each of these maps a shared library or loads a large module into every
    # running agent (ssl/hashlib: libcrypto; shutil: libbz2, liblzma; idna:
    # unicodedata) although the example configuration needs none of them
    probe = """
costly = ("ssl", "_ssl", "_hashlib", "hmac", "http", "email", "shutil", "bz2", "lzma", "tempfile",
          "difflib", "getpass", "platform", "subprocess", "encodings.idna", "unicodedata")
print(sorted(m for m in sys.modules if m in costly or m.split('.')[0] in costly))
"""
    assert _modules_loaded_by_example_daemon(tmp_path, probe) == "[]"
