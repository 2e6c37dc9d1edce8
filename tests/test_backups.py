"""Backup checks on a real backup directory whose file times the test sets."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from collector.backups import (
    BackupJob,
    BackupsCollector,
    BackupsConfig,
    BackupSet,
    chain_gaps,
    parse_checksums,
    parse_size,
)
from collector.model import Sample
from collector.registry import Context, MemoryKeyValue
from collector.schema import Builder, Duration, compose

NOW = 1_700_000_000.0
DAY = 86400.0


def backup(path: Path, size: int, age_days: float, checksum: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    path.write_bytes(data)
    t = NOW - age_days * DAY
    os.utime(path, (t, t))
    if checksum:
        Path(f"{path}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
    return path


def collect(jobs: tuple[BackupJob, ...], state: MemoryKeyValue | None = None,
            now: float = NOW) -> tuple[list[Sample], Context]:
    ctx = Context(config=None, clock=lambda: now, state=state or MemoryKeyValue())
    return list(BackupsCollector(BackupsConfig(jobs=jobs)).collect(ctx)), ctx


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def weekly_daily(d: Path, **inc: object) -> BackupJob:
    return BackupJob(
        "db",
        full=BackupSet(f"{d}/full-*.tar", max_age=Duration(7 * DAY), min_size="1KiB",
                       checksum_file="{path}.sha256"),
        incremental=BackupSet(f"{d}/inc-*.tar", max_age=Duration(DAY), min_size="100", **inc),  # type: ignore[arg-type]
        grace=Duration(3600),
    )


def test_healthy_weekly_full_and_daily_incrementals(tmp_path: Path) -> None:
    backup(tmp_path / "full-1.tar", 4096, 6, checksum=True)
    for i, age in enumerate([5, 4, 3, 2, 1, 0.5]):
        backup(tmp_path / f"inc-{i}.tar", 1000 + i, age)
    samples, ctx = collect((weekly_daily(tmp_path),))
    full = {"job": "db", "kind": "full"}
    inc = {"job": "db", "kind": "incremental"}
    assert value(samples, "opsagent_backup_files", **full) == 1
    assert value(samples, "opsagent_backup_files", **inc) == 6
    assert value(samples, "opsagent_backup_verify_success", **full) == 1
    assert value(samples, "opsagent_backup_last_success_timestamp_seconds", **full) == NOW - 6 * DAY
    assert value(samples, "opsagent_backup_age_seconds", **inc) == pytest.approx(0.5 * DAY)
    assert value(samples, "opsagent_backup_max_age_seconds", **inc) == DAY + 3600
    assert value(samples, "opsagent_backup_size_bytes", **inc) == 1005
    assert value(samples, "opsagent_backup_size_change_ratio", **inc) == pytest.approx(1005 / 1004)
    assert value(samples, "opsagent_backup_chain_ok", job="db") == 1
    # the evidence names the backup file found
    assert any("inc-5.tar" in e.text and "ok" in e.text for e in ctx.evidence)


def test_missed_full_and_missed_incremental_show_in_the_age(tmp_path: Path) -> None:
    backup(tmp_path / "full-1.tar", 4096, 9, checksum=True)
    backup(tmp_path / "inc-1.tar", 500, 3)
    samples, _ = collect((weekly_daily(tmp_path),))
    for kind in ("full", "incremental"):
        age = value(samples, "opsagent_backup_age_seconds", job="db", kind=kind)
        limit = value(samples, "opsagent_backup_max_age_seconds", job="db", kind=kind)
        assert age is not None and limit is not None and age > limit, kind
    # a 2-day hole between the full and the newest incremental breaks the chain
    assert value(samples, "opsagent_backup_chain_ok", job="db") == 0


def test_too_small_and_shrunk_backup_is_not_a_success(tmp_path: Path) -> None:
    backup(tmp_path / "full-1.tar", 4096, 6, checksum=True)
    backup(tmp_path / "inc-1.tar", 10_000, 1.5)
    backup(tmp_path / "inc-2.tar", 50, 0.5)  # below min_size 100 and shrank by 99.5%
    samples, ctx = collect((weekly_daily(tmp_path),))
    inc = {"job": "db", "kind": "incremental"}
    assert value(samples, "opsagent_backup_size_bytes", **inc) == 50
    assert value(samples, "opsagent_backup_min_size_bytes", **inc) == 100
    assert value(samples, "opsagent_backup_size_change_ratio", **inc) == pytest.approx(0.005)
    # never had a good one: the age counts from the newest file
    assert value(samples, "opsagent_backup_last_success_timestamp_seconds", **inc) == 0
    assert value(samples, "opsagent_backup_age_seconds", **inc) == pytest.approx(0.5 * DAY)
    assert any("below the minimum" in e.text for e in ctx.evidence)


def test_incremental_without_a_full_before_it_breaks_the_chain(tmp_path: Path) -> None:
    backup(tmp_path / "full-1.tar", 4096, 0.2, checksum=True)  # the full came after the incrementals
    backup(tmp_path / "inc-1.tar", 500, 1)
    samples, ctx = collect((weekly_daily(tmp_path),))
    assert value(samples, "opsagent_backup_chain_ok", job="db") == 0
    assert any("no full backup before it" in e.text for e in ctx.evidence)
    assert chain_gaps([], [], 1.0) == ""


def test_checksum_mismatch_fails_verification_and_is_cached_per_file(tmp_path: Path) -> None:
    f = backup(tmp_path / "full-1.tar", 4096, 1, checksum=True)
    job = BackupJob("files", full=BackupSet(f"{tmp_path}/full-*.tar", max_age=Duration(7 * DAY),
                                            checksum_file="{path}.sha256"))
    state = MemoryKeyValue()
    samples, _ = collect((job,), state)
    assert value(samples, "opsagent_backup_verify_success", kind="full") == 1
    # corrupt the backup but keep size and mtime: the cached verdict stands (hashed once per file)
    st = f.stat()
    data = bytearray(f.read_bytes())
    data[0] ^= 0xFF
    f.write_bytes(bytes(data))
    os.utime(f, (st.st_atime, st.st_mtime))
    samples, _ = collect((job,), state)
    assert value(samples, "opsagent_backup_verify_success", kind="full") == 1
    # a fresh state (or a changed file) is verified again and the mismatch found
    samples, ctx = collect((job,), MemoryKeyValue())
    assert value(samples, "opsagent_backup_verify_success", kind="full") == 0
    assert value(samples, "opsagent_backup_last_success_timestamp_seconds", kind="full") == 0
    assert any("checksum mismatch" in e.text for e in ctx.evidence)


def test_verify_command_and_success_marker(tmp_path: Path) -> None:
    good = backup(tmp_path / "ok" / "b-1.tar", 2048, 0.1)
    Path(f"{good}.done").touch()
    bad = backup(tmp_path / "bad" / "b-1.tar", 2048, 0.1)
    script = "import sys; sys.exit(0 if open(sys.argv[1],'rb').read(1) else 3)"
    check = [sys.executable, "-c", script, "{path}"]
    jobs = (
        BackupJob("ok", full=BackupSet(f"{tmp_path}/ok/b-*.tar", max_age=Duration(DAY),
                                       verify_command=tuple(check), success_marker="{path}.done")),
        BackupJob("bad", full=BackupSet(f"{tmp_path}/bad/b-*.tar", max_age=Duration(DAY),
                                        verify_command=(sys.executable, "-c", "raise SystemExit(3)"),
                                        success_marker="{path}.done")),
    )
    samples, ctx = collect(jobs)
    assert value(samples, "opsagent_backup_verify_success", job="ok") == 1
    assert value(samples, "opsagent_backup_marker_present", job="ok") == 1
    assert value(samples, "opsagent_backup_verify_success", job="bad") == 0
    assert value(samples, "opsagent_backup_marker_present", job="bad") == 0
    text = " ".join(e.text for e in ctx.evidence if e.labels.get("job") == "bad")
    assert "exited 3" in text and "marker" in text
    assert bad.exists()


def test_missing_backup_location_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "notadir").write_text("x")
    jobs = (
        BackupJob("gone", full=BackupSet(f"{tmp_path}/missing/*.tar", max_age=Duration(DAY))),
        BackupJob("file", full=BackupSet(f"{tmp_path}/notadir/*.tar", max_age=Duration(DAY))),
    )
    samples, ctx = collect(jobs)
    assert value(samples, "opsagent_backup_path_readable", job="gone") == 0
    assert value(samples, "opsagent_backup_path_readable", job="file") == 0
    assert value(samples, "opsagent_backup_age_seconds", job="gone") == 0  # first watched now
    assert any("cannot read backup location" in e.text and "missing" in e.text for e in ctx.evidence)


def test_unreadable_backup_directory_is_reported(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    backup(locked / "b.tar", 100, 0)
    locked.chmod(0o700)
    tmp_path.chmod(0o755)
    job = BackupJob("secret", full=BackupSet(f"{locked}/*.tar", max_age=Duration(DAY)))
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: root reads everything, so look as user nobody
        try:
            os.close(read_fd)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            samples, ctx = collect((job,))
            readable = value(samples, "opsagent_backup_path_readable", job="secret")
            os.write(write_fd, f"{readable}|{ctx.evidence[0].text}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    shown, _, text = out.partition("|")
    assert shown == "0.0"
    assert "cannot read backup location" in text and "Permission denied" in text


def test_sizes_checksums_and_config_errors() -> None:
    assert parse_size("10MiB") == 10 * 1024 * 1024
    assert parse_size("2G") == 2_000_000_000
    assert parse_size("512") == 512
    with pytest.raises(ValueError):
        parse_size("lots")
    sums = parse_checksums("a" * 64 + "  /backup/x.tar\n" + "b" * 64 + " *y.tar\nnot a line\n")
    assert sums == {"x.tar": "a" * 64, "y.tar": "b" * 64}
    text = "jobs:\n  - name: db\n    full: {path: backup/*.tar, max_age: 1d, min_size: huge}\n  - name: db\n"
    b = Builder("c.yml")
    b.build(BackupsConfig, compose(text, "c.yml"))
    msgs = [str(p) for p in b.problems]
    assert any("c.yml:3: jobs[0].full.path" in m for m in msgs)
    assert any("jobs[0].full.min_size" in m and "invalid size" in m for m in msgs)
    assert any("jobs[1].full" in m and "needs full, incremental or both" in m for m in msgs)


def test_default_rules_on_a_broken_backup_directory(tmp_path: Path) -> None:
    from rule_harness import firing

    backup(tmp_path / "full-1.tar", 4096, 9, checksum=True)  # missed: weekly full is 9 days old
    Path(tmp_path / "full-1.tar.sha256").write_text("0" * 64 + "  full-1.tar\n")  # and corrupt
    backup(tmp_path / "inc-1.tar", 5000, 1.5)
    backup(tmp_path / "inc-2.tar", 50, 0.5)  # too small, shrank
    samples, _ = collect((weekly_daily(tmp_path),))
    alerts = firing("backups.yml", [samples], NOW)
    assert set(alerts) == {"BackupFullMissed", "BackupTooSmall", "BackupShrankSuspiciously",
                           "BackupVerificationFailed", "BackupChainBroken"}
    assert alerts["BackupFullMissed"][0].level == "P2"
    assert alerts["BackupShrankSuspiciously"][0].level == "P3"
    assert alerts["BackupTooSmall"][0].labels["kind"] == "incremental"
