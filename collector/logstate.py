"""Read positions in log files, and reading what is new since, through rotation.

A position is (device, inode, offset) plus a fingerprint of the file's first
bytes, persisted after every block, so a restart neither re-reads nor skips:

- same inode, size >= offset, same first bytes: read on from the offset;
- same inode but smaller than the offset, or different first bytes: the file
  was truncated (copytruncate): read it from the start;
- another inode: the file was renamed away (rename rotation). The old inode
  is looked for among the rotation siblings (``syslog.1``, ``syslog-20240101``)
  and its unread tail is finished first, then the new file is read from its
  start. For ``rotate_grace`` seconds after a rotation the renamed file is
  still followed, for lines its writer adds before it reopens the new file.

``parse_file_state``/``FileState.dump`` are pure; ``LogReader`` does the I/O.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HEAD_BYTES = 1024  # how much of a file's start identifies it
CHUNK_BYTES = 8 << 20  # read size: big blocks keep the per-block cost negligible
_TAIL_PROBE = 64 << 10  # how far back to look for a line start when starting at the end
# Read at most what the file holds plus this: os.pread allocates the whole requested
# size up front, and an 8 MiB request per watched file per cycle (mostly for nothing
# appended) left glibc's heaps holding megabytes they never gave back (issue 2).
READ_SLACK = 64 << 10
# The suffix logrotate gives a rotated, uncompressed file: ".1", "-20240101", "-2024010112".
ROTATED_NAME = re.compile(r"\.[0-9]+|-[0-9]{8}(?:[0-9]{2})?")


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading of one file stopped: its identity and the next byte to read."""

    dev: int
    ino: int
    offset: int
    head_len: int = 0
    head_crc: int = 0


@dataclass
class FileState:
    """Everything remembered about one watched file, saved as one value (so atomically)."""

    position: Position | None = None
    previous: Position | None = None  # the renamed-away file, still followed for a while
    previous_since: float = 0.0
    counts: dict[str, float] = field(default_factory=dict)
    last_match: dict[str, float] = field(default_factory=dict)
    read_bytes: float = 0.0
    rotations: dict[str, float] = field(default_factory=dict)
    seen: float = 0.0

    def dump(self) -> bytes:
        """Serialise (JSON) for the key/value store."""
        d: dict[str, Any] = {
            "pos": _pos_dict(self.position),
            "prev": _pos_dict(self.previous),
            "prev_since": self.previous_since,
            "counts": self.counts,
            "last": self.last_match,
            "bytes": self.read_bytes,
            "rot": self.rotations,
            "seen": self.seen,
        }
        return json.dumps(d, separators=(",", ":"), sort_keys=True).encode()


def _pos_dict(p: Position | None) -> list[int] | None:
    return None if p is None else [p.dev, p.ino, p.offset, p.head_len, p.head_crc]


def _pos(v: Any) -> Position | None:
    if v is None:
        return None
    if not (isinstance(v, list) and len(v) == 5 and all(isinstance(x, int) for x in v)):
        raise ValueError(f"bad position {v!r}")
    return Position(*v)


def _floats(v: Any) -> dict[str, float]:
    if not isinstance(v, dict):
        raise ValueError(f"bad counters {v!r}")
    return {str(k): float(x) for k, x in v.items()}


def parse_file_state(raw: bytes) -> FileState:
    """Parse a value written by ``FileState.dump``; ValueError when it is not one."""
    try:
        d = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"unreadable log state: {e}") from None
    if not isinstance(d, dict):
        raise ValueError("unreadable log state: not an object")
    return FileState(
        position=_pos(d.get("pos")),
        previous=_pos(d.get("prev")),
        previous_since=float(d.get("prev_since", 0.0)),
        counts=_floats(d.get("counts", {})),
        last_match=_floats(d.get("last", {})),
        read_bytes=float(d.get("bytes", 0.0)),
        rotations=_floats(d.get("rot", {})),
        seen=float(d.get("seen", 0.0)),
    )


class Unreadable(Exception):
    """A watched file exists but cannot be read; the message says why."""


@dataclass
class Budget:
    """Bytes still allowed this cycle; reading resumes from the saved position next cycle."""

    left: int
    used: int = 0

    def take(self, n: int) -> None:
        self.left -= n
        self.used += n


def rotation_siblings(path: Path) -> list[Path]:
    """Files next to ``path`` whose names extend it (``x.log.1``, ``x.log-20240101``), newest first."""
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    base = path.name
    sib = [Path(e.path) for e in entries if e.name != base and e.name.startswith(base)]
    with_mtime = []
    for p in sib:
        with contextlib.suppress(OSError):
            with_mtime.append((p.stat().st_mtime, p))
    return [p for _, p in sorted(with_mtime, key=lambda t: t[0], reverse=True)]


