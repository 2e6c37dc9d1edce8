"""Filesystem sizes and free space per mount, as node_exporter's filesystem collector.

Each mount's ``statvfs`` runs in a worker thread with a deadline, because a
stat on a dead NFS server blocks in the kernel forever. A mount that misses
its deadline is reported with ``node_filesystem_device_error 1`` and skipped
on later runs until its pending stat finally returns, as node_exporter does
with its stuck mounts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from collector.model import Sample, gauge
from collector.procfs import read_text
from collector.registry import CollectorFailure, Context, register
from collector.schema import Duration, Regex, compile_regex

log = logging.getLogger("opsagent.collector.filesystem")

SIZE = gauge("node_filesystem_size_bytes", "Filesystem size in bytes.")
FREE = gauge("node_filesystem_free_bytes", "Filesystem free space in bytes.")
AVAIL = gauge("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.")
FILES = gauge("node_filesystem_files", "Filesystem total file nodes.")
FILES_FREE = gauge("node_filesystem_files_free", "Filesystem total free file nodes.")
READONLY = gauge("node_filesystem_readonly", "Filesystem read-only status.")
DEVICE_ERROR = gauge(
    "node_filesystem_device_error", "Whether an error occurred while getting statistics for the given device."
)

# node_exporter 1.5's defaults for --collector.filesystem.mount-points-exclude
# and --collector.filesystem.fs-types-exclude.
DEFAULT_MOUNT_POINTS_EXCLUDE = Regex(
    r"^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
DEFAULT_FS_TYPES_EXCLUDE = Regex(
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660"
    r"|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)
DEFAULT_STAT_TIMEOUT = Duration(5)


@dataclass(frozen=True)
class FilesystemConfig:
    """Options of the filesystem collector."""

    enabled: bool | None = None
    # own collection interval and deadline; unset: schedule.interval and schedule.timeout
    interval: Duration | None = None
    timeout: Duration | None = None
    # mount points not reported (RE2; matched anywhere, anchor it yourself)
    mount_points_exclude: Regex = DEFAULT_MOUNT_POINTS_EXCLUDE
    # filesystem types not reported (RE2)
    fs_types_exclude: Regex = DEFAULT_FS_TYPES_EXCLUDE
    # how long one mount's statvfs may take before the mount counts as stuck
    stat_timeout: Duration = DEFAULT_STAT_TIMEOUT

    def check(self) -> list[tuple[str, str]]:
        if self.stat_timeout <= 0:
            return [("stat_timeout", "must be greater than 0")]
        return []


class Mount(NamedTuple):
    """One line of /proc/mounts."""

    device: str
    mountpoint: str
    fstype: str
    options: str


def _unescape(field: str) -> str:
    # /proc/mounts escapes space and tab as octal, as fstab(5) does.
    return field.replace("\\040", " ").replace("\\011", "\t")


def parse_mounts(text: str) -> list[Mount]:
    """Parse /proc/mounts; a line with fewer than four fields raises ValueError."""
    out: list[Mount] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 4:
            raise ValueError(f"line {lineno}: malformed mount line {line[:80]!r}")
        out.append(Mount(parts[0], _unescape(parts[1]), parts[2], parts[3]))
    return out


def read_mounts(proc: Path) -> list[Mount]:
    """The mounts seen by PID 1 (the host's, inside a container), else our own."""
    path = proc / "1" / "mounts"
    if not path.exists():  # hidepid=2 hides other processes' mount tables
        path = proc / "mounts"
    try:
        return parse_mounts(read_text(path))
    except ValueError as e:
        raise CollectorFailure(f"{path}: {e}") from e


WORKER_IDLE = 120.0  # seconds an idle stat worker thread waits before it exits
# seconds every stat worker may be busy with one mount before the mounts still
# queued get another worker: several dead NFS mounts are then waited for at
# once, and a run costs about one stat_timeout however many of them hang
STALL = 0.1

StatFunc = Callable[[str], Any]  # os.statvfs or a test double returning the same fields


class _StatJob:
    __slots__ = ("abandoned", "done", "error", "mountpoint", "path", "result", "started")

    def __init__(self, mountpoint: str, path: str):
        self.mountpoint = mountpoint
        self.path = path
        self.started: float | None = None
        self.done = False
        self.result: Any = None
        self.error: OSError | None = None
        self.abandoned = False


@register("filesystem", config=FilesystemConfig)
class FilesystemCollector:
    """Size, free and available bytes and inodes of each mounted filesystem."""

    name = "filesystem"

    def __init__(self, config: FilesystemConfig, statfs: StatFunc = os.statvfs):
        self.config = config
        self.statfs = statfs
        self._mp_exclude = compile_regex(config.mount_points_exclude)
        self._fs_exclude = compile_regex(config.fs_types_exclude)
        self._cond = threading.Condition()
        self._queue: deque[_StatJob] = deque()
        self._idle = 0  # workers waiting for a job
        self._busy: list[_StatJob] = []  # jobs being stat'ed right now (a hung one stays here)
        # mount point -> its pending job; cleared by the worker when the stat returns
        self._stuck: dict[str, _StatJob] = {}

    # -- stat workers: reused across runs; one blocked on a hung mount is lost until it returns

    def _worker(self) -> None:
        with self._cond:
            while True:
                while not self._queue:
                    # idle (collector disabled or replaced by a reload): let the thread go
                    if not self._cond.wait(WORKER_IDLE) and not self._queue:
                        self._idle -= 1
                        return
                job = self._queue.popleft()
                self._idle -= 1
                job.started = time.monotonic()
                self._busy.append(job)
                self._cond.release()
                try:
                    job.result = self.statfs(job.path)
                except OSError as e:
                    job.error = e
                finally:
                    self._cond.acquire()
                self._busy.remove(job)
                job.done = True
                if job.abandoned and self._stuck.get(job.mountpoint) is job:
                    # the stuck mount answered at last: stat it again next run
                    del self._stuck[job.mountpoint]
                    log.info("mount point responds again", extra={"mountpoint": job.mountpoint})
                self._idle += 1
                self._cond.notify_all()

    def _start_worker(self) -> None:
        self._idle += 1
        threading.Thread(target=self._worker, name="filesystem-statfs", daemon=True).start()

    def _stat_all(self, todo: list[tuple[str, str]]) -> list[_StatJob]:
        """Stat each (mount point, path), each within ``stat_timeout`` of its own start.

        A job not done by then is abandoned and its mount marked stuck.
        """
        jobs = [_StatJob(mp, path) for mp, path in todo]
        timeout = float(self.config.stat_timeout)
        late: list[str] = []
        with self._cond:
            self._queue.extend(jobs)
            if self._idle == 0:
                self._start_worker()
            self._cond.notify_all()
            pending = jobs
            while pending:
                now = time.monotonic()
                next_check = now + timeout
                still: list[_StatJob] = []
                for job in pending:
                    if job.done:
                        continue
                    if job.started is None:
                        next_check = min(next_check, now + STALL)
                    elif now >= job.started + timeout:
                        job.abandoned = True
                        self._stuck[job.mountpoint] = job
                        late.append(job.mountpoint)
                        continue
                    else:
                        next_check = min(next_check, job.started + timeout)
                    still.append(job)
                pending = still
                if not pending:
                    break
                if self._queue and self._idle == 0:
                    newest = max((j.started or now for j in self._busy), default=now - STALL)
                    if now - newest >= STALL:
                        self._start_worker()
                        self._cond.notify()
                    else:
                        next_check = min(next_check, newest + STALL)
                self._cond.wait(max(0.0, next_check - now))
        for mp in late:
            log.warning("mount point is not responding", extra={"mountpoint": mp})
        return jobs

    def collect(self, ctx: Context) -> Iterator[Sample]:
        root = str(ctx.paths.root).rstrip("/")
        seen: set[tuple[str, str, str]] = set()
        mounts: list[tuple[Mount, dict[str, str]]] = []
        for m in read_mounts(ctx.paths.proc):
            if root and (m.mountpoint == root or m.mountpoint.startswith(root + "/")):
                # the host's / bind-mounted at the root path (a container without
                # the host's PID namespace): label with the host's mount point
                m = m._replace(mountpoint=m.mountpoint[len(root):] or "/")
            if self._mp_exclude.search(m.mountpoint) or self._fs_exclude.search(m.fstype):
                continue
            key = (m.device, m.mountpoint, m.fstype)
            if key in seen:  # a mount shadowed by another on the same point: report once
                continue
            seen.add(key)
            mounts.append((m, {"device": m.device, "fstype": m.fstype, "mountpoint": m.mountpoint}))
        with self._cond:
            stuck = set(self._stuck)
        todo = [(m.mountpoint, root + m.mountpoint) for m, _ in mounts if m.mountpoint not in stuck]
        jobs = {job.mountpoint: job for job in self._stat_all(todo)}
        for m, labels in mounts:
            job = jobs.get(m.mountpoint)
            if job is None or job.abandoned or job.error is not None:
                yield DEVICE_ERROR.sample(1, labels)
                continue
            st = job.result
            bsize = float(st.f_bsize)  # node_exporter multiplies by f_bsize too
            yield DEVICE_ERROR.sample(0, labels)
            yield SIZE.sample(st.f_blocks * bsize, labels)
            yield FREE.sample(st.f_bfree * bsize, labels)
            yield AVAIL.sample(st.f_bavail * bsize, labels)
            yield FILES.sample(st.f_files, labels)
            yield FILES_FREE.sample(st.f_ffree, labels)
            yield READONLY.sample(1 if "ro" in m.options.split(",") else 0, labels)
