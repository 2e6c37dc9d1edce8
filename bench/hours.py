"""Memory over simulated hours: the real ``Daemon`` of the example config, 15 s cycles on a fake clock.

    .venv/bin/python bench/hours.py [--hours 24] [--marks 1,6,12,24] [--before] [--trace] [--top 15]

Builds the daemon of ``config.example.yaml`` (temporary state file, free
loopback port) and runs its cycle back to back with one fake clock injected
everywhere a cycle reads time: the cycle's ``now`` (snapshot, rules, evidence,
tickets), the runner's monotonic clock (which collectors are due: the 1m, 5m
and 1h collectors run at their own simulated interval) and each collector's
``ctx.clock`` (sample timestamps), so 24 simulated hours (5,760 cycles) take a
few minutes and every series stays fresh, as in the real daemon. Collectors
still read the real host (/proc, logs, probes).

It pins glibc's malloc thresholds as ``Daemon.run`` does (``agent.malloc``).
``--before`` shows the creep this fixed: thresholds left to glibc and log
reads of a whole 8 MiB block per watched file, as before.

At each mark (simulated hours) it prints RSS (``/proc/self/statm``), the
rules history's series and points, Python's allocated blocks, glibc's
arena bytes (of them free) and mmapped bytes, pymalloc's arenas, and with
``--trace`` the traced memory and the allocation sites (by line) that grew
most since the first mark (tracemalloc's own memory is then in the RSS).
Bounded: the number of cycles is fixed; 24 h take ~30 s, 5 min with ``--trace``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from daemon_harness import example_config, write_config

from agent.config import load_config
from agent.daemon import Daemon
from agent.malloc import pin_malloc_thresholds
from collector.model import Sample
from collector.registry import Context

STEP = 15.0


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def malloc_mb() -> str:
    """glibc's view: bytes in arenas (sbrk/thread heaps), of them free, and mmapped blocks."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    m = libc.mallinfo2()
    mb = 2**20
    return f"malloc arena {m.arena / mb:.1f} free {m.fordblks / mb:.1f} mmap {m.hblkhd / mb:.1f} MB"


def pymalloc_arenas() -> str:
    r, w = os.pipe()
    saved = os.dup(2)
    os.dup2(w, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(w)
        os.close(saved)
    text = b""
    while chunk := os.read(r, 65536):
        text += chunk
    os.close(r)
    for ln in text.decode().splitlines():
        if ln.startswith("# arenas allocated current"):
            return f"pymalloc arenas {ln.split('=')[-1].strip()}"
    return ""


class Churning:
    """A collector's samples plus one series with a new ``pid`` label value every run."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.name = inner.name
        self.runs = 0

    def collect(self, ctx: Context) -> Any:
        self.runs += 1
        yield from self.inner.collect(ctx)
        yield Sample("bench_worker_cpu_seconds", {"pid": str(100000 + self.runs)}, float(self.runs))


def history_of(d: Daemon) -> Any:
    assert d.cycle is not None
    for st in d.cycle.stages:
        h = getattr(st, "history", None)
        if h is not None:
            return h
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--marks", default="1,6,12,24", help="simulated hours at which to report")
    ap.add_argument("--before", action="store_true", help="without the fixes of the creep (see above)")
    ap.add_argument("--churn", action="store_true", help="plus a series whose pid label changes every cycle")
    ap.add_argument("--trace", action="store_true", help="tracemalloc: the sites that grew (slower)")
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()
    marks = sorted({float(m) for m in a.marks.split(",")} | {a.hours})
    if a.before:
        import collector.logstate

        collector.logstate.READ_SLACK = 1 << 40  # each read asks for the whole block again
    else:
        pin_malloc_thresholds()
    tmp = Path(tempfile.mkdtemp(prefix="opsagent-hours-"))
    path = write_config(tmp / "c.yaml", example_config(tmp))
    cfg = load_config(path)
    t = [1_700_000_000.0]
    clock = lambda: t[0]  # noqa: E731
    if a.trace:
        tracemalloc.start(1)
    d = Daemon(cfg, path, clock=clock)
    d.open()
    cycle = d.cycle
    assert cycle is not None
    runner = cycle.runner
    runner.monotonic = clock  # which collectors are due, on the simulated clock
    make = runner.make_context

    def context(job: Any) -> Context:
        ctx = make(job)
        ctx.clock = clock  # the samples' timestamps
        return ctx

    runner.make_context = context
    for stage in cycle.stages:  # the tickets stage stamps its own metrics with its clock
        if hasattr(stage, "clock"):
            stage.clock = clock
    for j in runner.jobs.values():
        j.last_start = t[0] - j.interval
    if a.churn:
        job = runner.jobs["load"]
        job.collector = Churning(job.collector)
    t0, wall0 = t[0], time.monotonic()
    first: Any = None
    n = int(a.hours * 3600 / STEP)
    try:
        for i in range(1, n + 1):
            due = runner.due(t[0])
            if due:
                cycle.collect(due, t[0])
            t[0] += STEP
            hours = i * STEP / 3600
            if not (i == 1 or any(abs(hours - m) < 1e-9 for m in marks)):
                continue
            gc.collect()
            h = history_of(d)
            points = sum(len(r) for r in h._series.values()) if h is not None else 0
            line = (f"{hours:5.2f} h  RSS {rss_mb():5.1f} MB  history {len(h) if h is not None else 0} "
                    f"series {points} points  blocks {sys.getallocatedblocks()}  {malloc_mb()}  "
                    f"{pymalloc_arenas()}  wall {time.monotonic() - wall0:.0f} s")
            if a.trace:
                own = tracemalloc.Filter(False, tracemalloc.__file__)
                snap = tracemalloc.take_snapshot().filter_traces([own])
                line += f"  traced {tracemalloc.get_traced_memory()[0] / 2**20:.2f} MB"
            print(line, flush=True)
            if a.trace:
                if first is None:
                    first = snap
                else:
                    for st in snap.compare_to(first, "lineno")[: a.top]:
                        print(f"    {st.size_diff / 1024:+9.1f} KiB {st.count_diff:+7d}  {st.traceback}")
    finally:
        d.close()
    print(f"simulated {(t[0] - t0) / 3600:.1f} h in {time.monotonic() - wall0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
