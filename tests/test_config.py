"""Configuration: every problem located (file:line: key: message), all at once; secrets resolved."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_harness import cli

from agent.config import Config, load_config
from collector.schema import Builder, ConfigError, Secret, compose


def _problems(tmp_path: Path, text: str) -> list[str]:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    return [str(x) for x in e.value.problems]


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    probs = _problems(tmp_path, "agent:\n  instance: a\n web: [\n")
    assert len(probs) == 1
    assert probs[0].startswith(f"{tmp_path / 'c.yaml'}:3: ")
    assert "invalid YAML" in probs[0]


def test_wrong_types_and_unknown_keys_are_all_reported_at_once(tmp_path: Path) -> None:
    text = """\
agent:
  log_level: loud
  instanse: x
web:
  listen_address: nowhere
schedule:
  interval: soon
  timeout: 10s
  checks:
    morning: {at: "25:00"}
    weekly: {at: "09:00", days: [monday]}
collectors:
  nosuch: {}
"""
    probs = _problems(tmp_path, text)
    f = str(tmp_path / "c.yaml")
    assert f"{f}:2: agent.log_level: must be one of debug, info, warning, error; got 'loud'" in probs
    assert f"{f}:3: agent.instanse: unknown key (did you mean 'instance'?)" in probs
    assert any(p.startswith(f"{f}:5: web.listen_address: invalid listen address 'nowhere'") for p in probs)
    assert any(p.startswith(f"{f}:7: schedule.interval: invalid duration 'soon'") for p in probs)
    assert f"{f}:10: schedule.checks.morning.at: must be HH:MM; got '25:00'" in probs
    assert any(p.startswith(f"{f}:11: schedule.checks.weekly.days: unknown weekday 'monday'") for p in probs)
    assert f"{f}:13: collectors.nosuch: unknown key" in probs
    assert len(probs) == 7


def test_missing_file(tmp_path: Path) -> None:
    probs = _problems_missing(tmp_path / "absent.yaml")
    assert probs == [f"{tmp_path / 'absent.yaml'}: (top): file not found"]


def _problems_missing(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return [str(x) for x in e.value.problems]


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("# every key is optional\n")
    assert load_config(tmp_path / "c.yaml").web.listen_address == ":9934"
    (tmp_path / "d.yaml").write_text("agent: {}\n")
    cfg = load_config(tmp_path / "d.yaml")
    assert cfg.web.listen_address == ":9934" and cfg.schedule.interval == 15


def test_relative_state_file_is_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("agent: {state_file: ./var/s.db}\n")
    assert load_config(tmp_path / "c.yaml").agent.state_file == tmp_path / "var" / "s.db"


@pytest.mark.parametrize(
    "text, env, expected",
    [
        ("password: ${OPSAGENT_TEST_PW}\n", {"OPSAGENT_TEST_PW": "from-env"}, "from-env"),
        ("password: pre-${OPSAGENT_TEST_PW}\n", {"OPSAGENT_TEST_PW": "x"}, "pre-x"),
    ],
)
def test_secret_from_environment(
    text: str, env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    obj = _build_secret(text)
    assert isinstance(obj.password, Secret) and obj.password.reveal() == expected
    assert str(obj.password) == "****" and expected not in repr(obj)


def test_secret_from_missing_environment_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSAGENT_NOPE", raising=False)
    b = Builder("t.yaml")
    b.build(_SecretHolder, compose("password: ${OPSAGENT_NOPE}\n", "t.yaml"))
    assert [str(p) for p in b.problems] == [
        "t.yaml:1: password: environment variable OPSAGENT_NOPE is not set"
    ]


def test_secret_from_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    b = Builder(str(tmp_path / "t.yaml"))
    obj = b.build(_SecretHolder, compose("password_file: pw\n", "t.yaml"))
    assert b.problems == [] and obj.password.reveal() == "from-file"
    b = Builder(str(tmp_path / "t.yaml"))
    b.build(_SecretHolder, compose("password_file: missing\n", "t.yaml"))
    assert len(b.problems) == 1 and "cannot read secret file" in str(b.problems[0])


from dataclasses import dataclass  # noqa: E402 - the test schema sits beside the tests using it


@dataclass(frozen=True)
class _SecretHolder:
    password: Secret | None = None


def _build_secret(text: str) -> _SecretHolder:
    b = Builder("t.yaml")
    obj = b.build(_SecretHolder, compose(text, "t.yaml"))
    assert b.problems == []
    return obj


def test_config_check_cli_prints_every_problem_and_exits_2(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("agent:\n  log_levl: info\nweb:\n  listen_address: 1\n")
    r = cli("config", "check", str(p))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == [
        f"opsagent: {p}:2: agent.log_levl: unknown key (did you mean 'log_level'?)",
        f"opsagent: {p}:4: web.listen_address: invalid listen address '1'"
        " (use host:port, e.g. 127.0.0.1:9934)",
    ]
    assert "Traceback" not in r.stderr


def test_config_check_cli_ok(tmp_path: Path) -> None:
    r = cli("config", "check", str(Path(__file__).parent.parent / "config.example.yaml"))
    assert (r.returncode, r.stdout) == (0, "config OK\n")


def test_config_defaults_are_a_valid_config() -> None:
    cfg = Config()
    assert set(cfg.schedule.checks) == {"morning", "evening", "weekly"}


def test_config_check_also_loads_the_rule_files_it_names(tmp_path):
    import subprocess
    import sys

    (tmp_path / "bad.yml").write_text(
        "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: rat(x[5m]) > 1\n"
    )
    (tmp_path / "c.yaml").write_text("rules:\n  files: [bad.yml]\n")
    r = subprocess.run([sys.executable, "-m", "agent.cli", "config", "check", str(tmp_path / "c.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stdout
    assert "bad.yml:5: groups[0].rules[0](X).expr: unknown function with name 'rat'" in r.stderr
    assert "Traceback" not in r.stderr


def test_section_checks_run_even_when_other_keys_of_the_section_are_wrong(tmp_path: Path) -> None:
    # one run of `config check` shows every problem: the time zone (a section
    # check) is reported beside the bad log level (a field of the same section)
    text = """\
