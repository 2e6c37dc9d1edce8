"""Backups as a domain object: jobs with full and incremental sets, each result checked.

SPEC §1: full backup weekly, incremental daily, the result of every backup
checked. For each set the newest file is checked (size, checksum or verify
command, success marker); the chain is checked (an incremental needs a full
before it, with no gap longer than the cadence). Verification results are
cached per (file, size, mtime), so a large backup is hashed once.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
import stat
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from collector.model import Evidence, Sample, gauge
from collector.registry import Context, register
from collector.schema import Duration

LAST_SUCCESS = gauge(
    "opsagent_backup_last_success_timestamp_seconds",
    "Modification time of the newest backup that passed every check (0: none yet).",
)
AGE = gauge("opsagent_backup_age_seconds", "Seconds since the last good backup (or since first watched).")
MAX_AGE = gauge("opsagent_backup_max_age_seconds", "Cadence plus grace: the age at which a backup is missed.")
SIZE = gauge("opsagent_backup_size_bytes", "Size of the newest backup file.")
MIN_SIZE = gauge("opsagent_backup_min_size_bytes", "Configured minimum size of a backup.")
SIZE_CHANGE = gauge(
    "opsagent_backup_size_change_ratio", "Size of the newest backup divided by the size of the one before it."
)
VERIFY = gauge(
    "opsagent_backup_verify_success", "Whether the newest backup passed its checksum or verify command."
)
MARKER = gauge("opsagent_backup_marker_present", "Whether the newest backup's success marker exists.")
FILES = gauge("opsagent_backup_files", "Number of backup files matching the job's path glob.")
READABLE = gauge(
    "opsagent_backup_path_readable", "Whether the backup location could be read (1) or not (0, see evidence)."
)
CHAIN_OK = gauge(
    "opsagent_backup_chain_ok", "Whether the newest incremental has a full before it and no gap."
)

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "KI": 1024, "MI": 1024**2, "GI": 1024**3, "TI": 1024**4}
_HASH_CHUNK = 1 << 20


def parse_size(text: str) -> int:
    """``1048576``, ``10MiB``, ``2G`` -> bytes; ValueError on anything else."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"invalid size {text!r} (use e.g. 500MiB, 2GiB, 1048576)")
    unit = (m.group(2) or "").upper().removesuffix("B")
    return int(float(m.group(1)) * _UNITS[unit])


@dataclass(frozen=True)
class BackupSet:
    """The files of one kind of backup (full or incremental) and how to check them."""

    path: str
    max_age: Duration
    min_size: str = "1"
    checksum_file: str = ""
    verify_command: tuple[str, ...] = ()
    verify_timeout: Duration = Duration(300)
    success_marker: str = ""

    def check(self) -> list[tuple[str, str]]:
        out = []
        if not self.path.startswith("/"):
            out.append(("path", "must be an absolute path or glob"))
        try:
            parse_size(self.min_size)
        except ValueError as e:
            out.append(("min_size", str(e)))
        if self.max_age <= 0:
            out.append(("max_age", "must be positive"))
        if self.checksum_file and self.verify_command:
            out.append(("verify_command", "give checksum_file or verify_command, not both"))
        return out


@dataclass(frozen=True)
class BackupJob:
    """A backup job: a full set, an incremental set, or both (then the chain is checked)."""

    name: str
    full: BackupSet | None = None
    incremental: BackupSet | None = None
    grace: Duration = Duration(3 * 3600)
    labels: dict[str, str] = field(default_factory=dict)

    def check(self) -> list[tuple[str, str]]:
        if self.full is None and self.incremental is None:
            return [("full", "a backup job needs full, incremental or both")]
        return []

    def sets(self) -> list[tuple[Literal["full", "incremental"], BackupSet]]:
        out: list[tuple[Literal["full", "incremental"], BackupSet]] = []
        if self.full is not None:
            out.append(("full", self.full))
        if self.incremental is not None:
            out.append(("incremental", self.incremental))
        return out


@dataclass(frozen=True)
class BackupsConfig:
    """Backup jobs to check."""

    enabled: bool | None = None
    # backups change daily; verify commands may take minutes
    interval: Duration | None = Duration(300)
    timeout: Duration | None = Duration(900)
    jobs: tuple[BackupJob, ...] = ()

    def check(self) -> list[tuple[str, str]]:
        names = [j.name for j in self.jobs if j is not None]
        dup = sorted({n for n in names if names.count(n) > 1})
        return [("jobs", f"duplicate job name {n!r}") for n in dup]


@dataclass(frozen=True, slots=True)
class BackupFile:
    """One backup file found."""

    path: str
    size: int
    mtime: float


def expand(template: str, backup: str) -> str:
    """Fill ``{path}``, ``{dir}`` and ``{name}`` of a backup file into a template."""
    return template.replace("{path}", backup).replace("{dir}", os.path.dirname(backup)).replace(
        "{name}", os.path.basename(backup)
    )


