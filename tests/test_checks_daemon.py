"""Named checks in the daemon: the cycle in-process with a fake clock, and the real daemon."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from daemon_harness import ROOT, Agent, cli, example_config, wait_for, write_config

from agent.checks_stage import list_runs, load_report
from agent.config import load_config
from agent.cycle import Cycle
from agent.schedule import Due
from agent.store import Store, StoreKeyValue
from collector.registry import Paths, discover

FIXTURE_PROC = ROOT / "tests" / "fixtures" / "host" / "proc"
T0 = 1_700_000_000.0

RULE = """
groups:
  - name: test
    rules:
      - alert: LoadSeenForTenMinutes
        expr: node_load1 > 0
        for: 10m
        labels: {severity: error, check_area: resources}
        annotations: {summary: "load {{ $value }} for ten minutes"}
"""


def only(*names: str) -> dict[str, Any]:
    out: dict[str, Any] = {n: {"enabled": False} for n in discover()}
    out.update({n: {"enabled": True} for n in names})
    return out


def test_scheduled_check_honours_for_and_stores_its_report(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    for name in ("meminfo", "loadavg"):
        shutil.copy(FIXTURE_PROC / name, proc / name)
    (tmp_path / "load.yml").write_text(RULE)
    cfg = {
        "agent": {"instance": "h1", "timezone": "UTC", "language": "en",
                  "state_file": str(tmp_path / "s.db")},
        "rules": {"files": ["load.yml"]},
        "collectors": only("meminfo", "load"),
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(tmp_path / "c.yaml")
    store = Store(config.agent.state_file)
    cycle = Cycle(config, store, publish=lambda body: None, paths=Paths(proc=proc, root=tmp_path))
    now = [T0]
    context = cycle.runner.make_context

    def fake_clock_context(job: Any) -> Any:  # collectors stamp their samples with this clock
        ctx = context(job)
        ctx.clock = lambda: now[0]
        return ctx

    cycle.runner.make_context = fake_clock_context
    try:
        cycle.load_components()
        assert cycle.run_check(Due("morning", T0, 0.0), clock=lambda: now[0]) == "ok"
        now[0] = T0 + 300
        cycle.collect(None, now[0])
        now[0] = T0 + 660
        assert cycle.run_check(Due("evening", T0 + 660, 0.0), clock=lambda: now[0]) == "ok"
    finally:
        cycle.close()
    try:
        rows = list_runs(store)
        assert [(r["name"], r["origin"], r["run_status"]) for r in rows] == [
            ("evening", "schedule", "ok"), ("morning", "schedule", "ok")]
        morning = load_report(store, rows[1]["id"])
        evening = load_report(store, rows[0]["id"])
    finally:
        store.close()
    assert morning is not None and evening is not None
    # at T0 the condition holds but `for: 10m` has not elapsed: pending is not a finding
    assert not morning.urgent and morning.status in ("OK", "UNKNOWN")
    assert {i.item: i.status for i in morning.items}["memory"] == "OK"
    # 11 minutes later it fires: a P2 finding in resources, and the ticket it opened is listed
    [urgent] = evening.urgent
    assert (urgent.area, urgent.status, urgent.level) == ("resources", "FAIL", "P2")
    assert urgent.finding == "P2 load 0.22 for ten minutes"
    tickets = [i for i in evening.items if i.area == "tickets"]
    assert [(i.item, i.level) for i in tickets] == [("#1 LoadSeenForTenMinutes", "P2")]
    assert "security" not in {i.area for i in evening.items}  # the evening profile leaves it out


def test_real_daemon_runs_the_morning_check_and_history_lists_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    StoreKeyValue(store, "agent").put("first_started", repr(time.time() - 3 * 3600).encode())
    store.close()
    at = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%H:%M")  # missed, within grace: runs now
    cfg = example_config(
        tmp_path,
        agent={"timezone": "UTC", "language": "en"},
        schedule={"interval": "1h", "misfire_grace": "1h", "checks": {"morning": {"at": at}}},
    )
    cfg["collectors"] = only("meminfo", "load")
    path = write_config(tmp_path / "config.yaml", cfg)
    a = Agent(path, cfg)
    a.wait_ready()
    try:
        def stored() -> list[dict[str, Any]]:
            s = Store(tmp_path / "state.db")
            try:
                return [r for r in list_runs(s) if r["origin"] == "schedule"]
            finally:
                s.close()

        rows = wait_for(stored, timeout=20)
        assert rows and rows[0]["name"] == "morning" and rows[0]["run_status"] == "ok", a.log()
    finally:
        a.stop()
    r = cli("check", "history", "-c", str(path))
    assert r.returncode == 0, r.stderr
    [line] = [ln for ln in r.stdout.splitlines() if "morning" in ln]
    assert line.split()[2:5] == ["morning", "schedule", "ok"]
    r = cli("check", "history", "-c", str(path), "--json")
    assert json.loads(r.stdout)[0]["ok"] >= 2  # memory and cpu/load at least
