"""Log files: lines matching named patterns, counted per file and pattern, through rotation.

Files are chosen by glob; each group of files has an encoding and a set of
named patterns with a severity. What was read, and the match totals, are
kept in ``ctx.state`` per file (see ``collector.logstate``), so a restart
neither re-reads nor skips and counters survive it. Matching is RE2 (see
``collector.logscan``). The last matching records go to evidence for the
ticket. Severity here only labels what a pattern finds; rules decide levels.
The label is ``pattern_severity``, not ``severity``: an alert's ``severity``
is its own (the rule sets it, Alertmanager routes on it) and would overwrite
the series', so a ticket would no longer say what the pattern found.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from collector.logscan import DEFAULT_CONTINUATION, Matcher, PatternSpec, Record, record_text, to_utf8
from collector.logstate import Budget, FileState, LogReader, Unreadable, parse_file_state
from collector.model import Evidence, Sample, counter, gauge
from collector.registry import Context, KeyValue, register
from collector.schema import Duration, Regex

log = logging.getLogger("opsagent.collector.logs")

Severity = Literal["critical", "error", "warning", "info"]
Encoding = Literal["utf-8", "gbk", "gb18030"]

MATCHES = counter(
    "opsagent_log_matches_total",
    "Log records matching a named pattern (a multi-line record counts once per pattern).",
)
READ_BYTES = counter("opsagent_log_read_bytes_total", "Bytes of the log file read (rotated tails included).")
LAST_MATCH = gauge(
    "opsagent_log_last_match_timestamp_seconds", "When the agent last found a record matching the pattern."
)
READABLE = gauge("opsagent_log_file_readable", "Whether the log file could be read (1) or not (0).")
BACKLOG = gauge(
    "opsagent_log_backlog_bytes", "Bytes written to the log file but not read yet (per-cycle limit)."
)
ROTATIONS = counter(
    "opsagent_log_rotations_total",
    "Rotations seen: rename (renamed tail finished), rename_tail_lost (renamed file not found),"
    " copytruncate.",
)


@dataclass(frozen=True)
class LogPattern:
    """A named pattern: an RE2 regular expression and the severity of what it finds."""

    regex: Regex
    severity: Severity = "error"
    ignore_case: bool = True


# Defaults: what a daily check of system logs looks for (SPEC §1). RE2 syntax,
# case-insensitive; written so `grep -E` reads them the same way.
DEFAULT_PATTERNS: dict[str, LogPattern] = {
    "error": LogPattern(Regex(r"\berror\b"), "error"),
    "fatal": LogPattern(Regex(r"\bfatal\b"), "error"),
    "panic": LogPattern(Regex(r"\bpanic\b"), "critical"),
    "segfault": LogPattern(Regex(r"\bsegfault\b|segmentation fault"), "error"),
    "oom_killer": LogPattern(
        Regex(r"out of memory|oom-killer|oom_reaper|killed process [0-9]+"), "critical"
    ),
    "traceback": LogPattern(Regex(r"Traceback \(most recent call last\)|Exception in thread"), "error"),
    "io_error": LogPattern(
        Regex(r"I/O error|blk_update_request|medium error|EXT4-fs error|XFS \([^)]*\): .*(corrupt|error)"),
        "critical",
    ),
    "auth_failure": LogPattern(
        Regex(r"authentication failure|failed password for|invalid user|FAILED LOGIN"), "warning"
    ),
}

# Rotated and compressed siblings: their content was, or is, read as the live file's.
DEFAULT_EXCLUDE = (
    "*.gz", "*.bz2", "*.xz", "*.zst", "*.lz4", "*.zip", "*.old",
    "*.[0-9]", "*.[0-9][0-9]", "*-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]",
    "*-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]",
)


_DEFAULT_CONTINUATION = Regex(DEFAULT_CONTINUATION)
_DEFAULT_ROTATE_GRACE = Duration(300)


@dataclass(frozen=True)
class LogFiles:
    """A group of log files read alike: globs, encoding, patterns, where to start."""

    paths: tuple[str, ...]
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    encoding: Encoding = "utf-8"
    # names from the patterns table; empty: all of them
    patterns: tuple[str, ...] = ()
    continuation: Regex | None = _DEFAULT_CONTINUATION
    from_beginning: bool = False

    def check(self) -> list[tuple[str, str]]:
        out = []
        if not self.paths:
            out.append(("paths", "give at least one path or glob"))
        out += [(f"paths[{i}]", "must be an absolute path") for i, p in enumerate(self.paths) if p[:1] != "/"]
        if self.continuation is not None and not self.continuation:
            out.append(("continuation", "an empty pattern joins every line; use null to disable"))
        return out


def _default_files() -> tuple[LogFiles, ...]:
    return (LogFiles(paths=("/var/log/syslog", "/var/log/messages", "/var/log/*.log")),)


@dataclass(frozen=True)
class LogsConfig:
    """The ``collectors.logs`` section."""

    enabled: bool | None = None
    files: tuple[LogFiles, ...] = field(default_factory=_default_files)
    # added to the defaults; the same name replaces a default
    patterns: dict[str, LogPattern] = field(default_factory=dict)
    default_patterns: bool = True
    max_line_bytes: int = 4096
    max_record_lines: int = 50
    max_bytes_per_cycle: int = 64 << 20
    evidence_lines: int = 5
    rotate_grace: Duration = _DEFAULT_ROTATE_GRACE

    def all_patterns(self) -> dict[str, LogPattern]:
        base = dict(DEFAULT_PATTERNS) if self.default_patterns else {}
        base.update(self.patterns)
        return base

    def check(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        known = self.all_patterns()
        if not known:
            out.append(("patterns", "no patterns: give some, or keep default_patterns: true"))
        for i, f in enumerate(self.files):
            out += [
                (f"files[{i}].patterns", f"unknown pattern {n!r} (known: {', '.join(sorted(known))})")
                for n in f.patterns
                if n not in known
            ]
        return out + limit_problems(self, ("max_line_bytes", "max_record_lines", "max_bytes_per_cycle"))


# ---------------------------------------------------------------- shared with business


def limit_problems(cfg: Any, positive: Sequence[str]) -> list[tuple[str, str]]:
    """Problems with a log reader's limits: each of ``positive`` >= 1, ``evidence_lines`` >= 0."""
    out = [(key, "must be at least 1") for key in positive if getattr(cfg, key) < 1]
    if cfg.evidence_lines < 0:
        out.append(("evidence_lines", "must not be negative"))
    return out


