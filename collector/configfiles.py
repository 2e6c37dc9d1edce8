"""Configuration-file tracking: every change recorded, backed up, and shown as a masked diff.

SPEC §1: every configuration change is recorded and backed up, so a wrong
change can be rolled back fast. Each watched file's versions are kept in
the collector's durable state (``ctx.state``, namespace ``configfiles`` in
the agent's store) as zlib-compressed exact bytes, with a JSON index:

    index:<path>        JSON list of versions: v, ts, size, sha256, mode, uid, gid, deleted
    data:<path>:<v>     zlib(content of version v)

Versions are exact, so a restore is exact; only what is *shown* (evidence,
``opsagent files diff``) has secrets masked.
"""

from __future__ import annotations

import glob
import json
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from collector.digest import sha256
from collector.model import Evidence, Sample, counter, gauge
from collector.registry import Context, KeyValue, register
from collector.schema import Duration, Regex, compile_regex

CHANGES = counter("opsagent_config_file_changes_total", "Changes recorded for a tracked configuration file.")
LAST_CHANGE = gauge(
    "opsagent_config_file_last_change_timestamp_seconds", "When the latest version of the file was recorded."
)
VERSION = gauge("opsagent_config_file_version", "Number of the latest recorded version of the file.")
PRESENT = gauge("opsagent_config_file_present", "Whether the tracked file exists and is readable.")

MASK = "****"
# Built-in secret shapes, matched case-insensitively on each line. The value
# after the key is replaced, the key stays so the reader sees what changed.
SECRET_LINE_PATTERNS: tuple[str, ...] = (
    r"(?i)((?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|client[_-]?secret|credentials?|auth[_-]?key)[A-Za-z0-9_.-]*[\"']?\s*[:=]\s*)(.+)",
    r"(?i)(identified\s+(?:by|with\s+\S+\s+by)\s+)('[^']*'|\"[^\"]*\"|\S+)",
    r"(?i)(://[^/\s:@]+:)([^@\s/]+)(@)",
)
_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
DEFAULT_MAX_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class ConfigFilesConfig:
    """Files to track (absolute paths or globs), size limit, versions kept, extra secret patterns."""

    enabled: bool | None = None
    interval: Duration | None = Duration(60)
    timeout: Duration | None = None
    paths: tuple[str, ...] = ()
    max_size: int = DEFAULT_MAX_SIZE
    keep_versions: int = 100
    mask_patterns: tuple[Regex, ...] = ()

    def check(self) -> list[tuple[str, str]]:
        out = [(f"paths[{i}]", "must be an absolute path or glob") for i, p in enumerate(self.paths)
               if not p.startswith("/")]
        if self.keep_versions < 2:
            out.append(("keep_versions", "must be at least 2"))
        if self.max_size <= 0:
            out.append(("max_size", "must be positive"))
        return out


@dataclass(frozen=True, slots=True)
class Version:
    """One recorded version of a tracked file."""

    v: int
    ts: float
    size: int
    sha256: str
    mode: int = 0o644
    uid: int = -1
    gid: int = -1
    deleted: bool = False


# ---------------------------------------------------------------- storage


def index_key(path: str) -> str:
    return f"index:{path}"


def data_key(path: str, v: int) -> str:
    return f"data:{path}:{v}"


def read_index(kv: KeyValue, path: str) -> list[Version]:
    """The versions recorded for ``path``, oldest first (empty when not tracked)."""
    raw = kv.get(index_key(path))
    if not raw:
        return []
    return [Version(**d) for d in json.loads(raw)]


def tracked_paths(kv: KeyValue) -> list[str]:
    """Every path that has a version history."""
    return [k.removeprefix("index:") for k in kv.keys("index:")]


def read_version(kv: KeyValue, path: str, v: int) -> bytes | None:
    """The exact content of version ``v`` (None when unknown or pruned)."""
    raw = kv.get(data_key(path, v))
    return zlib.decompress(raw) if raw is not None else None


