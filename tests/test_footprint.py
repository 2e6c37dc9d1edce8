"""Memory footprint of the running agent: what `opsagent run` keeps alive, what the history retains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from daemon_harness import ROOT, example_config, write_config

from collector.model import Sample
from rules.history import History
from rules.promql import Engine, parse


def _values(h: History, q: str, t: float) -> dict[str, float]:
    out = Engine(h).instant(parse(q), t)
    assert isinstance(out, list)
    return {s.labels.get("path", ""): s.value for s in out}  # type: ignore[union-attr]


def test_run_keeps_neither_other_commands_nor_parsers_alive(tmp_path: Path) -> None:
    # the daemon runs for months: the other areas' CLI modules and every argparse
    # parser built to read its command line would be dead weight all that time
    path = write_config(tmp_path / "c.yaml", example_config(tmp_path))
    script = f"""
import argparse, gc, sys
import agent.daemon
from agent.cli import main
def run(self):
    gc.collect()
    parsers = [o for o in gc.get_objects() if isinstance(o, argparse.ArgumentParser)]
    print(sorted(m for m in sys.modules if m.startswith("agent.cli")), len(parsers))
    return 0
agent.daemon.Daemon.run = run
sys.exit(main(["run", "-c", {str(path)!r}]))
"""
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['agent.cli', 'agent.cli_core', 'agent.cli_parser'] 0"


# ---------------------------------------------------------------- history keeps what the rules read


def _points(h: History) -> int:
    return sum(len(r) for r in h._series.values())


def test_history_keeps_each_metric_as_far_back_as_its_rules_read() -> None:
    def cycle(i: int) -> list[Sample]:
        return [Sample("fs_avail", {}, 1e9 - i), Sample("load", {}, 1.0), Sample("unread", {}, float(i))]

    h = History(6 * 3600, keep={"fs_avail": 3600.0, "load": 300.0})
    for i in range(600):  # 2.5 h of 15 s cycles
        h.append(cycle(i), 1000 + 15 * i, "cycle")
    now = 1000 + 15 * 599
    e = Engine(h)
    # an hour of fs_avail (241 points: both ends included), the lookback of load, the newest unread point
    assert e.instant(parse("count_over_time(fs_avail[1h])"), now)[0].value == 241  # type: ignore[index,union-attr]
    assert e.instant(parse("count_over_time(load[5m])"), now)[0].value == 21  # type: ignore[index,union-attr]
    assert e.instant(parse("unread"), now)[0].value == 599  # type: ignore[index,union-attr]
    assert _points(h) < 3 * (241 + 21 + 1)  # arrays are compacted in place (amortised), never 600 points
    full = History(6 * 3600)
    for i in range(600):
        full.append(cycle(i), 1000 + 15 * i, "cycle")
    assert _points(full) == 1800


def test_a_series_that_goes_away_still_vanishes_at_once_and_is_forgotten_after_retention() -> None:
    h = History(3600, keep={})
    h.append([Sample("disk_free", {"path": "/"}, 1.0), Sample("disk_free", {"path": "/var"}, 2.0)], 100, "fs")
    for t in range(115, 400, 15):
        h.append([Sample("disk_free", {"path": "/"}, 3.0)], t, "fs")
    assert _values(h, "disk_free", 400) == {"/": 3.0}
    assert len(h) == 2  # /var's staleness marker is kept
    for t in range(400, 3800, 15):
        h.append([Sample("disk_free", {"path": "/"}, 3.0)], t, "fs")
    assert len(h) == 1


def test_rules_read_the_same_from_the_trimmed_history_as_from_the_full_one(tmp_path: Path) -> None:
    # the example's rules (all packs) over 7 h of the example's own series at 15 s cycles,
    # some of them going away and coming back: every expression gives the same result
    import time

    from agent.config import load_config
    from agent.daemon import Daemon
    from agent.rules_stage import load_rules
    from rules.evaluator import as_series, history_needs

    path = write_config(tmp_path / "c.yaml", example_config(tmp_path))
    cfg = load_config(path)
    d = Daemon(cfg, path)
    d.open()
    try:
        samples = d.cycle.collect(None, time.time())
    finally:
        d.close()
    ruleset = load_rules(cfg)
    exprs = [e for g in ruleset.groups for r in g.rules
             for e in (r.parsed, getattr(r, "recover_parsed", None)) if e is not None]
    keep = history_needs(ruleset)
    assert keep is not None and keep["node_filesystem_avail_bytes"] == 6 * 3600
    trimmed, full = History(6 * 3600, keep), History(6 * 3600)
    names = sorted({s.name for s in samples})
    assert len(names) > 50 and len(samples) > 200

    def result(h: History, e: object, t: float) -> list[tuple[object, ...]]:
        try:
            out = as_series(Engine(h).instant(e, t))  # type: ignore[arg-type]
        except Exception as err:  # the same data errors either way
            return [("error", str(err))]
        return sorted((tuple(sorted(s.labels.items())), repr(s.value)) for s in out)

    t0 = 1_700_000_000.0
    checked = 0
    for i in range(7 * 240):
        t = t0 + 15 * i
        batch = [Sample(s.name, s.labels, s.value * (1 + 0.001 * i) if s.value else float(i % 7))
                 for j, s in enumerate(samples) if (i // 40 + j) % 5 or i < 40]  # a fifth go away by turns
        for h in (trimmed, full):
            h.append(batch, t, "cycle", {"instance": "h"})
        if i % 97 == 0 or i == 7 * 240 - 1:
            for e in exprs:
                assert result(trimmed, e, t) == result(full, e, t), (i, e)
                checked += 1
    assert checked > 500
    assert _points(trimmed) * 10 < _points(full)
