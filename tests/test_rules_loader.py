"""Rule files: Prometheus files load unchanged; every mistake is located (file, line, key, expression)."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.schema import ConfigError
from rules.loader import AlertingRule, RecordingRule, RulesOptions, load_files, parse_rules, split_annotations

PLAIN = """\
groups:
  - name: node
    interval: 30s
    rules:
      - record: instance:node_cpus:count
        expr: count without (cpu, mode) (node_cpu_seconds_total{mode="idle"})
      - alert: HostOutOfMemory
        expr: node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes < 0.1
        for: 2m
        keep_firing_for: 5m
        labels:
          severity: warning
        annotations:
          summary: Host out of memory
"""


def problems(text: str, tmp_path: Path, name: str = "r.yml") -> list[str]:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_files([f])
    return [str(p) for p in e.value.problems]


def test_a_plain_prometheus_file_loads_unchanged(tmp_path):
    f = tmp_path / "node.yml"
    f.write_text(PLAIN)
    rs = load_files([f])
    assert len(rs) == 2
    rec, alert = rs.groups[0].rules
    assert isinstance(rec, RecordingRule) and rec.record == "instance:node_cpus:count"
    assert isinstance(alert, AlertingRule)
    assert (alert.for_, alert.keep_firing_for, alert.labels["severity"]) == (120, 300, "warning")
    assert rs.groups[0].interval == 30 and not alert.extensions
    assert alert.line == 7


def test_expression_errors_point_at_the_offending_part(tmp_path):
    out = problems("""\
groups:
  - name: g
    rules:
      - alert: A
        expr: rate(node_cpu_seconds_total[5m]) >
      - alert: B
        expr: |
          sum by (instance) (x)
            / rat(y[5m])
      - alert: C
        expr: up{job=~"(["}
""", tmp_path)
    assert out[0].startswith(f"{tmp_path}/r.yml:5: groups[0].rules[0](A).expr: ")
    assert 'near "…cpu_seconds_total[5m]) >⟨here⟩"' in out[0]
    # in a block scalar the line is the expression's own line
    assert out[1].startswith(f"{tmp_path}/r.yml:9: groups[0].rules[1](B).expr: ")
    assert "rat" in out[1] and "⟨here⟩rat(y[5m])" in out[1]
    assert ":11: groups[0].rules[2](C).expr: " in out[2] and "regular expression" in out[2]


def test_an_expression_that_cannot_make_alerts_is_refused_at_load(tmp_path):
    # Prometheus loads these and then fails every evaluation; here the author learns at once.
    out = problems("""\
groups:
  - name: g
    rules:
      - alert: Range
        expr: node_cpu_seconds_total[5m]
      - record: text
        expr: '"hello"'
      - alert: Fine
        expr: vector(1)
        recover: x[5m]
""", tmp_path)
    assert out[0].startswith(f"{tmp_path}/r.yml:5: groups[0].rules[0](Range).expr: the expression returns "
                             "a range vector; a rule needs an instant vector or a scalar")
    assert "rate(x[5m])" in out[0]
    assert out[1].startswith(f"{tmp_path}/r.yml:7: groups[0].rules[1](text).expr: the expression returns "
                             "a string")
    assert out[2].startswith(f"{tmp_path}/r.yml:10: groups[0].rules[2](Fine).recover: ")
    assert len(out) == 3


def test_all_problems_at_once_with_keys(tmp_path):
    out = problems("""\
groups:
  - name: g
    rules:
      - alert: A
        expr: x > 1
        for: 5x
        lables: {a: b}
        levels: {P9: "> 1", P2: "big"}
      - alert: B
        record: b
        expr: x
  - name: g
    rules: []
