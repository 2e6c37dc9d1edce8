"""Default rule packs logs.yml and business.yml: fed by the real collectors, and checked by promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_logs_helpers import Harness, build

from collector.business import BusinessCollector, BusinessConfig
from collector.logs import LogsCollector, LogsConfig
from rules.evaluator import RuleEvaluator
from rules.export import render_export
from rules.history import History
from rules.loader import PACKS_DIR, load_files

STEP = 15.0


class Pipeline:
    """Collector -> history -> default pack, one step per collection, as the daemon's cycle does."""

    def __init__(self, collector: object, pack: str):
        self.h = Harness(collector)
        self.history = History(3600)
        self.ev = RuleEvaluator(load_files([PACKS_DIR / pack]))

    def step(self) -> dict[str, tuple[str | None, str, dict[str, str]]]:
        run = self.h.run(STEP)
        self.history.append(run.samples, self.h.clock.t)
        alerts = self.ev.evaluate(self.history, self.h.clock.t)
        self.labels = {a.name: dict(a.labels) for a in alerts}
        return {a.name: (a.level, a.state, dict(a.annotations)) for a in alerts}


def test_oom_kill_in_a_log_fires_a_p2_with_file_and_pattern(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")
    p = Pipeline(LogsCollector(build(LogsConfig, f"files:\n  - paths: ['{log}']\n")), "logs.yml")
    p.step()
    p.step()
    with log.open("a") as f:
        f.write("kernel: Out of memory: Killed process 4242 (java) total-vm:1234kB\n")
        f.write("app: error writing cache\n")
    alerts = p.step()
    assert alerts["LogCriticalMessage"][:2] == ("P2", "firing")
    assert alerts["LogErrorMessage"][:2] == ("P3", "firing")
    summary = alerts["LogCriticalMessage"][2]["summary"]
    assert str(log) in summary and "oom_killer" in summary
    assert "oom_killer" in alerts["LogCriticalMessage"][2]["summary_zh"]
    # increase() extrapolates (1.055...): the text counts whole records
    assert alerts["LogErrorMessage"][2]["description"].startswith("1 record(s) matching pattern error")


def test_log_alerts_keep_the_patterns_severity_beside_their_own(tmp_path: Path) -> None:
    """The alert's severity (what routes and levels it) does not hide what the pattern found."""
    log = tmp_path / "app.log"
    log.write_text("")
    p = Pipeline(LogsCollector(build(LogsConfig, f"files:\n  - paths: ['{log}']\n")), "logs.yml")
    p.step()
    p.step()
    with log.open("a") as f:
        f.write("kernel: Out of memory: Killed process 4242 (java)\n")
        f.write("app: error writing cache\n")
        f.write("sshd: Failed password for root from 192.0.2.7 port 22 ssh2\n" * 30)
    alerts = p.step()
    got = {
        name: (alerts[name][0], p.labels[name]["severity"], p.labels[name]["pattern_severity"])
        for name in ("LogCriticalMessage", "LogErrorMessage", "LogWarningBurst")
    }
    assert got == {
        "LogCriticalMessage": ("P2", "error", "critical"),
        "LogErrorMessage": ("P3", "warning", "error"),
        "LogWarningBurst": ("P3", "warning", "warning"),
    }


def test_unreadable_log_fires_after_ten_minutes(tmp_path: Path) -> None:
    (tmp_path / "x.log").mkdir()
    p = Pipeline(LogsCollector(build(LogsConfig, f"files:\n  - paths: ['{tmp_path}/*.log']\n")), "logs.yml")
    states = [p.step().get("LogFileUnreadable", (None, "", {}))[:2] for _ in range(42)]
    assert states[0] == ("P3", "pending")
    assert states[-1] == ("P3", "firing")


def test_business_failure_ratio_levels(tmp_path: Path) -> None:
    log = tmp_path / "pay.log"
    log.write_text("")
    cfg = build(
        BusinessConfig,
        f"flows:\n  payment:\n    paths: ['{log}']\n    success: 'PAY OK'\n    failure: 'PAY FAIL'\n",
    )
    p = Pipeline(BusinessCollector(cfg), "business.yml")
    p.step()

    def traffic(ok: int, fail: int) -> dict[str, tuple[str | None, str, dict[str, str]]]:
        with log.open("a") as f:
            f.write("PAY OK\n" * ok + "PAY FAIL\n" * fail)
        return p.step()

    # 2 % failures: P3 after `for: 5m`.
    for _ in range(25):
        alerts = traffic(49, 1)
    assert alerts["BusinessFailureRatioHigh"][:2] == ("P3", "firing")
    # 10 % failures: the same alert at P2.
    for _ in range(60):
        alerts = traffic(9, 1)
    assert alerts["BusinessFailureRatioHigh"][:2] == ("P2", "firing")
    assert "payment" in alerts["BusinessFailureRatioHigh"][2]["summary"]


def test_business_few_transactions_do_not_alert(tmp_path: Path) -> None:
    log = tmp_path / "pay.log"
    log.write_text("")
    text = f"flows:\n  p:\n    paths: ['{log}']\n    success: 'OK'\n    failure: 'FAIL'\n"
    cfg = build(BusinessConfig, text)
    p = Pipeline(BusinessCollector(cfg), "business.yml")
    for i in range(40):
        with log.open("a") as f:
            f.write("FAIL\n" if i % 5 == 0 else "")
        alerts = p.step()
    assert "BusinessFailureRatioHigh" not in alerts


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
@pytest.mark.parametrize("pack", ["logs.yml", "business.yml"])
def test_exported_pack_passes_promtool(tmp_path: Path, pack: str) -> None:
    out = tmp_path / pack
    out.write_text(render_export(load_files([PACKS_DIR / pack])), encoding="utf-8")
    res = subprocess.run(["promtool", "check", "rules", str(out)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_fires_log_critical_rule(tmp_path: Path) -> None:
    """Prometheus itself agrees with the rule: an OOM match fires, labelled with file and pattern."""
    doc = yaml.safe_load(render_export(load_files([PACKS_DIR / "logs.yml"])))
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # templates are checked above; here: when and with which labels
    (tmp_path / "logs.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    series = (
        'opsagent_log_matches_total{file="/var/log/kern.log",pattern="oom_killer",pattern_severity="critical"}'
    )
    (tmp_path / "test.yml").write_text(
        f"""rule_files: [logs.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: '{series}'
        values: '0 0 0 1 1 1'
    alert_rule_test:
      - eval_time: 1m
        alertname: LogCriticalMessage
        exp_alerts: []
      - eval_time: 4m
        alertname: LogCriticalMessage
        exp_alerts:
          - exp_labels:
              severity: error
              pattern_severity: critical
              file: /var/log/kern.log
              pattern: oom_killer
""",
        encoding="utf-8",
    )
    res = subprocess.run(
        ["promtool", "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr
