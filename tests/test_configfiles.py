"""Config-file tracking: real files edited between collections, versions in the real store, CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.cli import main
from agent.cli_files import NAMESPACE
from agent.store import Store, StoreKeyValue
from collector.configfiles import (
    ConfigFilesCollector,
    ConfigFilesConfig,
    Masker,
    masked_diff,
    read_index,
    read_version,
)
from collector.model import Sample
from collector.registry import Context, KeyValue, MemoryKeyValue

SECRET_CONF = """\
[database]
host = db1
password = hunter2
api_key: abc123
GRANT ALL ON app.* TO 'app'@'%' IDENTIFIED BY 'topsecret';
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAsecretkeymaterial
-----END RSA PRIVATE KEY-----
"""


def collect(paths: tuple[str, ...], kv: KeyValue, now: float, coll: ConfigFilesCollector | None = None
            ) -> tuple[list[Sample], Context, ConfigFilesCollector]:
    coll = coll or ConfigFilesCollector(ConfigFilesConfig(paths=paths))
    ctx = Context(config=None, clock=lambda: now, state=kv)
    return list(coll.collect(ctx)), ctx, coll


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def test_edit_between_collections_records_version_2_with_a_masked_diff(tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text(SECRET_CONF)
    kv = MemoryKeyValue()
    samples, ctx, coll = collect((str(conf),), kv, 1000.0)
    p = str(conf)
    assert value(samples, "opsagent_config_file_version", path=p) == 1
    assert value(samples, "opsagent_config_file_changes_total", path=p) == 0
    assert not ctx.evidence  # the first version is the baseline, not a change

    conf.write_text(SECRET_CONF.replace("hunter2", "s3cond").replace("db1", "db2")
                    .replace("topsecret", "newsecret").replace("secretkeymaterial", "otherkeymaterial"))
    samples, ctx, _ = collect((p,), kv, 2000.0, coll)
    assert value(samples, "opsagent_config_file_version", path=p) == 2
    assert value(samples, "opsagent_config_file_changes_total", path=p) == 1
    assert value(samples, "opsagent_config_file_last_change_timestamp_seconds", path=p) == 2000.0
    (ev,) = ctx.evidence
    assert ev.kind == "config_diff"
    assert "-host = db1" in ev.text and "+host = db2" in ev.text
    assert "+password = ****" in ev.text  # the changed line is shown, the value is not
    for secret in ("hunter2", "s3cond", "topsecret", "newsecret", "keymaterial"):
        assert secret not in ev.text
    # the stored versions are exact
    assert read_version(kv, p, 1) == SECRET_CONF.encode()
    assert b"s3cond" in (read_version(kv, p, 2) or b"")

    # no change: no new version
    samples, ctx, _ = collect((p,), kv, 3000.0, coll)
    assert value(samples, "opsagent_config_file_version", path=p) == 2 and not ctx.evidence


def test_globs_deletion_and_reappearance(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("a=1\n")
    (tmp_path / "b.conf").write_text("b=1\n")
    kv = MemoryKeyValue()
    pattern = f"{tmp_path}/*.conf"
    samples, _, coll = collect((pattern,), kv, 1.0)
    assert value(samples, "opsagent_config_file_version", path=f"{tmp_path}/b.conf") == 1
    (tmp_path / "b.conf").unlink()
    samples, ctx, _ = collect((pattern,), kv, 2.0, coll)
    assert value(samples, "opsagent_config_file_present", path=f"{tmp_path}/b.conf") == 0
    assert any("was deleted" in e.text for e in ctx.evidence)
    (tmp_path / "b.conf").write_text("b=2\n")
    samples, ctx, _ = collect((pattern,), kv, 3.0, coll)
    assert value(samples, "opsagent_config_file_version", path=f"{tmp_path}/b.conf") == 3
    assert "+b=2" in ctx.evidence[0].text


def test_oversized_file_is_a_finding_and_old_versions_are_pruned(tmp_path: Path) -> None:
    big = tmp_path / "big.conf"
    big.write_bytes(b"x" * 200)
    coll = ConfigFilesCollector(ConfigFilesConfig(paths=(str(big),), max_size=100, keep_versions=2))
    kv = MemoryKeyValue()
    samples, ctx, _ = collect((), kv, 1.0, coll)
    assert value(samples, "opsagent_config_file_present", path=str(big)) == 0
    assert "larger than max_size" in ctx.evidence[0].text
    for i in range(4):
        big.write_text(f"v{i}\n")
        collect((), kv, 2.0 + i, coll)
    index = read_index(kv, str(big))
    assert [v.v for v in index] == [3, 4]
    assert read_version(kv, str(big), 1) is None


def test_mask_private_key_hunk_starting_inside_the_block() -> None:
    lines = "".join(f"line{i}\n" for i in range(10))
    old = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{lines}AAAA\n-----END OPENSSH PRIVATE KEY-----\n".encode()
    new = old.replace(b"AAAA", b"BBBB")
    diff = masked_diff(old, new, "k@v1", "k@v2", Masker())
    assert "AAAA" not in diff and "BBBB" not in diff and "line9" not in diff
    assert "-****" in diff and "+****" in diff


@pytest.fixture
def agent_config(tmp_path: Path) -> tuple[Path, Path, Path]:
    target = tmp_path / "etc" / "app.conf"
    target.parent.mkdir()
    state = tmp_path / "state.db"
    cfg = tmp_path / "opsagent.yaml"
    cfg.write_text(f"agent: {{state_file: {state}}}\ncollectors:\n  configfiles:\n    paths: [{target}]\n")
    return cfg, state, target


def test_cli_history_diff_and_restore_round_trip(
    agent_config: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, state, target = agent_config
    target.write_text(SECRET_CONF)
    target.chmod(0o640)
    store = Store(state)
    kv = StoreKeyValue(store, NAMESPACE)
    _, _, coll = collect((str(target),), kv, 1000.0)
    target.write_text("[database]\nhost = wrong\npassword = oops\n")
    collect((), kv, 2000.0, coll)
    store.close()
    p = str(target)

    assert main(["files", "history", "-c", str(cfg), p]) == 0
    out = capsys.readouterr().out
    assert "VERSION" in out and len(out.strip().splitlines()) == 3

    assert main(["files", "diff", "-c", str(cfg), p, "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "+host = wrong" in out and "+password = ****" in out and "oops" not in out and "hunter2" not in out

    # someone edits by hand after the last collection; restore keeps that content too
    target.write_text("[database]\nhost = handmade\n")
    assert main(["files", "restore", "-c", str(cfg), p, "--version", "1"]) == 0
    out = capsys.readouterr().out
    assert "kept the current content" in out and "version 3" in out
    assert target.read_text() == SECRET_CONF  # exact, secrets included
    assert (target.stat().st_mode & 0o777) == 0o640
    assert not [f for f in os.listdir(target.parent) if f.endswith(".opsagent-restore")]

    store = Store(state)
    kv = StoreKeyValue(store, NAMESPACE)
    index = read_index(kv, p)
    assert [v.v for v in index] == [1, 2, 3, 4]
    assert read_version(kv, p, 3) == b"[database]\nhost = handmade\n"
    assert index[-1].sha256 == index[0].sha256
    store.close()


def test_cli_errors_are_one_line(
    agent_config: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _, target = agent_config
    assert main(["files", "history", "-c", str(cfg), str(target)]) == 1
    err = capsys.readouterr().err
    assert "has no recorded versions" in err and "Traceback" not in err
    target.write_text("a\n")
    store = Store(agent_config[1])
    collect((str(target),), StoreKeyValue(store, NAMESPACE), 1.0)
    store.close()
    assert main(["files", "restore", "-c", str(cfg), str(target), "--version", "7"]) == 1
    assert "has no version 7" in capsys.readouterr().err


def test_default_rule_change_is_p3_for_an_hour(tmp_path: Path) -> None:
    from rule_harness import firing

    conf = tmp_path / "app.conf"
    conf.write_text("a=1\n")
    kv = MemoryKeyValue()
    first, _, coll = collect((str(conf),), kv, 0.0)
    conf.write_text("a=2\n")
    second, _, _ = collect((), kv, 60.0, coll)
    alerts = firing("configfiles.yml", [first, second], 1000.0)
    (changed,) = alerts["ConfigFileChanged"]
    assert changed.level == "P3" and changed.labels["path"] == str(conf)
    assert firing("configfiles.yml", [first, first], 1000.0) == {}