def record_version(
    kv: KeyValue, path: str, content: bytes | None, ts: float, st: os.stat_result | None, keep: int = 100
) -> Version:
    """Append a version (``content`` None: the file was deleted); prune the oldest beyond ``keep``."""
    index = read_index(kv, path)
    n = index[-1].v + 1 if index else 1
    if content is None:
        ver = Version(n, ts, 0, "", deleted=True)
    else:
        ver = Version(
            n, ts, len(content), sha256(content).hexdigest(),
            mode=(st.st_mode & 0o7777) if st else 0o644,
            uid=st.st_uid if st else -1,
            gid=st.st_gid if st else -1,
        )
        kv.put(data_key(path, n), zlib.compress(content, 6))
    index.append(ver)
    for old in index[:-keep] if len(index) > keep else []:
        kv.delete(data_key(path, old.v))
    index = index[-keep:]
    kv.put(index_key(path), json.dumps([asdict(x) for x in index]).encode())
    return ver


# ---------------------------------------------------------------- masking and diff


class Masker:
    """Masks secret values in text lines; private-key blocks are masked whole."""

    def __init__(self, extra: Sequence[str] = ()):
        self.patterns = [compile_regex(p) for p in (*SECRET_LINE_PATTERNS, *extra)]

    def mask_line(self, line: str) -> str:
        for rx in self.patterns:
            line = _mask_with(rx, line)
        return line

    def mask_lines(self, lines: Sequence[str]) -> list[str]:
        """Each line masked; lines inside a private key block become ``****``."""
        out: list[str] = []
        in_key = False
        for line in lines:
            if _KEY_BEGIN.search(line):
                in_key = True
                out.append(line)
                continue
            if in_key:
                if _KEY_END.search(line):
                    in_key = False
                    out.append(line)
                else:
                    out.append(MASK + ("\n" if line.endswith("\n") else ""))
                continue
            out.append(self.mask_line(line))
        return out


def _mask_with(rx: Any, line: str) -> str:
    m = rx.search(line)
    if not m:
        return line
    if len(m.groups()) >= 2:  # group 1 is the key (kept), group 2 the value (masked)
        return line[: m.start(2)] + MASK + line[m.end(2) :]
    return line[: m.start()] + MASK + line[m.end() :]


def masked_diff(
    old: bytes, new: bytes, old_name: str, new_name: str, masker: Masker, context: int = 3
) -> str:
    """A unified diff of two exact versions in which secret lines are masked.

    Masking is decided on each whole version (so a hunk that starts inside a
    private key block is still masked), then the diff is built from the
    exact lines and printed with the masked ones.
    """
    a = old.decode("utf-8", errors="replace").splitlines(keepends=True)
    b = new.decode("utf-8", errors="replace").splitlines(keepends=True)
    ma, mb = masker.mask_lines(a), masker.mask_lines(b)
    out: list[str] = [f"--- {old_name}\n", f"+++ {new_name}\n"]
    import difflib  # only when a file changed

    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for group in sm.get_grouped_opcodes(context):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        out.append(f"@@ -{_range(i1, i2)} +{_range(j1, j2)} @@\n")
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                out.extend(" " + _nl(x) for x in mb[b1:b2])
                continue
            out.extend("-" + _nl(x) for x in ma[a1:a2])
            out.extend("+" + _nl(x) for x in mb[b1:b2])
    return "".join(out) if len(out) > 2 else ""


def _range(start: int, stop: int) -> str:
    length = stop - start
    first = start + 1 if length else start
    return f"{first}" if length == 1 else f"{first},{length}"


def _nl(line: str) -> str:
    return line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"


# ---------------------------------------------------------------- collector


def expand_paths(root: Path, patterns: Sequence[str]) -> list[str]:
    """The configured paths (globs expanded under ``root``) as the user writes them."""
    out: dict[str, None] = {}
    for pattern in patterns:
        if glob.has_magic(pattern):
            base = str(root).rstrip("/")
            for found in sorted(glob.glob(str(root / pattern.lstrip("/")))):
                out[found[len(base):] if base else found] = None
        else:
            out[pattern] = None
    return list(out)


