"""`opsagent rules check|test|export` as a user runs them."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.daemon_harness import cli, write_config

GOOD = """\
groups:
  - name: g
    rules:
      - alert: Disk
        expr: 1 - avail / size
        levels: {P2: "> 0.95", P3: "> 0.90"}
        recover: "< 0.85"
        annotations: {summary: "{{ $value | humanizePercentage }} used", summary_zh: "已用 {{ $value }}"}
      - {alert: Down, expr: up == 0, labels: {severity: critical}}
"""


def test_check_reports_ok_or_every_problem(tmp_path):
    good = tmp_path / "good.yml"
    good.write_text(GOOD)
    r = cli("rules", "check", str(good))
    assert (r.returncode, r.stdout.strip()) == (0, f"{good}: 2 rules OK")
    bad = tmp_path / "bad.yml"
    bad.write_text(GOOD.replace("up == 0", "up = = 0").replace('"> 0.90"', '"0.90"'))
    r = cli("rules", "check", str(good), str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{bad}:6: groups[0].rules[0](Disk).levels.P3: threshold '0.90'" in r.stderr
    assert f"{bad}:9: groups[0].rules[1](Down).expr:" in r.stderr


def test_test_exit_code_follows_the_result(tmp_path):
    (tmp_path / "r.yml").write_text(GOOD)
    t = tmp_path / "t.yml"
    t.write_text("""\
rule_files: [r.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - {series: 'up{instance="a"}', values: '0x3'}
    alert_rule_test:
      - eval_time: 2m
        alertname: Down
        exp_alerts: [{exp_labels: {instance: a, severity: critical}}]
""")
    r = cli("rules", "test", str(t))
    assert r.returncode == 0 and "SUCCESS" in r.stdout
    t.write_text(t.read_text().replace("instance: a,", "instance: b,"))
    r = cli("rules", "test", str(t))
    assert r.returncode == 1 and "FAILED" in r.stdout


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing")
def test_export_of_packs_and_configured_files_passes_promtool(tmp_path):
    (tmp_path / "extra.yml").write_text(GOOD)
    rules = {"files": ["extra.yml"], "disabled": ["hardware"]}
    cfg = write_config(tmp_path / "config.yaml", {"rules": rules})
    out = tmp_path / "exported.yml"
    r = cli("rules", "export", "-c", str(cfg), "-o", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "TemperatureHigh" not in text and "alert: FilesystemSpaceUsage" in text
    # one rule per level, exactly one level holds, severity mapped back; recover is reported as dropped
    assert "expr: (1 - avail / size) > 0.95\n" in text
    assert "expr: (1 - avail / size) > 0.9 unless (1 - avail / size) > 0.95\n" in text
    assert "# Disk: recover (< 0.85) dropped" in text
    p = subprocess.run(["promtool", "check", "rules", str(out)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
