"""Memory of a daemon that runs for years: what must not creep (issue 2, ``bench/hours.py``)."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

from daemon_harness import ROOT

from collector.logstate import READ_SLACK, Budget, FileState, LogReader


def _read_all(path: Path, state: FileState, now: float) -> bytes:
    reader = LogReader(path, state, now=now, budget=Budget(64 << 20), from_beginning=True)
    return b"".join(reader.blocks())


def test_reading_a_log_that_grew_a_little_allocates_a_little(tmp_path: Path) -> None:
    # os.pread allocates the whole size asked for: 8 MiB per watched file per cycle
    # (mostly for nothing appended) left glibc's heaps holding memory for good
    log = tmp_path / "app.log"
    log.write_bytes(b"first line\n")
    state = FileState()
    assert _read_all(log, state, 1000.0) == b"first line\n"
    with log.open("ab") as f:
        f.write(b"second line\n")
    tracemalloc.start()
    try:
        assert _read_all(log, state, 1015.0) == b"second line\n"
        assert _read_all(log, state, 1030.0) == b""  # nothing appended: nothing to read
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * READ_SLACK, peak


def test_a_log_longer_than_the_slack_is_still_read_whole_in_one_cycle(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    state = FileState()
    assert _read_all(log, state, 1000.0) == b""
    lines = b"".join(b"line %06d %s\n" % (i, b"x" * 80) for i in range(3 * READ_SLACK // 90))
    with log.open("ab") as f:
        f.write(lines + b"partial")  # a last line without its newline waits for it
    assert _read_all(log, state, 1015.0) == lines
    with log.open("ab") as f:
        f.write(b" line\n")
    assert _read_all(log, state, 1030.0) == b"partial line\n"


# What the daemon's allocator does with freed memory, in a fresh interpreter each:
# after one large buffer (a big log read, a large scrape) glibc raised its thresholds
# and kept the next ~10 MiB of freed buffers resident for good.
_FREED_BUFFERS = """
import sys
from agent.malloc import pin_malloc_thresholds

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

if sys.argv[1] == "pin":
    assert pin_malloc_thresholds()
big = bytearray(8 << 20)  # touched: zero-filled
del big
before = rss()
bufs = [bytearray(b"x" * (512 << 10)) for _ in range(24)]  # 12 MiB, touched
del bufs
print(round(rss() - before, 1))
"""


def _kept_after_free(mode: str) -> float:
    r = subprocess.run([sys.executable, "-c", _FREED_BUFFERS, mode], capture_output=True, text=True,
                       cwd=ROOT, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    return float(r.stdout)


def test_the_daemon_gives_freed_buffers_back_to_the_kernel() -> None:
    assert _kept_after_free("pin") < 2.0
    # the glibc behaviour this guards against (if it changes, the pin is moot, not wrong)
    assert _kept_after_free("default") > 8.0


def test_opsagent_run_leaves_its_allocator_giving_freed_buffers_back(tmp_path: Path) -> None:
    from daemon_harness import example_config, write_config

    path = write_config(tmp_path / "c.yaml", example_config(tmp_path))
    script = f"""
import sys
import agent.daemon
from agent.cli import main
agent.daemon.Daemon.loop = lambda self: None  # start (collect once) and stop at once
assert main(["run", "-c", {str(path)!r}]) == 0
sys.argv[1:] = ["started"]
""" + _FREED_BUFFERS
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       cwd=ROOT, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.split()[-1]) < 2.0


def test_a_label_that_changes_every_cycle_does_not_grow_the_rendering_cache() -> None:
    # a pid or a duration as a label value: a new series every cycle, for years
    from collector import exposition
    from collector.model import Sample

    stable = [Sample("node_load1", {"instance": f"h{i}"}, float(i)) for i in range(300)]
    for cycle in range(5000):
        churn = Sample("probe_worker_cpu", {"pid": str(100000 + cycle), "probe": "app"}, 1.0)
        text = exposition.render([*stable, churn])
        assert f'probe_worker_cpu{{pid="{100000 + cycle}",probe="app"}} 1\n' in text
    assert 'node_load1{instance="h7"} 7\n' in text and text.count("probe_worker_cpu{") == 1
    assert len(exposition._LABELS) < 3 * (len(stable) + 1) + 2 * 256  # bounded by one render, not by 5000


def test_series_of_a_label_that_changes_every_cycle_are_forgotten_once_no_rule_can_see_them() -> None:
    from collector.model import Sample
    from rules.history import History
    from rules.promql import Engine, parse

    h = History(6 * 3600, keep={"worker_cpu": 600.0})  # the rules read 10 min of it
    for i in range(1440):  # 6 h of 15 s cycles, a new pid every cycle
        t = 1000 + 15 * i
        h.append([Sample("worker_cpu", {"pid": str(100000 + i)}, 1.0), Sample("up", {}, 1.0)], t, "c")
    # what a rule sees is unchanged: the pids of the last 10 minutes, the newest one current
    e = Engine(h)
    now = 1000 + 15 * 1439
    assert e.instant(parse("count(count_over_time(worker_cpu[10m]))"), now)[0].value == 41  # type: ignore[index,union-attr]
    assert [s.labels["pid"] for s in e.instant(parse("worker_cpu"), now)] == ["101439"]  # type: ignore[union-attr]
    # held: 10 min (+ a sweep) of pids, not 6 h of them (1,440 series)
    assert len(h) < 60