@register("configfiles", config=ConfigFilesConfig, default=True)
class ConfigFilesCollector:
    """Tracks configuration files: a compressed version on every change, with a masked diff."""

    name = "configfiles"

    def __init__(self, config: ConfigFilesConfig):
        self.config = config
        self.masker = Masker(self.config.mask_patterns)
        # (mtime_ns, size, inode) seen last time: unchanged files are not read again
        self._seen: dict[str, tuple[int, int, int]] = {}

    def collect(self, ctx: Context) -> Iterator[Sample]:
        paths = expand_paths(ctx.paths.root, self.config.paths)
        for known in tracked_paths(ctx.state):  # a matched file that vanished is still tracked
            if known not in paths and any(_matches(known, p) for p in self.config.paths):
                paths.append(known)
        for path in paths:
            yield from self._track(ctx, path)

    def _track(self, ctx: Context, path: str) -> Iterator[Sample]:
        now = ctx.now()
        lab = {"path": path}
        index = read_index(ctx.state, path)
        try:
            st, content = self._read(ctx.paths.root / path.lstrip("/"), path, index)
        except (OSError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            yield PRESENT.sample(0, lab)
            ctx.add_evidence(Evidence("config_file", f"{path}: cannot track: {why}", lab, now))
            yield from self._samples(index, lab)
            return
        yield PRESENT.sample(0 if st is None else 1, lab)
        last = index[-1] if index else None
        if st is None:  # deleted: recorded once, so the last content stays restorable
            if last is not None and not last.deleted:
                ver = record_version(ctx.state, path, None, now, None, self.config.keep_versions)
                index.append(ver)
                text = f"{path} was deleted (version {ver.v}; version {last.v} can be restored)"
                ctx.add_evidence(Evidence("config_diff", text, {**lab, "version": str(ver.v)}, now))
        elif content is not None and (
            last is None or last.deleted or last.sha256 != sha256(content).hexdigest()
        ):
            ver = record_version(ctx.state, path, content, now, st, self.config.keep_versions)
            index.append(ver)
            if last is not None:  # the first version is the baseline, not a change
                old = b"" if last.deleted else read_version(ctx.state, path, last.v) or b""
                diff = masked_diff(old, content, f"{path}@v{last.v}", f"{path}@v{ver.v}", self.masker)
                text = f"{path} changed: version {last.v} -> {ver.v}\n{diff}"
                ctx.add_evidence(Evidence("config_diff", text, {**lab, "version": str(ver.v)}, now))
        yield from self._samples(index, lab)

    def _read(
        self, full: Path, path: str, index: list[Version]
    ) -> tuple[os.stat_result | None, bytes | None]:
        """(stat, content); stat None when the file is gone, content None when unchanged since last look."""
        try:
            st = os.stat(full)
        except FileNotFoundError:
            self._seen.pop(path, None)
            return None, None
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        if index and not index[-1].deleted and self._seen.get(path) == sig:
            return st, None
        if st.st_size > self.config.max_size:
            raise ValueError(f"larger than max_size ({st.st_size} > {self.config.max_size} bytes)")
        with open(full, "rb") as f:
            content = f.read(self.config.max_size + 1)
        if len(content) > self.config.max_size:
            raise ValueError(f"larger than max_size ({self.config.max_size} bytes)")
        self._seen[path] = sig
        return st, content

    @staticmethod
    def _samples(index: list[Version], lab: dict[str, str]) -> Iterator[Sample]:
        if not index:
            return
        yield CHANGES.sample(index[-1].v - 1, lab)
        yield LAST_CHANGE.sample(index[-1].ts, lab)
        yield VERSION.sample(index[-1].v, lab)


def _matches(path: str, pattern: str) -> bool:
    import fnmatch

    return path == pattern or (glob.has_magic(pattern) and fnmatch.fnmatchcase(path, pattern))
