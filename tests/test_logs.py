"""The logs collector against real files: appends, restarts, rotation both ways, encodings, bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from test_logs_helpers import Harness, build

from collector.exposition import render
from collector.logs import LogsCollector, LogsConfig
from collector.registry import MemoryKeyValue
from collector.schema import ConfigError

MATCHES = "opsagent_log_matches_total"


def collector(tmp: Path, extra: str = "", files: str | None = None, **opts: str) -> LogsCollector:
    group = files if files is not None else f"  - paths: ['{tmp}/*.log']\n"
    text = "files:\n" + group + "".join(f"{k}: {v}\n" for k, v in opts.items()) + extra
    return LogsCollector(build(LogsConfig, text))


def append(path: Path, text: str | bytes) -> None:
    with path.open("ab") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def watching_empty_log(tmp: Path) -> tuple[Path, Harness]:
    """An empty ``app.log`` under ``tmp``, already seen once by a collector with the default patterns."""
    log = tmp / "app.log"
    log.write_text("")
    h = Harness(collector(tmp))
    h.run()
    return log, h


def test_first_sight_starts_at_end_then_counts_appended_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("old: error that happened before the agent was installed\n")
    h = Harness(collector(tmp_path))
    r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="error") == 0
    append(log, "app: ERROR db timeout\nkernel: Out of memory: Killed process 42 (java)\nok line\n")
    r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="error", pattern_severity="error") == 1
    assert r.value(MATCHES, file=str(log), pattern="oom_killer", pattern_severity="critical") == 1
    assert r.value(MATCHES, file=str(log), pattern="panic") == 0
    assert r.value("opsagent_log_file_readable", file=str(log)) == 1
    texts = {(e.labels["pattern"], e.text) for e in r.evidence}
    assert ("error", "app: ERROR db timeout") in texts
    # Nothing new: counters stay, no new evidence.
    r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="error") == 1
    assert r.evidence == []


def test_from_beginning_reads_existing_content(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("a: error one\nb: segfault at 0\n")
    h = Harness(collector(tmp_path, files=f"  - paths: ['{tmp_path}/*.log']\n    from_beginning: true\n"))
    r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="error") == 1
    assert r.value(MATCHES, file=str(log), pattern="segfault") == 1


def test_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    log, h = watching_empty_log(tmp_path)
    append(log, "app: pan")
    assert h.run().value(MATCHES, file=str(log), pattern="panic") == 0
    append(log, "ic now\n")
    assert h.run().value(MATCHES, file=str(log), pattern="panic") == 1


def test_restart_neither_rereads_nor_skips(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    state = MemoryKeyValue()
    h = Harness(collector(tmp_path), state=state)
    h.run()
    append(log, "x: error 1\n")
    assert h.run().value(MATCHES, file=str(log), pattern="error") == 1
    # The agent is down while more is written; a new instance with the same state resumes.
    append(log, "x: error 2\nx: error 3\n")
    h2 = Harness(collector(tmp_path), state=state, clock=h.clock)
    r = h2.run()
    assert r.value(MATCHES, file=str(log), pattern="error") == 3
    assert len(r.evidence) == 2
    r = Harness(collector(tmp_path), state=state, clock=h.clock).run()
    assert r.value(MATCHES, file=str(log), pattern="error") == 3
    assert r.evidence == []


def test_rename_rotation_finishes_the_old_tail_then_reads_the_new_file(tmp_path: Path) -> None:
    log, h = watching_empty_log(tmp_path)
    append(log, "1 error\n")
    assert h.run().value(MATCHES, file=str(log), pattern="error") == 1
    append(log, "2 error\n")  # written, not read yet
    os.rename(log, tmp_path / "app.log.1")
    append(tmp_path / "app.log.1", "3 error\n")  # the writer has not reopened yet
    append(log, "4 error\n5 error\n")
    r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="error") == 5
    assert r.value("opsagent_log_rotations_total", file=str(log), kind="rename") == 1
    # The renamed file is not watched on its own (excluded), and late writes to it are followed.
    assert r.value(MATCHES, file=str(tmp_path / "app.log.1")) is None
    append(tmp_path / "app.log.1", "6 error\n")
    append(log, "7 error\n")
    assert h.run().value(MATCHES, file=str(log), pattern="error") == 7
    assert h.run().value(MATCHES, file=str(log), pattern="error") == 7


def test_renamed_file_gone_is_counted_as_a_lost_tail(tmp_path: Path) -> None:
    log, h = watching_empty_log(tmp_path)
    append(log, "1 error\n")
    os.rename(log, tmp_path / "elsewhere.txt")
    append(log, "2 error\n")
    r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="error") == 1
    assert r.value("opsagent_log_rotations_total", file=str(log), kind="rename_tail_lost") == 1


def test_copytruncate_reads_the_copy_tail_then_the_truncated_file(tmp_path: Path) -> None:
    log, h = watching_empty_log(tmp_path)
    append(log, "first line of the file, identifies it\n1 error\n")
    assert h.run().value(MATCHES, file=str(log), pattern="error") == 1
    append(log, "2 error\n3 error\n")  # not read before rotation
    shutil.copyfile(log, tmp_path / "app.log.1")
    with log.open("r+b") as f:
        f.truncate(0)
    append(log, "4 error\n")
    r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="error") == 4
    assert r.value("opsagent_log_rotations_total", file=str(log), kind="copytruncate") == 1


def test_truncated_and_regrown_past_the_offset_is_detected(tmp_path: Path) -> None:
    # Size alone cannot see this: the first bytes differ, so it is a new content.
    log, h = watching_empty_log(tmp_path)
    append(log, "Nov 1 host a: error one\n")
    assert h.run().value(MATCHES, file=str(log), pattern="error") == 1
    with log.open("r+b") as f:
        f.truncate(0)
    append(log, "Nov 2 host b: panic two, a longer line than before\n")
    r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="panic") == 1
    assert r.value(MATCHES, file=str(log), pattern="error") == 1


def logrotate(tmp: Path, log: Path, mode: str) -> None:
    conf = tmp / "logrotate.conf"
    conf.write_text(f"{log} {{\n  rotate 3\n  {mode}\n  missingok\n  nocompress\n}}\n")
    res = subprocess.run(
        ["logrotate", "-s", str(tmp / "logrotate.state"), "-f", str(conf)],
        capture_output=True, text=True, timeout=30,
    )
    assert res.returncode == 0, res.stderr


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed")
@pytest.mark.parametrize("mode", ["create", "copytruncate"])
def test_real_logrotate_loses_and_doubles_nothing(tmp_path: Path, mode: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    # Not empty at first sight: its first bytes identify it (the copy of a copytruncate).
    log.write_text("app started, pid 1234, version 1.2.3\n")
    h = Harness(collector(logs))
    h.run()
    n = 0
    for cycle in range(3):
        for _ in range(5):
            n += 1
            append(log, f"cycle {cycle} request {n}: error code {n}\n")
        if cycle == 1:
            h.run()
        logrotate(tmp_path, log, mode)
        if mode == "create":
            assert log.exists() and (logs / "app.log.1").exists()
        append(log, f"after rotation {cycle}: panic\n")
        n_panic = cycle + 1
    r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="error") == n == 15
    assert r.value(MATCHES, file=str(log), pattern="panic") == n_panic
    assert r.total("opsagent_log_rotations_total", file=str(log)) >= 1


def test_lines_appended_while_collecting_through_a_rotation(tmp_path: Path) -> None:
    """A writer thread logs and rotates (rename, reopen) while the collector runs: exact totals."""
    log, h = watching_empty_log(tmp_path)
    total, every = 3000, 10
    done = threading.Event()

    def writer() -> None:
        f = log.open("a")
        for i in range(total):
            f.write(f"req {i} " + ("error\n" if i % every == 0 else "ok\n"))
            f.flush()
            if i % 100 == 0:
                time.sleep(0.002)  # let the collector interleave with the writer
            if i == total // 2:
                os.rename(log, tmp_path / "app.log.1")
                f.write("written after rename, before reopen: error\n")
                f.flush()
                f.close()
                f = log.open("a")
        f.close()
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    runs = 0
    while not done.is_set() and runs < 10_000:  # bounded
        h.run()
        runs += 1
    t.join(30)
    r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="error") == total // every + 1
    assert runs > 1  # the collector really ran while the writer wrote


def test_bytes_per_cycle_limit_resumes_next_cycle(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    h = Harness(collector(tmp_path, max_bytes_per_cycle="1000"))
    h.run()
    append(log, "".join(f"line {i:04d} error\n" for i in range(300)))  # 4800 bytes
    r = h.run()
    first = r.value(MATCHES, file=str(log), pattern="error")
    assert first is not None and 0 < first < 300
    assert (r.value("opsagent_log_backlog_bytes", file=str(log)) or 0) > 0
    for _ in range(10):
        r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="error") == 300
    assert r.value("opsagent_log_backlog_bytes", file=str(log)) == 0
    assert r.value("opsagent_log_read_bytes_total", file=str(log)) == 4800


def test_gbk_log_matched_with_chinese_patterns(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    files = f"  - paths: ['{log}']\n    encoding: gbk\n    patterns: [zh_error, error]\n"
    extra = "patterns:\n  zh_error: {regex: '错误|失败', severity: error}\n"
    h = Harness(collector(tmp_path, extra=extra, files=files))
    h.run()
    append(log, "2024-01-01 交易处理错误: 余额不足\n2024-01-01 交易成功\n登录失败 user=张三\n".encode("gbk"))
    append(log, b"\xff\xfe broken bytes then error\n")
    r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="zh_error") == 2
    assert r.value(MATCHES, file=str(log), pattern="error") == 1
    texts = [e.text for e in r.evidence if e.labels["pattern"] == "zh_error"]
    assert texts == ["2024-01-01 交易处理错误: 余额不足", "登录失败 user=张三"]
    assert any("\ufffd" in e.text for e in r.evidence if e.labels["pattern"] == "error")


def test_one_megabyte_line_is_truncated_in_evidence(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    h = Harness(collector(tmp_path, max_line_bytes="200"))
    h.run()
    append(log, "x" * (1 << 20) + " error at the end\n" + "short panic\n")
    r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="error") == 1
    assert r.value(MATCHES, file=str(log), pattern="panic") == 1
    ev = next(e for e in r.evidence if e.labels["pattern"] == "error")
    assert len(ev.text) < 300 and "bytes cut" in ev.text


def test_binary_garbage_does_not_crash_and_later_lines_count(tmp_path: Path) -> None:
    log, h = watching_empty_log(tmp_path)
    append(log, bytes(range(256)) * 64 + os.urandom(50_000) + b"\nkernel: panic here\n")
    r = h.run()
    assert (r.value(MATCHES, file=str(log), pattern="panic") or 0) >= 1
    assert all(isinstance(e.text, str) for e in r.evidence)
    render(r.samples)


def test_traceback_is_one_record(tmp_path: Path) -> None:
    log, h = watching_empty_log(tmp_path)
    append(
        log,
        "2024-01-01 12:00:00 ERROR app: request failed\n"
        "Traceback (most recent call last):\n"
        '  File "/srv/app.py", line 3, in handle\n'
        "    raise ValueError('bad input: error')\n"
        "ValueError: bad input: error\n"
        "2024-01-01 12:00:01 INFO app: next request fine\n",
    )
    r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="error") == 1
    assert r.value(MATCHES, file=str(log), pattern="traceback") == 1
    ev = next(e for e in r.evidence if e.labels["pattern"] == "traceback")
    assert ev.text.splitlines()[0] == "2024-01-01 12:00:00 ERROR app: request failed"
    assert ev.text.splitlines()[-1] == "ValueError: bad input: error"


def test_markup_and_escape_sequences_stay_inert_text(tmp_path: Path) -> None:
    # File names can carry quotes and newlines-like text too: the exposition must stay valid.
    weird = tmp_path / 'we"ird\\name.log'
    weird.write_text("")
    h = Harness(collector(tmp_path))
    h.run()
    line = "app: error <script>alert(1)</script> \x1b[31mRED\x1b[0m {{ $labels.file }} ${HOME} %s\n"
    append(weird, line)
    r = h.run()
    ev = next(e for e in r.evidence if e.labels["pattern"] == "error")
    assert isinstance(ev.text, str) and ev.text == line.rstrip("\n")
    text = render(r.samples)
    assert "<script>" not in text
    if shutil.which("promtool"):
        res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr


def test_unreadable_paths_are_findings_not_crashes(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.log")
    (tmp_path / "dir.log").mkdir()
    good = tmp_path / "good.log"
    good.write_text("")
    h = Harness(collector(tmp_path))
    h.run()
    append(good, "error\n")
    r = h.run()
    assert r.value("opsagent_log_file_readable", file=str(tmp_path / "pipe.log")) == 0
    assert r.value("opsagent_log_file_readable", file=str(tmp_path / "dir.log")) == 0
    assert r.value(MATCHES, file=str(good), pattern="error") == 1
    reasons = [e.text for e in r.evidence if e.labels.get("file") == str(tmp_path / "pipe.log")]
    assert reasons and "not a regular file" in reasons[0]


def test_permission_denied_is_a_finding() -> None:
    """As an unprivileged user (root reads anything): a chmod 000 file and a closed directory report 0."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        base = Path(top)
        base.chmod(0o755)
        d, closed = base / "logs", base / "closed"
        d.mkdir(mode=0o755)
        closed.mkdir(mode=0o700)
        (d / "secret.log").write_text("error\n")
        (d / "secret.log").chmod(0)
        (d / "open.log").write_text("")
        (d / "open.log").chmod(0o644)
        code = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
