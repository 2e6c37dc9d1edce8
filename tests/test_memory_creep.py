"""Memory of a daemon that runs for years: what must not creep (issue 2, ``bench/hours.py``)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from collector.logstate import READ_SLACK, Budget, FileState, LogReader


def _read_all(path: Path, state: FileState, now: float) -> bytes:
    reader = LogReader(path, state, now=now, budget=Budget(64 << 20), from_beginning=True)
    return b"".join(reader.blocks())


def test_reading_a_log_that_grew_a_little_allocates_a_little(tmp_path: Path) -> None:
    # os.pread allocates the whole size asked for: 8 MiB per watched file per cycle
    # (mostly for nothing appended) left glibc's heaps holding memory for good
    log = tmp_path / "app.log"
    log.write_bytes(b"first line\n")
    state = FileState()
    assert _read_all(log, state, 1000.0) == b"first line\n"
    with log.open("ab") as f:
        f.write(b"second line\n")
    tracemalloc.start()
    try:
        assert _read_all(log, state, 1015.0) == b"second line\n"
        assert _read_all(log, state, 1030.0) == b""  # nothing appended: nothing to read
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * READ_SLACK, peak


def test_a_log_longer_than_the_slack_is_still_read_whole_in_one_cycle(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    state = FileState()
    assert _read_all(log, state, 1000.0) == b""
    lines = b"".join(b"line %06d %s\n" % (i, b"x" * 80) for i in range(3 * READ_SLACK // 90))
    with log.open("ab") as f:
        f.write(lines + b"partial")  # a last line without its newline waits for it
    assert _read_all(log, state, 1015.0) == lines
    with log.open("ab") as f:
        f.write(b" line\n")
    assert _read_all(log, state, 1030.0) == b"partial line\n"