agent:
  log_level: loud
  timezone: Mars/Olympus
web:
  listen_address: nowhere
  tls_cert_file: missing.crt
  tls_key_file: missing.key
  basic_auth_users:
    alice: "$2b$10$abcdefghijklmnopqrstuu"
    bob: plaintext
"""
    probs = _problems(tmp_path, text)
    f = str(tmp_path / "c.yaml")
    assert probs[0] == f"{f}:2: agent.log_level: must be one of debug, info, warning, error; got 'loud'"
    assert probs[1] == f"{f}:3: agent.timezone: unknown time zone 'Mars/Olympus' (use e.g. Asia/Shanghai)"
    assert probs[2].startswith(f"{f}:5: web.listen_address: invalid listen address 'nowhere'")
    assert probs[3:] == [
        f"{f}:6: web.tls_cert_file: {tmp_path / 'missing.crt'}: not found",
        f"{f}:7: web.tls_key_file: {tmp_path / 'missing.key'}: not found",
        # the line of bob's own entry, not of the mapping
        f"{f}:10: web.basic_auth_users.bob: must be a bcrypt hash (htpasswd -nBC 10 '' | tr -d ':')",
    ]


def test_section_check_says_nothing_about_a_key_already_reported(tmp_path: Path) -> None:
    # tls_key_file is malformed: no second, misleading "must be given together"
    probs = _problems(tmp_path, "web:\n  tls_cert_file: /etc/hostname\n  tls_key_file: [a]\n")
    assert probs == [f"{tmp_path / 'c.yaml'}:3: web.tls_key_file: must be a single value"]


@pytest.mark.parametrize(("text", "problem"), [
    # 0s would collect in a tight loop, a CPU at 100 %
    ("schedule:\n  interval: 0s\n", "2: schedule.interval: must be at least 1s"),
    ("schedule:\n  interval: 200ms\n", "2: schedule.interval: must be at least 1s"),
    ("schedule:\n  timeout: 0s\n", "2: schedule.timeout: must be greater than 0"),
])
def test_schedule_interval_and_timeout_are_bounded(tmp_path: Path, text: str, problem: str) -> None:
    assert _problems(tmp_path, text) == [f"{tmp_path / 'c.yaml'}:{problem}"]


def test_unreadable_tls_files_fail_config_check_not_only_the_restart(tmp_path: Path) -> None:
    key = tmp_path / "tls.key"
    key.write_text("x")
    key.chmod(0)
    p = tmp_path / "c.yaml"
    p.write_text(f"web:\n  tls_cert_file: nowhere/tls.crt\n  tls_key_file: {key}\n")
    r = cli("config", "check", str(p))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0] == f"opsagent: {p}:2: web.tls_cert_file: {tmp_path / 'nowhere/tls.crt'}: not found"
    import os

    if os.geteuid() != 0:  # root reads any file
        assert lines[1] == f"opsagent: {p}:3: web.tls_key_file: {key}: not readable"


def test_every_collector_section_may_set_its_own_interval_and_timeout(tmp_path: Path) -> None:
    from agent.cycle import build_jobs

    p = tmp_path / "c.yaml"
    p.write_text("collectors:\n  hwmon: {interval: 1m, timeout: 3s}\n  cpu: {interval: 0s}\n")
    jobs = {j.name: j for j in build_jobs(load_config(p))}
    assert (jobs["hwmon"].interval, jobs["hwmon"].timeout) == (60, 3)
    assert (jobs["cpu"].interval, jobs["cpu"].timeout) == (15, 10)  # 0s: the schedule's


def test_collector_interval_and_stat_timeout_are_checked_against_the_schedule(tmp_path: Path) -> None:
    text = "collectors:\n  cpu:\n    interval: 100ms\n  filesystem:\n    stat_timeout: 10s\n"
    f = tmp_path / "c.yaml"
    assert _problems(tmp_path, text) == [
        f"{f}:3: collectors.cpu.interval: must be at least 1s",
        f"{f}:5: collectors.filesystem.stat_timeout: must be shorter than the collector's timeout (10s),"
        " or one hung mount fails the whole collector",
    ]
    f.write_text("collectors:\n  filesystem: {stat_timeout: 10s, timeout: 30s}\n")
    assert load_config(f).collector_section("filesystem").stat_timeout == 10