@dataclass
class FileOutcome:
    """What reading one file in one cycle found out."""

    state: FileState
    readable: bool = True
    reason: str = ""
    backlog: int = 0
    events: dict[str, int] = field(default_factory=dict)


def expand(pattern: str, exclude: Sequence[str], root: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """Files matching a glob (under ``root``), minus excluded names -> ([(path, label)], problems).

    A directory the glob needs but cannot list is a problem (an unreadable
    log location), a missing one is not (the example config watches files
    that only some distributions have).
    """
    full = str(root / pattern.lstrip("/")) if str(root) != "/" else pattern
    strip = len(str(root)) if str(root) != "/" else 0

    def label(p: str) -> str:
        return p[strip:] if strip else p

    if not glob.has_magic(full):
        return ([(Path(full), label(full))] if not _excluded(full, exclude) else []), []
    problems = []
    base = _static_prefix(full)
    try:
        with os.scandir(base):
            pass
    except FileNotFoundError:
        return [], []
    except OSError as e:
        problems.append(f"cannot list {label(base)}: {e.strerror or e}")
    found = sorted(glob.glob(full))
    return [(Path(p), label(p)) for p in found if not _excluded(p, exclude)], problems


def _static_prefix(pattern: str) -> str:
    parts = Path(pattern).parts
    keep = []
    for part in parts:
        if glob.has_magic(part):
            break
        keep.append(part)
    return str(Path(*keep)) if keep else "/"


def _excluded(path: str, exclude: Sequence[str]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatchcase(name, g) for g in exclude)


def load_state(store: KeyValue, key: str) -> tuple[FileState, bytes | None]:
    """The saved state of one file (fresh when none or unreadable) and its raw bytes."""
    raw = store.get(key)
    if raw is None:
        return FileState(), None
    try:
        return parse_file_state(raw), raw
    except ValueError as e:
        # Losing a position means starting at the end again: say so, but go on.
        log.warning("log state reset", extra={"key": key, "error": str(e)})
        return FileState(), None


def scan_file(
    ctx: Context,
    key: str,
    path: Path,
    matcher: Matcher,
    on_records: Callable[[list[Record], FileState], None],
    *,
    encoding: str,
    from_beginning: bool,
    max_bytes: int,
    rotate_grace: float,
) -> FileOutcome:
    """Read what is new in ``path``, match it, and save position and counts after each block.

    ``on_records`` updates the state's counters for the records found; it
    runs before the state holding the new position is saved, so a counted
    record is never read again.
    """
    now = ctx.now()
    state, raw = load_state(ctx.state, key)
    reader = LogReader(
        path, state, now=now, budget=Budget(max_bytes), from_beginning=from_beginning,
        rotate_grace=rotate_grace,
    )
    outcome = FileOutcome(state)
    matcher.reset()

    def save() -> None:
        nonlocal raw
        value = state.dump()
        if value != raw:
            ctx.state.put(key, value)
            raw = value

    try:
        for block in reader.blocks():
            on_records(matcher.scan(to_utf8(block, encoding)), state)
            save()
    except Unreadable as e:
        outcome.readable, outcome.reason = False, str(e)
    on_records(matcher.flush(), state)
    if now - state.seen > 3600:
        state.seen = now
    save()
    outcome.backlog = reader.backlog
    outcome.events = reader.events
    return outcome


# ---------------------------------------------------------------- the collector


@dataclass
class _Group:
    files: LogFiles
    names: tuple[str, ...]
    severities: tuple[str, ...]
    matcher: Matcher


@register("logs", config=LogsConfig, default=True)
class LogsCollector:
    """Log lines matching named patterns (errors, panics, OOM kills...), per file, through rotation."""

    name = "logs"
    KEY_PREFIX = "pos:"

    def __init__(self, config: LogsConfig):
        self.config = config
        table = config.all_patterns()
        self.groups = []
        for files in config.files:
            names = files.patterns or tuple(table)
            specs = [PatternSpec(n, table[n].regex, table[n].ignore_case) for n in names]
            matcher = Matcher(specs, files.continuation, config.max_record_lines)
            self.groups.append(_Group(files, names, tuple(table[n].severity for n in names), matcher))

    def collect(self, ctx: Context) -> Iterator[Sample]:
        done: set[str] = set()
        for g in self.groups:
            for pattern in g.files.paths:
                found, problems = expand(pattern, g.files.exclude, ctx.paths.root)
                for problem in problems:
                    yield READABLE.sample(0, file=pattern)
                    ctx.add_evidence(Evidence("log", problem, {"file": pattern}, ctx.now()))
                for path, label in found:
                    if label in done:  # the first group that names a file reads it
                        continue
                    done.add(label)
                    yield from self._file(ctx, g, path, label)

    def _file(self, ctx: Context, g: _Group, path: Path, label: str) -> Iterator[Sample]:
        cfg = self.config
        now = ctx.now()
        kept: dict[int, deque[Record]] = {}

        def on_records(records: list[Record], state: FileState) -> None:
            for r in records:
                for i in r.patterns:
                    name = g.names[i]
                    state.counts[name] = state.counts.get(name, 0.0) + 1
                    state.last_match[name] = now
                    if cfg.evidence_lines:
                        kept.setdefault(i, deque(maxlen=cfg.evidence_lines)).append(r)

        out = scan_file(
            ctx, self.KEY_PREFIX + label, path, g.matcher, on_records,
            encoding=g.files.encoding, from_beginning=g.files.from_beginning,
            max_bytes=cfg.max_bytes_per_cycle, rotate_grace=float(cfg.rotate_grace),
        )
        st = out.state
        if out.readable and st.position is None:
            return  # vanished between glob and open: nothing to say
        yield READABLE.sample(1 if out.readable else 0, file=label)
        if not out.readable:
            ctx.add_evidence(Evidence("log", out.reason, {"file": label}, now))
        yield READ_BYTES.sample(st.read_bytes, file=label)
        yield BACKLOG.sample(out.backlog, file=label)
        for name, sev in zip(g.names, g.severities):
            yield MATCHES.sample(st.counts.get(name, 0.0), file=label, pattern=name, pattern_severity=sev)
            if name in st.last_match:
                yield LAST_MATCH.sample(st.last_match[name], file=label, pattern=name)
        for kind, n in sorted(st.rotations.items()):
            yield ROTATIONS.sample(n, file=label, kind=kind)
        for i, records in sorted(kept.items()):
            for r in records:
                text = record_text(r.text, cfg.max_line_bytes)
                labels = {"file": label, "pattern": g.names[i], "pattern_severity": g.severities[i]}
                ctx.add_evidence(Evidence("log", text, labels, now))
