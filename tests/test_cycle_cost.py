"""What the per-cycle savings must not change: evaluation timing, /metrics content, probes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from agent.rules_stage import RulesStage, load_rules, rules_options
from collector.model import Sample
from collector.probes import ProbeWorkers
from collector.registry import Context, EmptyConfig
from collector.runner import Job, Runner
from tests.daemon_harness import write_config

RULES = """\
groups:
  - name: local
    rules:
      - alert: Hot
        expr: temp > 50
        for: 30s
        labels: {severity: warning}
"""


def rules_stage(tmp: Path, interval: float, slack: float) -> RulesStage:
    (tmp / "local.yml").write_text(RULES)
    cfg = load_config(write_config(tmp / "c.yaml", {"agent": {"state_file": str(tmp / "s.db")},
                                                    "rules": {"packs": False, "files": ["*.yml"]}}))
    assert float(cfg.rules.evaluation_interval) == 30  # the default
    return RulesStage(load_rules(cfg), rules_options(cfg), interval=interval, slack=slack)


def hot(now: float) -> list[Sample]:
    return [Sample("temp", {"instance": "h1"}, 60.0, now)]


def test_rules_are_evaluated_every_30s_on_15s_cycles_even_when_a_cycle_comes_early(tmp_path):
    stage = rules_stage(tmp_path, interval=30.0, slack=7.5)
    evaluated = []
    # the cycle at 1029.99 is 10 ms early: it must evaluate, not wait for 1045
    for now in (1000.0, 1015.0, 1029.99, 1045.0, 1060.02, 1075.0):
        before = stage.last_eval
        stage(hot(now), now)
        if stage.last_eval != before:
            evaluated.append(now)
    assert evaluated == [1000.0, 1029.99, 1060.02]
    # Hot has `for: 30s`: pending at 1000, firing at the evaluation 30 s later
    assert [(a.name, a.state) for a in stage.alerts] == [("Hot", "firing")]


def test_a_named_check_evaluates_at_once_whether_due_or_not(tmp_path):
    stage = rules_stage(tmp_path, interval=30.0, slack=7.5)
    stage(hot(1000.0), 1000.0)
    stage(hot(1015.0), 1015.0)
    assert stage.last_eval == 1000.0
    stage.before_check()
    stage(hot(1020.0), 1020.0)
    assert stage.last_eval == 1020.0
    stage(hot(1035.0), 1035.0)  # and the schedule goes on from there
    assert stage.last_eval == 1020.0


def test_probe_workers_are_reused_and_a_stuck_probe_does_not_hold_up_the_next():
    workers = ProbeWorkers(idle_timeout=0.2)
    for i in range(5):  # one cycle after another: the same thread serves them
        assert workers.submit(partial(int, i)).result(timeout=5) == i
    assert workers.threads == 1
    stuck = threading.Event()
    hung = workers.submit(lambda: stuck.wait(10))
    quick = workers.submit(lambda: "answered")
    assert quick.result(timeout=5) == "answered"  # did not wait behind the hung probe
    assert not hung.done() and workers.threads == 2
    failing = workers.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=5)
    stuck.set()
    assert hung.result(timeout=5) is True
    # idle workers leave after idle_timeout (a collector dropped on reload leaks nothing)
    deadline = time.monotonic() + 5
    while workers.threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers.threads == 0
    assert workers.submit(lambda: "again").result(timeout=5) == "again"


def test_probes_run_every_30s_unless_configured_otherwise(tmp_path):
    from agent.cycle import build_jobs

    base: dict[str, Any] = {"agent": {"state_file": str(tmp_path / "s.db")},
            "collectors": {"probes": {"targets": [{"name": "p", "kind": "process", "process_name": "x"}]}}}
    cfg = load_config(write_config(tmp_path / "a.yaml", base))
    jobs = {j.name: j for j in build_jobs(cfg, only=["probes", "load"])}
    assert (jobs["probes"].interval, jobs["load"].interval) == (30.0, 15.0)
    base["collectors"]["probes"]["interval"] = "15s"
    cfg = load_config(write_config(tmp_path / "b.yaml", base))
    assert build_jobs(cfg, only=["probes"])[0].interval == 15.0


class Up:
    name = "up"

    def collect(self, ctx: Context) -> Iterator[Sample]:
        yield Sample("up", {}, 1.0)


def test_slow_collectors_stay_in_the_fast_ones_batches_when_cycles_start_late():
    clock = [1000.0]
    jobs = [Job("fast", Up(), EmptyConfig(), interval=15, timeout=5),
            Job("slow", Up(), EmptyConfig(), interval=60, timeout=5)]
    runner = Runner(jobs, lambda j: Context(config=None), monotonic=lambda: clock[0])
    batches = []
    runner.run()
    for _ in range(12):
        # the loop wakes at the next due time, and each batch starts 20 ms late
        clock[0] = min(j.last_start + j.interval for j in runner.jobs.values()) + 0.02
        due = runner.due(clock[0])
        runner.run(due)
        batches.append(sorted(due))
    # 12 cycles of 15 s; the 60 s collector rides along every 4th, never alone
    assert batches == [["fast"], ["fast"], ["fast"], ["fast", "slow"]] * 3
    # a pause (suspended VM) of 100 s: the fast grid starts anew, the slow job (40 s
    # late) keeps its own; at the next fast batch it is due within 7.5 s, so it runs
    # there (5 s early) and rides along with the fast batches again
    clock[0] += 100.0
    batches = []
    for _ in range(8):
        due = runner.due(clock[0])
        runner.run(due)
        batches.append(sorted(due))
        clock[0] = min(j.last_start + j.interval for j in runner.jobs.values()) + 0.02
    runner.close()
    assert batches == [["fast", "slow"]] * 2 + [["fast"]] * 3 + [["fast", "slow"]] + [["fast"]] * 2
