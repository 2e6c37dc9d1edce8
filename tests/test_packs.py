"""Default rule packs: they load, are bilingual, every rule is tested, their export runs in promtool."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from rules.export import render_export
from rules.loader import load_files, pack_paths, split_annotations
from rules.unittest import run_test_files

ROOT = Path(__file__).resolve().parent.parent
HOST_PACKS = ("targets", "filesystem", "memory", "cpu", "clock", "hardware", "network")
PLAIN_TESTS = sorted((ROOT / "tests" / "rules_packs").glob("*.yml"))
EXT_TESTS = sorted((ROOT / "tests" / "rules_ext").glob("*.yml"))
promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing")


def host_rules():
    return load_files([ROOT / "rules" / "packs" / f"{p}.yml" for p in HOST_PACKS]).alerting_rules


def test_all_packs_load():
    rs = load_files(pack_paths())
    assert len(rs.alerting_rules) >= 19


@pytest.mark.parametrize("rule", host_rules(), ids=lambda r: r.name)
def test_every_rule_explains_itself_in_english_and_chinese(rule):
    by = split_annotations(rule.annotations)
    for key in ("summary", "description", "solution"):
        assert rule.annotations.get(key), f"{rule.name}: no {key}"
        assert rule.annotations.get(f"{key}_zh"), f"{rule.name}: no {key}_zh"
        assert by["zh-CN"][key] != by["en"][key]
    severities = ("critical", "error", "warning", "info")
    assert rule.levels or rule.urgency or rule.labels.get("severity") in severities


def alerts_fired_in(files):
    names = set()
    for f in files:
        for t in yaml.safe_load(f.read_text())["tests"]:
            names |= {a["alertname"] for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
    return names


def test_every_host_pack_rule_is_covered_by_a_test_that_fires_it():
    rules = host_rules()
    plain = {r.name for r in rules if not r.extensions}
    ext = {r.name for r in rules if r.extensions}
    assert plain - alerts_fired_in(PLAIN_TESTS) == set()
    assert ext - alerts_fired_in(EXT_TESTS) == set()


def test_opsagent_passes_the_pack_tests():
    ok, report = run_test_files(PLAIN_TESTS + EXT_TESTS)
    assert ok, report


@promtool
def test_exported_packs_pass_promtool_check(tmp_path):
    out = tmp_path / "packs.yml"
    out.write_text(render_export(load_files(pack_paths())))
    import subprocess

    r = subprocess.run(["promtool", "check", "rules", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@promtool
@pytest.mark.parametrize("test_file", PLAIN_TESTS, ids=lambda p: p.name)
def test_promtool_passes_the_pack_tests_on_the_export(test_file, tmp_path):
    import subprocess

    doc = yaml.safe_load(test_file.read_text())
    rules = load_files([(test_file.parent / f).resolve() for f in doc["rule_files"]])
    exported = tmp_path / "exported.yml"
    exported.write_text(render_export(rules))
    doc["rule_files"] = [str(exported)]
    copy = tmp_path / test_file.name
    copy.write_text(yaml.safe_dump(doc, allow_unicode=True))
    r = subprocess.run(["promtool", "test", "rules", str(copy)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
