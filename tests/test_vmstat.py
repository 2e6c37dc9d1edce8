"""The vmstat collector: /proc/vmstat with node_exporter 1.5's names and (untyped) types, its
``fields`` option, and the SwapThrashing rule of the memory pack fed by it."""

from __future__ import annotations

from pathlib import Path

import pytest
from rule_harness import firing

from agent.config import load_config
from collector.exposition import render
from collector.registry import CollectorFailure, Context, Paths
from collector.schema import ConfigError, Regex
from collector.vmstat import VmstatCollector, VmstatConfig, parse_vmstat

FX = Path(__file__).parent / "fixtures" / "host"
ROOT = Path(__file__).resolve().parent.parent


def collect(proc: Path, config: VmstatConfig | None = None) -> dict[str, float]:
    ctx = Context(config=None, paths=Paths(proc=proc), clock=lambda: 1_700_000_000.0)
    out = {}
    for s in VmstatCollector(config or VmstatConfig()).collect(ctx):
        assert s.labels == {} and s.name not in out
        out[s.name] = s.value
    return out


def test_parse_vmstat_reads_every_field():
    assert parse_vmstat("pgfault 17090824\npswpin 0\n\noom_kill 3\n") == {
        "pgfault": 17090824.0, "pswpin": 0.0, "oom_kill": 3.0,
    }


@pytest.mark.parametrize(("text", "message"), [
    ("pgfault 1\npswpin\n", "line 2: malformed vmstat line 'pswpin'"),
    ("pgfault 1 2\n", "line 1: malformed"),
    ("pgfault many\n", "line 1: invalid value in vmstat line 'pgfault many'"),
])
def test_parse_vmstat_names_the_bad_line(text, message):
    with pytest.raises(ValueError, match=message):
        parse_vmstat(text)


def test_default_fields_are_node_exporters():
    got = collect(FX / "proc")
    assert got == {
        "node_vmstat_pgpgin": 1492193,
        "node_vmstat_pgpgout": 2338976,
        "node_vmstat_pswpin": 1234,
        "node_vmstat_pswpout": 5678,
        "node_vmstat_pgfault": 17090824,
        "node_vmstat_pgmajfault": 1558,
        "node_vmstat_oom_kill": 3,
    }


def test_exposition_matches_node_exporter_byte_for_byte():
    ctx = Context(config=None, paths=Paths(proc=FX / "proc"), clock=lambda: 0.0)
    text = render(list(VmstatCollector(VmstatConfig()).collect(ctx)))
    # as node_exporter 1.5 prints it (checked against prometheus-node-exporter --collector.vmstat)
    assert (
        "# HELP node_vmstat_pswpin /proc/vmstat information field pswpin.\n"
        "# TYPE node_vmstat_pswpin untyped\n"
        "node_vmstat_pswpin 1234\n"
    ) in text
    assert "# TYPE node_vmstat_oom_kill untyped\n" in text


def test_fields_option_selects_other_fields():
    got = collect(FX / "proc", VmstatConfig(fields=Regex("^(pswp|thp_)")))
    assert got == {"node_vmstat_pswpin": 1234, "node_vmstat_pswpout": 5678, "node_vmstat_thp_fault_alloc": 52}


def test_invalid_fields_pattern_is_a_located_config_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("collectors:\n  vmstat:\n    fields: '(['\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    [problem] = [str(p) for p in e.value.problems]
    assert problem.startswith(f"{cfg}:3: collectors.vmstat.fields: invalid regular expression")


def test_missing_and_malformed_vmstat_are_clear_failures(tmp_path):
    with pytest.raises(CollectorFailure, match=rf"cannot read {tmp_path / 'vmstat'}: No such file"):
        collect(tmp_path)
    (tmp_path / "vmstat").write_text("pgfault 1\npswpin lots\n")
    with pytest.raises(CollectorFailure, match=rf"{tmp_path / 'vmstat'}: line 2: invalid value"):
        collect(tmp_path)


def test_this_hosts_vmstat_is_read():
    if not Path("/proc/vmstat").exists():
        pytest.skip("no /proc/vmstat")
    assert {"node_vmstat_pgfault", "node_vmstat_pswpin", "node_vmstat_pswpout"} <= set(collect(Path("/proc")))


def _swap_rounds(tmp: Path, pages_per_minute: int, minutes: int):
    """One vmstat collection a minute while the kernel swaps in ``pages_per_minute`` pages."""
    proc = tmp / "proc"
    proc.mkdir(exist_ok=True)
    ctx = Context(config=None, paths=Paths(proc=proc), clock=lambda: 0.0)
    rounds = []
    for i in range(minutes):
        (proc / "vmstat").write_text(
            f"pgpgin {1000 + i}\npswpin {i * pages_per_minute}\npswpout {i * pages_per_minute // 4}\n"
        )
        rounds.append(list(VmstatCollector(VmstatConfig()).collect(ctx)))
    return rounds


def test_swap_thrashing_fires_on_collected_vmstat(tmp_path):
    # 40000 + 10000 pages a minute: ~833 pages/s, above the rule's 500, for more than its 10m
    alerts = firing("memory.yml", _swap_rounds(tmp_path, 40_000, 17), start=1_700_000_000.0)
    [a] = alerts["SwapThrashing"]
    assert a.labels["instance"] == "host1" and a.value == pytest.approx(50_000 / 60)
    assert a.level == "P2"  # severity: error


def test_swap_thrashing_stays_quiet_below_the_threshold_or_too_briefly(tmp_path):
    # ~400 pages/s for 17 minutes: below the threshold
    assert "SwapThrashing" not in firing("memory.yml", _swap_rounds(tmp_path, 24_000, 17), start=1.7e9)
    # heavy but for 8 minutes: still pending (for: 10m)
    assert "SwapThrashing" not in firing("memory.yml", _swap_rounds(tmp_path, 40_000, 8), start=1.7e9)


def test_vmstat_is_documented_and_in_the_example_config():
    docs = (ROOT / "docs" / "collectors.md").read_text()
    section = docs.split("### vmstat\n", 1)[1].split("\n### ", 1)[0]
    for name in ("pgfault", "pgmajfault", "pgpgin", "pgpgout", "pswpin", "pswpout", "oom_kill"):
        assert f"`node_vmstat_{name}`" in section
    assert "`fields`" in section and "untyped" in section
    config = load_config(ROOT / "config.example.yaml")
    assert config.collector_section("vmstat").fields == VmstatConfig().fields
