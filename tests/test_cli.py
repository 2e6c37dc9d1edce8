"""The opsagent command as a user runs it (subprocess): one-line errors, non-zero exits."""

from __future__ import annotations

from pathlib import Path

from daemon_harness import cli, example_config, write_config

from agent import __version__


def test_version() -> None:
    r = cli("--version")
    assert (r.returncode, r.stdout.strip()) == (0, f"opsagent {__version__}")


def test_collectors_table_lists_every_collector_with_its_state(tmp_path: Path) -> None:
    cfg = example_config(tmp_path)
    cfg["collectors"]["load"] = {"enabled": False}
    r = cli("collectors", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ENABLED", "DEFAULT", "DESCRIPTION"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
    assert rows["load"][1:4] == ["no", "yes", "Load"]
    assert rows["cpu"][1:3] == ["yes", "yes"]


def test_collect_one_collector_prints_exposition(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", example_config(tmp_path))
    r = cli("collect", "-c", str(cfg), "--collector", "load")
    assert r.returncode == 0, r.stderr
    assert "# TYPE node_load1 gauge" in r.stdout
    assert 'opsagent_collector_success{collector="load"} 1' in r.stdout
    assert "node_cpu_seconds_total" not in r.stdout
    assert not (tmp_path / "state.db").exists()  # a one-off collection leaves the agent's state alone


def test_collect_unknown_collector_is_a_one_line_error(tmp_path: Path) -> None:
    r = cli("collect", "--collector", "lod")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("opsagent: unknown collector 'lod' (did you mean 'load'?); known: ")


def test_run_with_missing_config_is_a_one_line_error(tmp_path: Path) -> None:
    r = cli("run", "-c", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2
    assert r.stderr == f"opsagent: {tmp_path / 'nope.yaml'}: (top): file not found\n"


def test_run_with_unwritable_state_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    cfg = example_config(tmp_path, agent={"state_file": str(tmp_path / "blocker" / "state.db")})
    r = cli("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    assert r.returncode == 1
    assert r.stderr.startswith("opsagent: cannot open state file ") and r.stderr.count("\n") == 1


def test_bad_usage_exits_non_zero() -> None:
    r = cli("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr
