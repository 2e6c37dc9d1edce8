"""Pure parsers of /proc text and the small file reads host collectors share.

Not a collector (the registry skips this module). Reads here translate
``OSError`` once, at the boundary, into ``CollectorFailure`` with the path in
the message, so a user sees "cannot read /proc/stat: Permission denied" and
not a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from collector.registry import CollectorFailure

# Jiffies per second as /proc reports them (USER_HZ); fixed at 100 on every
# Linux ABI, which is what node_exporter's procfs library assumes too.
USER_HZ = 100.0


def read_text(path: Path) -> str:
    """Read a whole /proc or /sys file; an unreadable file is a CollectorFailure."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        raise CollectorFailure(f"cannot read {path}: {e.strerror or e}") from e


def read_attr(path: str) -> str | None:
    """Read a one-line sysfs attribute, stripped; None when absent or unreadable.

    sysfs refuses some reads with EINVAL (the speed of a link that is down),
    which means "no value" rather than a failure.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 4096).decode("utf-8", "replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)


@dataclass(slots=True)
class ProcStat:
    """The parts of /proc/stat that node_exporter's cpu and stat collectors report."""

    # "cpu0" -> jiffies in /proc/stat column order (user nice system idle
    # iowait irq softirq steal guest guest_nice); the "cpu" total line is omitted.
    cpus: dict[str, list[int]] = field(default_factory=dict)
    intr: int | None = None
    ctxt: int | None = None
    btime: int | None = None
    processes: int | None = None
    procs_running: int | None = None
    procs_blocked: int | None = None
    softirq: list[int] = field(default_factory=list)


def parse_proc_stat(text: str) -> ProcStat:
    """Parse /proc/stat; a malformed line raises ValueError naming the line."""
    st = ProcStat()
    scalars = {"ctxt", "btime", "processes", "procs_running", "procs_blocked"}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        try:
            if key.startswith("cpu"):
                if key != "cpu":
                    st.cpus[key] = [int(x) for x in parts[1:]]
            elif key == "intr":
                st.intr = int(parts[1])
            elif key == "softirq":
                st.softirq = [int(x) for x in parts[1:]]
            elif key in scalars:
                setattr(st, key, int(parts[1]))
        except (ValueError, IndexError):
            raise ValueError(f"line {lineno}: malformed {key!r} line: {line[:80]!r}") from None
    return st


def read_proc_stat(proc: Path) -> ProcStat:
    """Read and parse ``<proc>/stat``; failures are CollectorFailure."""
    path = proc / "stat"
    try:
        return parse_proc_stat(read_text(path))
    except ValueError as e:
        raise CollectorFailure(f"{path}: {e}") from e
