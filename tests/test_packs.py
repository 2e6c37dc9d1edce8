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


def test_interface_down_alarms_on_a_lost_link_not_on_an_unused_port(tmp_path):
    # The real netdev collector on a sysfs tree: eth1 is enabled and lost its carrier, ifb0 was
    # never brought up (the kernel refuses to read its carrier, so the file is absent here).
    from collector.netdev import NetdevCollector, NetdevConfig
    from collector.registry import Context, Paths
    from rules.evaluator import RuleEvaluator
    from rules.history import History

    head = (ROOT / "tests/fixtures/host/proc/net/dev").read_text().splitlines()[:2]
    zeros = " ".join(["0"] * 16)
    (tmp_path / "proc/net").mkdir(parents=True)
    (tmp_path / "proc/net/dev").write_text(
        "\n".join(head + [f"  {d}: {zeros}" for d in ("eth0", "eth1", "ifb0")]) + "\n")
    for dev, state, carrier in (("eth0", "up", "1"), ("eth1", "down", "0"), ("ifb0", "down", None)):
        d = tmp_path / "sys/class/net" / dev
        d.mkdir(parents=True)
        (d / "operstate").write_text(state + "\n")
        if carrier is not None:
            (d / "carrier").write_text(carrier + "\n")
    paths = Paths(proc=tmp_path / "proc", sys=tmp_path / "sys", root=tmp_path, run=tmp_path / "run")
    collector = NetdevCollector(NetdevConfig())
    history = History()
    evaluator = RuleEvaluator(load_files([ROOT / "rules/packs/network.yml"]))
    alerts = []
    for step in range(13):  # 3 minutes at 15 s: past the rule's for: 2m
        now = 1_700_000_000.0 + 15 * step
        samples = list(collector.collect(Context(config=None, paths=paths, clock=lambda t=now: t)))
        history.append(samples, ts=now, source="netdev", target_labels={"instance": "h1"})
        alerts = evaluator.evaluate(history, now)
    firing = {(a.name, a.labels["device"]) for a in alerts if a.state == "firing"}
    assert firing == {("NetworkInterfaceDown", "eth1")}
