"""`opsagent check NAME` end to end: the real CLI over a fixture tree, real filesystems, real rules.

The filesystems are real tmpfs mounts made in a private mount namespace
(``unshare -m``), reported with the fstype the fixture's /proc/1/mounts gives,
so a 97 % full filesystem is a real statvfs, and nothing leaks to the host.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from daemon_harness import ROOT, cli

from collector.registry import discover

FIXTURE_PROC = ROOT / "tests" / "fixtures" / "host" / "proc"
ESC = "\x1b[2J\x1b]0;owned\x07"


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                       capture_output=True)
    return r.returncode == 0


needs_mounts = pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m (mount namespaces)")


def make_tree(tmp: Path, log_text: str = "service started\n") -> Path:
    root = tmp / "root"
    (root / "proc" / "1").mkdir(parents=True)
    for name in ("meminfo", "loadavg", "stat"):
        shutil.copy(FIXTURE_PROC / name, root / "proc" / name)
    (root / "proc" / "1" / "mounts").write_text(
        "/dev/sdz1 /data ext4 rw,relatime 0 0\n/dev/sdz2 /srv ext4 rw,relatime 0 0\n"
    )
    for d in ("data", "srv", "var/log"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "var" / "log" / "app.log").write_text(log_text)
    return root


def write_config(tmp: Path, root: Path, gap: str = "0s") -> Path:
    collectors: dict[str, Any] = {name: {"enabled": False} for name in discover()}
    collectors.update({
        "filesystem": {"enabled": True, "mount_points_exclude": "^/(dev|proc|sys|run)($|/)"},
        "meminfo": {"enabled": True},
        "load": {"enabled": True},
        "logs": {"enabled": True, "files": [{"paths": ["/var/log/app.log"], "from_beginning": True}]},
    })
    cfg = {
        "agent": {"instance": "testhost", "timezone": "UTC", "language": "en",
                  "state_file": str(tmp / "state.db")},
        "checks": {"sample_gap": gap},
        "collectors": collectors,
    }
    path = tmp / "opsagent.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_check(root: Path, config: Path, *args: str, data_kib: int = 0, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    """`opsagent check ...` in a private mount namespace with tmpfs on /data and /srv."""
    script = (
        f'mount -t tmpfs -o size=1m tmpfs "{root}/data" && mount -t tmpfs -o size=1m tmpfs "{root}/srv" && '
        + (f'dd if=/dev/zero of="{root}/data/fill" bs=1k count={data_kib} 2>/dev/null && '
           if data_kib else "")
        + 'exec "$@"'
    )
    cmd = [sys.executable, "-m", "agent.cli", "check", *args, "-c", str(config),
           "--path.procfs", str(root / "proc"), "--path.rootfs", str(root)]
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", *cmd], capture_output=True, text=True, timeout=120,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def runs(state: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(state)
    try:
        return db.execute(
            "SELECT r.name, r.status, c.origin, c.status, c.urgent FROM check_runs r"
            " JOIN check_results c ON c.run_id = r.id ORDER BY r.id"
        ).fetchall()
    finally:
        db.close()


@needs_mounts
def test_full_filesystem_fails_the_check_with_p2_and_exit_1(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    config = write_config(tmp_path, root, gap="1s")
    r = run_check(root, config, "morning", data_kib=1000)  # 1000 KiB of a 1 MiB tmpfs: 97-98 % full
    assert r.returncode == 1, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "filesystem /data" in ln)
    assert line.split()[0] == "FAIL" and "P2" in line and "/data" in line and "full" in line, r.stdout
    srv = next(ln for ln in r.stdout.splitlines() if "filesystem /srv" in ln)
    assert srv.split()[0] == "OK"
    assert "\x1b[" not in r.stdout  # piped: plain text
    assert "1 P1/P2 finding" in r.stdout
    assert runs(tmp_path / "state.db") == [("morning", "ok", "cli", "FAIL", 1)]


@needs_mounts
def test_healthy_tree_exits_0_with_ok_items_and_json_schema(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    config = write_config(tmp_path, root)
    r = run_check(root, config, "evening", "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    data = json.loads(r.stdout)
    assert data["check"] == "evening" and data["instance"] == "testhost"
    assert data["finished"] >= data["started"]
    items = {i["item"]: i for i in data["items"]}
    for name in ("filesystem /data", "filesystem /srv", "memory", "cpu and load", "log /var/log/app.log"):
        assert items[name]["status"] == "OK", (name, items.get(name))
    for it in data["items"]:
        assert set(it) >= {"area", "item", "status", "level", "finding", "labels"}
        assert it["status"] in ("OK", "WARN", "FAIL", "UNKNOWN")
    assert data["summary"]["FAIL"] == 0 and data["summary"]["urgent"] == 0
    assert data["summary"]["OK"] == sum(1 for i in data["items"] if i["status"] == "OK")
    assert "security" not in {i["area"] for i in data["items"]}  # not in the evening profile


@needs_mounts
def test_log_line_with_escape_sequences_is_printed_inert(tmp_path: Path) -> None:
    root = make_tree(tmp_path, log_text=f"boot ok\nERROR payment failed {ESC} after retry\n")
    config = write_config(tmp_path, root)
    r = run_check(root, config, "morning")
    assert r.returncode == 0, r.stderr  # a matched log line alone is a WARN, not a P1/P2
    line = next(ln for ln in r.stdout.splitlines() if "log /var/log/app.log" in ln)
    assert line.split()[0] == "WARN" and "error" in line
    assert "payment failed \\x1b[2J\\x1b]0;owned\\x07 after retry" in line
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout


def test_history_lists_stored_runs_and_unknown_check_is_an_error(tmp_path: Path) -> None:
    from agent.checks import CheckItem, CheckReport
    from agent.checks_stage import record_run
    from agent.store import Store

    root = make_tree(tmp_path)
    config = write_config(tmp_path, root)
    store = Store(tmp_path / "state.db")
    try:
        items = (CheckItem("resources", "filesystem /", "FAIL", "P2 full", "P2", {}, "alert"),
                 CheckItem("logs", "log /x", "OK", "fine"))
        record_run(store, CheckReport("morning", "testhost", 1_700_000_000, 1_700_000_006, items))
        record_run(store, CheckReport("evening", "testhost", 1_700_030_000, 1_700_030_004, items[1:]))
    finally:
        store.close()
    r = cli("check", "history", "-c", str(config))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["STARTED", "CHECK", "ORIGIN"]
    assert lines[1].split() == ["2023-11-15", "06:33", "evening", "cli", "ok", "OK", *"10000"]
    assert lines[2].split() == ["2023-11-14", "22:13", "morning", "cli", "ok", "FAIL", *"10101"]
    r = cli("check", "history", "-c", str(config), "--json")
    assert [row["name"] for row in json.loads(r.stdout)] == ["evening", "morning"]
    r = cli("check", "nightly", "-c", str(config))
    assert r.returncode == 1 and "unknown check 'nightly'" in r.stderr and "Traceback" not in r.stderr


def test_bad_profile_exits_2_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("checks:\n  profiles:\n    morning:\n      areas: [disks]\n")
    r = cli("check", "morning", "-c", str(path))
    assert r.returncode == 2
    assert "bad.yaml:4" in r.stderr and "unknown area 'disks'" in r.stderr and "Traceback" not in r.stderr


def test_first_check_says_no_baseline_yet_and_findings_keep_the_reason(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "var" / "log" / "dir.log").mkdir()  # a directory where a log should be: cannot be read
    collectors: dict[str, Any] = {name: {"enabled": False} for name in discover()}
    collectors.update({
        "baseline": {"enabled": True, "areas": ["accounts", "groups"]},
        "logs": {"enabled": True, "files": [{"paths": ["/var/log/dir.log"]}]},
    })
    cfg = {"agent": {"instance": "testhost", "timezone": "UTC", "language": "en",
                     "state_file": str(tmp_path / "state.db")},
           "checks": {"sample_gap": "0s"}, "collectors": collectors}
    config = tmp_path / "opsagent.yaml"
    config.write_text(yaml.safe_dump(cfg))
    paths = ("--path.procfs", str(root / "proc"), "--path.rootfs", str(root))

    def items() -> dict[str, dict[str, Any]]:
        r = cli("check", "morning", "-c", str(config), "--json", *paths)
        assert r.returncode == 0, r.stderr
        return {i["item"]: i for i in json.loads(r.stdout)["items"]}

    got = items()
    # nothing recorded yet: the run cannot claim the host matches a baseline
    accounts = got["baseline accounts"]
    assert accounts["status"] == "WARN" and "no baseline recorded" in accounts["finding"]
    # the alert's line keeps why the log cannot be read
    log = got["log /var/log/dir.log"]
    assert log["source"] == "alert" and log["level"] == "P3" and "not a regular file" in log["finding"]
    r = cli("baseline", "accept", "-c", str(config), "--root", str(root), "--proc", str(root / "proc"))
    assert r.returncode == 0, r.stderr
    got = items()
    assert (got["baseline accounts"]["status"], got["baseline accounts"]["finding"]) == (
        "OK", "matches the baseline")


def _on_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with stdout on a pseudo-terminal; returns the exit code and what the terminal got."""
    import pty

    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "agent.cli", *args], stdout=slave, stderr=subprocess.PIPE,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm", **env})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(timeout=60), b"".join(chunks).decode()


