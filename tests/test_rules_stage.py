"""The rules stage in the daemon's cycle: history, evaluation, ALERTS, reloads that keep state."""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from agent.config import load_config
from agent.rules_stage import RulesStage, active_rule_paths, load_rules, rules_options, setup
from collector.model import Sample
from collector.schema import ConfigError
from tests.daemon_harness import Agent, example_config, wait_for, write_config

RULES = """\
groups:
  - name: local
    rules:
      - alert: Hot
        expr: temp > 50
        for: 30s
        labels: {severity: warning}
        annotations: {summary: "hot {{ $value }}"}
"""
BAD = RULES.replace("temp > 50", "temp >> 50")


def config(tmp: Path, rules: str = RULES, **section):
    (tmp / "local.yml").write_text(rules)
    cfg = {"agent": {"state_file": str(tmp / "state.db")},
           "rules": {"packs": False, "files": ["*.yml"], **section}}
    return load_config(write_config(tmp / "config.yaml", cfg))


def fake_cycle(cfg):
    stages: list = []
    return SimpleNamespace(config=cfg, stages=stages, add_stage=stages.append)


def hot(v: float, now: float) -> list[Sample]:
    return [Sample("temp", {"instance": "h1"}, v, now)]


def test_files_are_globbed_relative_to_the_config(tmp_path):
    cfg = config(tmp_path)
    assert active_rule_paths(cfg) == [tmp_path / "local.yml"]
    with_packs = load_config(write_config(tmp_path / "c2.yaml", {"rules": {"disabled": ["hardware"]}}))
    stems = [p.stem for p in active_rule_paths(with_packs)]
    assert "filesystem" in stems and "hardware" not in stems


def test_stage_evaluates_and_exports_alerts(tmp_path):
    cfg = config(tmp_path)
    stage = RulesStage(load_rules(cfg), rules_options(cfg))
    stage(hot(60, 1000), 1000)
    assert [(a.name, a.state) for a in stage.alerts] == [("Hot", "pending")] and stage.actionable == []
    stage(hot(60, 1030), 1030)
    assert [(a.name, a.state, a.level) for a in stage.actionable] == [("Hot", "firing", "P3")]
    names = {(s.name, s.labels.get("alertstate")) for s in stage.samples()}
    assert {("ALERTS", "firing"), ("ALERTS_FOR_STATE", None),
            ("opsagent_rules_evaluation_duration_seconds", None),
            ("opsagent_rules_evaluation_failures_total", None)} <= names


def test_reload_keeps_alert_state_and_a_bad_rule_file_is_refused(tmp_path):
    cfg = config(tmp_path)
    cycle1 = fake_cycle(cfg)
    setup(cycle1)
    old = cycle1.stages[0]
    old(hot(60, 1000), 1000)
    # a bad rule file: setup raises, so the daemon keeps the running cycle
    (tmp_path / "local.yml").write_text(BAD)
    with pytest.raises(ConfigError, match=r"local.yml:5: groups\[0\].rules\[0\]\(Hot\).expr"):
        setup(fake_cycle(cfg))
    old(hot(60, 1015), 1015)
    assert [a.state for a in old.alerts] == ["pending"]
    # a good reload: the new stage goes on from the old one's history and pending time
    (tmp_path / "local.yml").write_text(RULES + "      - {alert: Other, expr: vector(1)}\n")
    cycle2 = fake_cycle(load_config(tmp_path / "config.yaml"))
    setup(cycle2)
    new = cycle2.stages[0]
    new(hot(60, 1030), 1030)
    assert sorted((a.name, a.state) for a in new.alerts) == [("Hot", "firing"), ("Other", "firing")]
    assert isinstance(new, RulesStage) and new.history is old.history


def test_daemon_serves_alerts_and_keeps_rules_on_a_bad_reload(tmp_path):
    (tmp_path / "local.yml").write_text(
        "groups:\n  - name: local\n    rules:\n"
        "      - {alert: Always, expr: vector(1), labels: {severity: warning}}\n")
    cfg = example_config(tmp_path, schedule={"interval": "1s", "checks": {}},
                         rules={"files": ["local.yml"]})
    a = Agent(write_config(tmp_path / "config.yaml", cfg), cfg)
    try:
        a.wait_ready()
        firing = 'ALERTS{alertname="Always",alertstate="firing",severity="warning"} 1'
        assert wait_for(lambda: firing in a.get("/metrics")[1].decode())
        assert a.metric("opsagent_rules_evaluation_failures_total") == 0
        assert (a.metric("opsagent_rules_loaded") or 0) > 19  # the default packs and the file
        (tmp_path / "local.yml").write_text(
            "groups:\n  - name: local\n    rules:\n      - {alert: Always, expr: 'rate(x[5x])'}\n")
        a.signal(signal.SIGHUP)
        assert wait_for(lambda: a.metric("opsagent_config_last_reload_successful") == 0)
        assert "local.yml:4" in a.log()
        assert firing in a.get("/metrics")[1].decode()
    finally:
        a.stop()
    assert "Traceback" not in a.log()
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["rules"]["files"] == ["local.yml"]


def test_local_alerts_name_their_host_by_the_instance_label(tmp_path):
    # collectors' samples carry no instance label (Prometheus adds it at scrape time);
    # in the agent's own history the local instance is added, so tickets say which host
    cfg = config(tmp_path)
    cfg = load_config(write_config(tmp_path / "c3.yaml", {
        "agent": {"state_file": str(tmp_path / "state.db"), "instance": "db-01"},
        "rules": {"packs": False, "files": ["*.yml"]}}))
    cycle = fake_cycle(cfg)
    setup(cycle)
    stage = cycle.stages[0]
    for t in (1000, 1030):
        stage([Sample("temp", {}, 60, t)], t)
    assert [a.labels.get("instance") for a in stage.actionable] == ["db-01"]
    # a sample's own instance label wins (remote targets)
    stage([Sample("temp", {"instance": "sw-3"}, 60, 1060)], 1060)
    assert "sw-3" in {a.labels.get("instance") for a in stage.alerts}