def find_backups(pattern: str) -> list[BackupFile]:
    """Regular files matching the glob, oldest first; OSError when the location cannot be read.

    ``glob`` silently returns nothing for an unreadable directory, so the
    fixed directory part of the pattern is listed first to surface the error.
    """
    fixed = pattern.split("*")[0].split("?")[0].split("[")[0]
    base = fixed if fixed.endswith("/") else os.path.dirname(fixed) or "/"
    with os.scandir(base):
        pass
    out: list[BackupFile] = []
    for p in glob.glob(pattern):
        try:
            st = os.stat(p)
        except OSError:
            continue  # removed while listed
        if stat.S_ISREG(st.st_mode):
            out.append(BackupFile(p, st.st_size, st.st_mtime))
    out.sort(key=lambda b: (b.mtime, b.path))
    return out


def parse_checksums(text: str) -> dict[str, str]:
    """``sha256sum`` output (``<hex>  <name>`` or ``<hex> *<name>``) -> {basename: hex}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and len(parts[0]) == 64:
            out[os.path.basename(parts[1].lstrip("*").strip())] = parts[0].lower()
    return out


def sha256_file(path: str) -> str:
    # OpenSSL's SHA-256 (4x CPython's on large files); its 3.6 MB are paid only when
    # a job has a checksum_file
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_checksum(backup: BackupFile, checksum_file: str) -> tuple[bool, str]:
    """Compare the backup's SHA-256 with its line in a sha256sum file."""
    sums_path = expand(checksum_file, backup.path)
    try:
        sums = parse_checksums(Path(sums_path).read_text(errors="replace"))
    except OSError as e:
        return False, f"cannot read checksum file {sums_path}: {e.strerror or e}"
    name = os.path.basename(backup.path)
    want = sums.get(name) or (next(iter(sums.values())) if len(sums) == 1 else None)
    if want is None:
        return False, f"{sums_path} has no checksum for {name}"
    try:
        got = sha256_file(backup.path)
    except OSError as e:
        return False, f"cannot read {backup.path}: {e.strerror or e}"
    if got != want:
        return False, f"checksum mismatch: {name} has sha256 {got}, {sums_path} says {want}"
    return True, f"sha256 {got} matches {sums_path}"