def test_terminal_gets_colour_but_log_text_stays_inert(tmp_path: Path) -> None:
    root = make_tree(tmp_path, log_text=f"boot ok\nERROR payment failed {ESC} after retry\n")
    collectors: dict[str, Any] = {name: {"enabled": False} for name in discover()}
    collectors["logs"] = {"enabled": True, "files": [{"paths": ["/var/log/app.log"], "from_beginning": True}]}
    cfg = {"agent": {"instance": "testhost", "timezone": "UTC", "language": "en",
                     "state_file": str(tmp_path / "state.db")},
           "checks": {"sample_gap": "0s"}, "collectors": collectors}
    config = tmp_path / "opsagent.yaml"
    config.write_text(yaml.safe_dump(cfg))
    args = ["check", "evening", "-c", str(config),
            "--path.procfs", str(root / "proc"), "--path.rootfs", str(root)]
    code, out = _on_terminal(args, {})
    assert code == 0, out
    line = next(ln for ln in out.splitlines() if "log /var/log/app.log" in ln)
    assert "\x1b[33mWARN" in line  # coloured status on a terminal
    assert "payment failed \\x1b[2J\\x1b]0;owned\\x07 after retry" in line  # the log's escapes shown, not run
    assert "\x1b]0;" not in out and "\x1b[2J" not in out and "\x07" not in out
    code, out = _on_terminal(args, {"NO_COLOR": "1"})
    assert code == 0 and "\x1b" not in out