from collector.logs import LogsCollector, LogsConfig, LogFiles
from collector.registry import Context
c = LogsCollector(LogsConfig(files=(LogFiles(paths=({str(d)!r} + '/*.log', {str(closed)!r} + '/*.log')),)))
ctx = Context(config=None, clock=lambda: 1.0)
# Imports first: the interpreter's own files may not be readable by nobody.
os.setgid(65534); os.setuid(65534)
for s in c.collect(ctx):
    if s.name == 'opsagent_log_file_readable':
        print(s.labels['file'], s.value)
for e in ctx.evidence:
    print('evidence', e.text)
"""
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert f"{d}/secret.log 0.0" in res.stdout
    assert f"{d}/open.log 1.0" in res.stdout
    assert f"{closed}/*.log 0.0" in res.stdout
    assert res.stdout.count("Permission denied") == 2


def test_unlistable_directory_is_a_finding(tmp_path: Path) -> None:
    # A glob through a path component that is a file: listing it fails.
    (tmp_path / "notadir").write_text("")
    c = collector(tmp_path, files=f"  - paths: ['{tmp_path}/notadir/*.log']\n")
    r = Harness(c).run()
    assert r.value("opsagent_log_file_readable", file=f"{tmp_path}/notadir/*.log") == 0


def test_missing_files_are_not_errors(tmp_path: Path) -> None:
    c = collector(tmp_path, files=f"  - paths: ['{tmp_path}/nope.log', '{tmp_path}/none/*.log']\n")
    r = Harness(c).run()
    assert r.samples == [] and r.evidence == []


def test_counters_survive_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    state = MemoryKeyValue()
    h = Harness(collector(tmp_path), state=state)
    h.run()
    append(log, "error\n" * 5)
    h.run()
    r = Harness(collector(tmp_path), state=state).run()
    assert r.value(MATCHES, file=str(log), pattern="error") == 5
    assert r.value("opsagent_log_read_bytes_total", file=str(log)) == 30


def test_corrupt_state_starts_over_at_the_end(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("error\n")
    state = MemoryKeyValue()
    state.put(f"pos:{log}", b"\x00not json")
    r = Harness(collector(tmp_path), state=state).run()
    assert r.value(MATCHES, file=str(log), pattern="error") == 0
    assert r.value("opsagent_log_file_readable", file=str(log)) == 1


def test_evidence_is_limited_to_the_last_records(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    h = Harness(collector(tmp_path, evidence_lines="3"))
    h.run()
    append(log, "".join(f"error {i}\n" for i in range(100)))
    r = h.run()
    assert r.value(MATCHES, file=str(log), pattern="error") == 100
    assert [e.text for e in r.evidence] == ["error 97", "error 98", "error 99"]


def test_invalid_pattern_is_a_config_error_with_file_and_line() -> None:
    text = "files:\n  - paths: [/var/log/syslog]\npatterns:\n  bad:\n    regex: 'error(('\n"
    with pytest.raises(ConfigError) as ei:
        build(LogsConfig, text, file="opsagent.yaml")
    msg = str(ei.value)
    assert "opsagent.yaml:5" in msg and "patterns.bad.regex" in msg and "invalid regular expression" in msg


def test_backtracking_pattern_is_rejected_or_linear() -> None:
    # Backreferences need backtracking: RE2 refuses them at load.
    with pytest.raises(ConfigError) as ei:
        build(LogsConfig, "patterns:\n  bad: {regex: '(a+)\\1'}\n")
    assert "patterns.bad.regex" in str(ei.value)


def test_config_cross_checks() -> None:
    with pytest.raises(ConfigError) as ei:
        build(LogsConfig, "files:\n  - paths: [relative/x.log]\n    patterns: [nope]\n    continuation: ''\n")
    msg = str(ei.value)
    assert "config.yaml:2: files[0].paths[0]: must be an absolute path" in msg and "use null" in msg
    with pytest.raises(ConfigError) as ei:
        build(LogsConfig, "files:\n  - paths: [/x.log]\n    patterns: [nope]\nmax_line_bytes: 0\n")
    msg = str(ei.value)
    assert "unknown pattern 'nope'" in msg and "max_line_bytes: must be at least 1" in msg


def test_example_config_section_is_valid() -> None:
    from agent.config import load_config

    cfg = load_config(Path(__file__).resolve().parent.parent / "config.example.yaml")
    section = cfg.collector_section("logs")
    assert isinstance(section, LogsConfig)
    assert section.files
    LogsCollector(section)