def verify_command(backup: BackupFile, argv: tuple[str, ...], timeout: float) -> tuple[bool, str]:
    """Run the verify command (argv, no shell) with ``{path}`` filled in; exit 0 = verified."""
    import subprocess  # only jobs with a verify_command pay for it

    args = [expand(a, backup.path) for a in argv]
    try:
        r = subprocess.run(args, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False, f"verify command timed out after {timeout:g}s: {' '.join(args)}"
    except OSError as e:
        return False, f"cannot run verify command {args[0]}: {e.strerror or e}"
    tail = (r.stderr or r.stdout).decode(errors="replace").strip()[-500:]
    if r.returncode != 0:
        return False, f"verify command exited {r.returncode}: {tail}"
    return True, "verify command exited 0"


def chain_gaps(fulls: list[BackupFile], incs: list[BackupFile], max_gap: float) -> str:
    """Why the newest incremental's chain is broken ('' when it is whole)."""
    if not incs:
        return ""
    newest = incs[-1]
    before = [f for f in fulls if f.mtime <= newest.mtime]
    if not before:
        return f"incremental {newest.path} has no full backup before it"
    base = before[-1]
    chain = [base, *[i for i in incs if base.mtime <= i.mtime <= newest.mtime]]
    for a, b in itertools.pairwise(chain):
        if b.mtime - a.mtime > max_gap:
            return f"gap of {(b.mtime - a.mtime) / 3600:.1f}h between {a.path} and {b.path}"
    return ""


@dataclass
class SetResult:
    """What was found for one set of one job."""

    files: list[BackupFile]
    ok: bool = True


@register("backups", config=BackupsConfig, default=True)
class BackupsCollector:
    """Backup jobs: age, size, size change, verification, success markers, full/incremental chain."""

    name = "backups"

    def __init__(self, config: BackupsConfig):
        self.config = config

    def collect(self, ctx: Context) -> Iterator[Sample]:
        for job in self.config.jobs:
            found: dict[str, list[BackupFile]] = {}
            for kind, bset in job.sets():
                lab = {**job.labels, "job": job.name, "kind": kind}
                files = yield from self._collect_set(ctx, job, kind, bset, lab)
                if files is not None:
                    found[kind] = files
            if job.full is not None and job.incremental is not None and len(found) == 2:
                max_gap = float(job.incremental.max_age) + float(job.grace)
                why = chain_gaps(found["full"], found["incremental"], max_gap)
                yield CHAIN_OK.sample(0 if why else 1, {**job.labels, "job": job.name})
                if why:
                    ctx.add_evidence(Evidence("backup", f"{job.name}: chain broken: {why}", {"job": job.name},
                                              ctx.now()))

    def _collect_set(
        self, ctx: Context, job: BackupJob, kind: str, bset: BackupSet, lab: dict[str, str]
    ) -> Generator[Sample, None, list[BackupFile] | None]:
        now = ctx.now()
        key = f"{job.name}/{kind}"
        state = self._load_state(ctx, key, now)
        yield MAX_AGE.sample(float(bset.max_age) + float(job.grace), lab)
        min_size = parse_size(bset.min_size)
        yield MIN_SIZE.sample(min_size, lab)
        pattern = str(ctx.paths.root / bset.path.lstrip("/"))
        try:
            files = find_backups(pattern)
        except OSError as e:
            yield READABLE.sample(0, lab)
            yield from self._success_samples(ctx, key, state, lab, now)
            ctx.add_evidence(Evidence(
                "backup", f"{job.name} {kind}: cannot read backup location for {bset.path}: "
                f"{e.strerror or e} ({e.filename})", lab, now))
            return None
        yield READABLE.sample(1, lab)
        yield FILES.sample(len(files), lab)
        if not files:
            ctx.add_evidence(Evidence("backup", f"{job.name} {kind}: no file matches {bset.path}", lab, now))
            yield from self._success_samples(ctx, key, state, lab, now)
            return files
        latest = files[-1]
        problems: list[str] = []
        notes: list[str] = []
        yield SIZE.sample(latest.size, lab)
        if latest.size < min_size:
            problems.append(f"size {latest.size} bytes is below the minimum {min_size}")
        if len(files) > 1 and files[-2].size > 0:
            ratio = latest.size / files[-2].size
            yield SIZE_CHANGE.sample(ratio, lab)
            notes.append(f"size change {ratio:.2f}x against {os.path.basename(files[-2].path)}")
        if bset.checksum_file or bset.verify_command:
            ok, why = self._verify(ctx, key, latest, bset)
            yield VERIFY.sample(1 if ok else 0, lab)
            (notes if ok else problems).append(why)
        if bset.success_marker:
            marker = expand(bset.success_marker, latest.path)
            try:
                present = os.stat(marker).st_mtime >= latest.mtime - 60
            except OSError:
                present = False
            yield MARKER.sample(1 if present else 0, lab)
            if not present:
                problems.append(f"success marker {marker} is missing or older than the backup")
        if not problems:
            state["last_success"] = max(float(state.get("last_success", 0.0)), latest.mtime)
            ctx.state.put(key, json.dumps(state).encode())
        yield from self._success_samples(ctx, key, state, lab, now, latest.mtime)
        status = "FAILED: " + "; ".join(problems) if problems else "ok"
        text = (f"{job.name} {kind}: newest {latest.path} ({latest.size} bytes, mtime {latest.mtime:.0f}), "
                f"{len(files)} file(s); {status}" + (f"; {'; '.join(notes)}" if notes else ""))
        ctx.add_evidence(Evidence("backup", text, lab, now))
        return files

    @staticmethod
    def _load_state(ctx: Context, key: str, now: float) -> dict[str, float]:
        raw = ctx.state.get(key)
        try:
            state = dict(json.loads(raw)) if raw else {}
        except ValueError:
            state = {}
        if "first_seen" not in state:
            state["first_seen"] = now
            ctx.state.put(key, json.dumps(state).encode())
        return state

    @staticmethod
    def _success_samples(
        ctx: Context, key: str, state: dict[str, float], lab: dict[str, str], now: float,
        newest: float | None = None,
    ) -> Iterator[Sample]:
        last = float(state.get("last_success", 0.0))
        yield LAST_SUCCESS.sample(last, lab)
        # no good backup seen yet: count from the newest file (old files are overdue at once),
        # or from when the job was first watched, so a new install without files has its grace
        since = last or (newest if newest is not None else float(state["first_seen"]))
        yield AGE.sample(max(0.0, now - since), lab)

    @staticmethod
    def _verify(ctx: Context, key: str, latest: BackupFile, bset: BackupSet) -> tuple[bool, str]:
        ident = f"{latest.path}|{latest.size}|{latest.mtime}|{bset.checksum_file}|{bset.verify_command}"
        if bset.checksum_file:  # a checksum file written after the backup must be looked at again
            try:
                ident += f"|{os.stat(expand(bset.checksum_file, latest.path)).st_mtime}"
            except OSError:
                ident += "|missing"
        cache_key = f"{key}/verified"
        raw = ctx.state.get(cache_key)
        if raw:
            try:
                cached = json.loads(raw)
                if cached.get("ident") == ident:
                    return bool(cached["ok"]), str(cached["why"])
            except ValueError:
                pass
        if bset.checksum_file:
            ok, why = verify_checksum(latest, bset.checksum_file)
        else:
            ok, why = verify_command(latest, bset.verify_command, float(bset.verify_timeout))
        ctx.state.put(cache_key, json.dumps({"ident": ident, "ok": ok, "why": why}).encode())
        return ok, why