""", tmp_path)
    text = "\n".join(out)
    assert ":6: groups[0].rules[0](A).for: invalid duration '5x'" in text
    assert ":7: groups[0].rules[0](A).lables: unknown key (did you mean 'labels'?)" in text
    assert ":8: groups[0].rules[0](A).levels.P9: unknown level 'P9'" in text
    assert "levels.P2: threshold 'big' must be a comparison" in text
    assert "groups[0].rules[1]: a rule has 'alert' or 'record', not both" in text
    assert ":12: groups[1].name: group name 'g' is repeated in the same file (first at line 2)" in text


def test_yaml_errors_and_missing_files_are_located(tmp_path):
    out = problems("groups:\n  - name: g\n    rules: [\n", tmp_path)
    assert out[0].startswith(f"{tmp_path}/r.yml:") and "invalid YAML" in out[0]
    with pytest.raises(ConfigError, match="file not found"):
        load_files([tmp_path / "missing.yml"])


def test_extension_misuse_is_explained(tmp_path):
    out = problems("""\
groups:
  - name: g
    rules:
      - alert: A
        expr: x > 1
        recover: "< 0.5"
      - alert: B
        expr: x
        levels: {P2: "> 1"}
        impact: {urgency: high}
      - alert: C
        expr: x
        impact: {urgency: whenever}
      - alert: D
        expr: x
        inhibits: [{alerts: [A], equal: [instance], extra: 1}]
""", tmp_path)
    text = "\n".join(out)
    assert "(A).recover: a bare threshold needs 'levels'" in text
    assert "(B).impact: use either 'levels' or 'impact', not both" in text
    assert "(C).impact.urgency: unknown urgency 'whenever' (use one of high, medium, low, planning)" in text
    assert "(D).inhibits[0].extra: unknown key" in text


def test_disabled_rules_and_groups_are_left_out(tmp_path):
    f = tmp_path / "node.yml"
    f.write_text(PLAIN)
    rs = load_files([f], RulesOptions(disabled=frozenset({"HostOutOfMemory"})))
    assert [r.name for r in rs.groups[0].rules] == ["instance:node_cpus:count"]
    assert load_files([f], RulesOptions(disabled=frozenset({"node"}))).groups == ()


def test_levels_are_sorted_worst_first():
    rs = parse_rules("""
groups:
  - name: g
    rules:
      - alert: A
        expr: x
        levels: {P4: "> 1", P2: "> 3", P3: "> 2"}
""")
    assert [lv for lv, _ in rs.alerting_rules[0].levels] == ["P2", "P3", "P4"]


def test_annotations_by_language_fall_back_to_english():
    by = split_annotations({"summary": "Disk full", "summary_zh": "磁盘已满", "solution": "Clean up",
                            "runbook_url": "http://x"})
    assert by["en"] == {"summary": "Disk full", "solution": "Clean up", "runbook_url": "http://x"}
    assert by["zh-CN"] == {"summary": "磁盘已满", "solution": "Clean up", "runbook_url": "http://x"}


def test_inhibition_naming_an_unknown_alert_is_refused_with_a_suggestion(tmp_path):
    # a typo in depends_on/inhibits would silently stop inhibition: one outage, many tickets
    out = problems("""\
groups:
  - name: site
    rules:
      - alert: ServiceDown
        expr: probe_success == 0
        depends_on:
          - {alert: TargetDown, equal: [instance]}
          - {alert: TargetDwn, equal: [instance]}
      - alert: Parent
        expr: up == 0
        inhibits:
          - alerts: ["*", ServiceDown, ServiceDwn]
            equal: [instance]
""", tmp_path)
    # TargetDown is a default pack's alert: known even when this file is loaded alone
    assert out == [
        f"{tmp_path}/r.yml:8: groups[0].rules[0](ServiceDown).depends_on[1].alert: no alerting rule is named "
        "'TargetDwn' (in these files or the default packs); did you mean 'TargetDown'?",
        f"{tmp_path}/r.yml:12: groups[0].rules[1](Parent).inhibits[0].alerts: no alerting rule is named "
        "'ServiceDwn' (in these files or the default packs); did you mean 'ServiceDown'?",
    ]