def _head(fd: int, n: int) -> tuple[int, int]:
    data = os.pread(fd, min(n, HEAD_BYTES), 0)
    return len(data), zlib.crc32(data)


def _open(path: Path) -> int:
    try:
        # O_NONBLOCK: a FIFO matched by a glob must not block the collector.
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise Unreadable(f"cannot open {path}: {e.strerror or e}") from None


class LogReader:
    """Reads the new complete lines of one log file, following rotation.

    ``blocks()`` yields blocks of raw bytes ending at a line end (a line
    longer than a block is cut into block-sized pieces); after each yield
    ``state.position`` points past the block, so saving the state after the
    block is processed records exactly what was consumed. ``events`` counts
    what happened (``rename``, ``rename_tail_lost``, ``copytruncate``).
    """

    def __init__(
        self,
        path: Path,
        state: FileState,
        *,
        now: float,
        budget: Budget,
        from_beginning: bool = False,
        rotate_grace: float = 300.0,
        chunk_bytes: int = CHUNK_BYTES,
    ):
        self.path = path
        self.state = state
        self.now = now
        self.budget = budget
        self.from_beginning = from_beginning
        self.rotate_grace = rotate_grace
        self.chunk_bytes = chunk_bytes
        self.events: dict[str, int] = {}
        self.backlog = 0

    def _event(self, kind: str) -> None:
        self.events[kind] = self.events.get(kind, 0) + 1
        self.state.rotations[kind] = self.state.rotations.get(kind, 0.0) + 1

    def blocks(self) -> Iterator[bytes]:
        """Blocks of new bytes from the files this path has been, oldest first. Raises Unreadable."""
        # One descriptor for the live file: a rename between two looks at the
        # name cannot make us check one file and read another.
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as e:
            raise Unreadable(f"cannot open {self.path}: {e.strerror or e}") from None
        try:
            yield from self._blocks(fd)
        finally:
            os.close(fd)

    def _blocks(self, fd: int) -> Iterator[bytes]:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unreadable(f"{self.path} is not a regular file")
        pos = self.state.position
        copied = False
        same = pos is not None and (pos.dev, pos.ino) == (st.st_dev, st.st_ino)
        if pos is not None and same and _fd_truncated(fd, pos, st.st_size):
            # copytruncate: the lines between our offset and the copy are in the copy.
            self._event("copytruncate")
            copy = self._find(pos, by_head=True) if pos.offset else None
            if copy is not None:
                cst = copy.stat()
                pos = replace(pos, dev=cst.st_dev, ino=cst.st_ino)
                copied = True
            else:
                pos = Position(st.st_dev, st.st_ino, 0)
            self.state.position = pos
        if pos is not None and (pos.dev, pos.ino) != (st.st_dev, st.st_ino):
            # Renamed away (or copied): finish the old file first, maybe over several cycles.
            old = self._find(pos)
            if old is not None:
                if not (yield from self._read(old, pos, final=True, current=True)):
                    return  # it moved on again: find it next cycle
                # Rotated more than once since the last cycle: the files in between, oldest first.
                for mid in self._newer_siblings(old, st):
                    if self.budget.left <= 0:
                        break
                    mst = mid.stat()
                    self.state.position = Position(mst.st_dev, mst.st_ino, 0)
                    if not (yield from self._read(mid, self.state.position, final=True, current=True)):
                        return
                if self.budget.left <= 0:
                    return
                if not copied:
                    self._event("rename")
                    self.state.previous, self.state.previous_since = self.state.position, self.now
            elif not copied:
                self._event("rename_tail_lost")
                self.state.previous = None
            self.state.position = Position(st.st_dev, st.st_ino, 0)
        elif self.state.previous is not None:
            if self.now - self.state.previous_since > self.rotate_grace:
                self.state.previous = None
            else:
                old = self._find(self.state.previous)
                if old is None:
                    self.state.previous = None
                else:
                    yield from self._read(old, self.state.previous, final=True, current=False)
        yield from self._read_fd(fd, self.path, self.state.position, final=False, current=True)

    def _newer_siblings(self, old: Path, current: os.stat_result) -> list[Path]:
        """Rotated files written after ``old`` (by name ``x.1``, ``x-20240101``), oldest first."""
        try:
            ost = old.stat()
        except OSError:
            return []
        out = []
        for p in rotation_siblings(self.path):
            if not ROTATED_NAME.fullmatch(p.name[len(self.path.name) :]):
                continue
            try:
                st = p.stat()
            except OSError:
                continue
            same = {(ost.st_dev, ost.st_ino), (current.st_dev, current.st_ino)}
            if (st.st_dev, st.st_ino) in same or not stat.S_ISREG(st.st_mode):
                continue
            if st.st_mtime_ns > ost.st_mtime_ns:
                out.append((st.st_mtime_ns, p))
        return [p for _, p in sorted(out)]

    def _find(self, pos: Position, by_head: bool = False) -> Path | None:
        """The rotation sibling that is ``pos``'s file: same inode, or (a copy) same first bytes."""
        for p in rotation_siblings(self.path):
            try:
                st = p.stat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if not by_head and (st.st_dev, st.st_ino) == (pos.dev, pos.ino):
                return p
            if by_head and st.st_size >= pos.offset and _same_head(p, pos):
                return p
        return None

    def _read(self, path: Path, pos: Position, *, final: bool, current: bool) -> Generator[bytes, None, bool]:
        """Read a rotated file from ``pos``; False when it is no longer there under that name."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise Unreadable(f"cannot open {path}: {e.strerror or e}") from None
        try:
            return (yield from self._read_fd(fd, path, pos, final=final, current=current))
        finally:
            os.close(fd)

    def _read_fd(
        self, fd: int, path: Path, pos: Position | None, *, final: bool, current: bool
    ) -> Generator[bytes, None, bool]:
        """Read from ``pos`` (None: first sight) and keep the position updated; False: not pos's file.

        ``final``: the file no longer grows; a last line without newline is
        taken. ``current``: the position is ``state.position`` (else ``previous``).
        """
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unreadable(f"{path} is not a regular file")
        size = st.st_size
        if pos is None:
            offset = 0 if self.from_beginning else _line_start_before(fd, size)
            pos = Position(st.st_dev, st.st_ino, offset)
        elif (pos.dev, pos.ino) != (st.st_dev, st.st_ino):
            return False  # renamed again since it was found: found anew next cycle
        elif _fd_truncated(fd, pos, size):
            # Shrunk, or its first bytes changed: truncated and rewritten (copytruncate).
            self._event("copytruncate")
            pos = replace(pos, offset=0, head_len=0, head_crc=0)
        if pos.head_len < HEAD_BYTES and size > pos.head_len:
            hl, crc = _head(fd, size)
            pos = replace(pos, head_len=hl, head_crc=crc)
        self._store(pos, current)
        offset = pos.offset
        while self.budget.left > 0:
            want = min(self.chunk_bytes, self.budget.left)
            ask = min(want, max(0, size - offset) + READ_SLACK)
            try:
                buf = os.pread(fd, ask, offset)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    break
                raise Unreadable(f"cannot read {path}: {e.strerror or e}") from None
            if not buf:
                break
            if len(buf) == ask < want:
                # it grew past the size seen (plus slack) while being read: the next
                # read asks for all of it; a line cut here waits like any partial line
                with contextlib.suppress(OSError):
                    size = max(size, os.fstat(fd).st_size)
            nl = buf.rfind(b"\n")
            if len(buf) < want and final and nl != len(buf) - 1:
                buf += b"\n"  # the rotated file's last line, never to be finished
                taken = len(buf) - 1
            elif nl < 0:
                # No line end: a line longer than a block is cut (progress is
                # guaranteed); a partial last line waits for its newline.
                if len(buf) == self.chunk_bytes or (len(buf) == want and self.budget.used == 0):
                    taken = len(buf)
                else:
                    break
            else:
                buf = buf[: nl + 1]
                taken = len(buf)
            offset += taken
            self.budget.take(taken)
            self.state.read_bytes += taken
            pos = replace(pos, offset=offset)
            self._store(pos, current)
            yield buf
        if current:
            with contextlib.suppress(OSError):
                self.backlog = max(0, os.fstat(fd).st_size - offset)
        return True

    def _store(self, pos: Position, current: bool) -> None:
        if current:
            self.state.position = pos
        else:
            self.state.previous = pos


def _same_head(path: Path, pos: Position) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return _head(fd, pos.head_len) == (pos.head_len, pos.head_crc)
    finally:
        os.close(fd)


def _fd_truncated(fd: int, pos: Position, size: int) -> bool:
    if size < pos.offset:
        return True
    return bool(pos.head_len) and _head(fd, pos.head_len) != (pos.head_len, pos.head_crc)


def _line_start_before(fd: int, size: int) -> int:
    """The offset just after the last newline (start at the end without cutting a line)."""
    if size == 0:
        return 0
    start = max(0, size - _TAIL_PROBE)
    data = os.pread(fd, size - start, start)
    nl = data.rfind(b"\n")
    return start + nl + 1 if nl >= 0 else size
