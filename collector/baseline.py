"""Security baseline (SPEC §7): listening ports, accounts, groups, sudoers, sshd, setuid files, crontabs.

Each area is reduced to a set of one-line items (``tcp 0.0.0.0:22``,
``root uid=0 gid=0 home=/root shell=/bin/bash``). The first run records the
baseline in ``ctx.state`` (namespace ``baseline`` in the agent's store,
key ``area:<name>``); later runs report the items added and removed.
``opsagent baseline accept`` records the current state as the new baseline.
"""

from __future__ import annotations

import glob
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from collector.digest import sha256
from collector.model import Evidence, Sample, gauge
from collector.registry import Context, KeyValue, register
from collector.schema import Duration, Regex, compile_regex

DRIFT = gauge("opsagent_baseline_drift", "Items added to or removed from the security baseline, per area.")
ITEMS = gauge("opsagent_baseline_items", "Items in the current state of a baseline area.")
NEW_UID0 = gauge("opsagent_baseline_new_uid0_accounts", "Accounts with UID 0 that are not in the baseline.")
NEW_SETUID = gauge("opsagent_baseline_new_setuid_files", "Setuid/setgid files that are not in the baseline.")
RECORDED = gauge("opsagent_baseline_recorded_timestamp_seconds", "When the baseline of an area was recorded.")
COMPLETE = gauge(
    "opsagent_baseline_scan_complete", "Whether the area was read completely (0: deadline or limit hit)."
)

Area = Literal["ports", "accounts", "groups", "sudoers", "sshd", "setuid", "crontabs"]
AREAS: tuple[Area, ...] = ("ports", "accounts", "groups", "sudoers", "sshd", "setuid", "crontabs")
DEFAULT_SETUID_DIRS = ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin", "/usr/local/sbin")
_DEFAULT_DEADLINE = Duration(5)


@dataclass(frozen=True)
class BaselineConfig:
    """Which areas make up the baseline, where to look for setuid files, items to ignore."""

    enabled: bool | None = None
    interval: Duration | None = Duration(300)
    timeout: Duration | None = Duration(60)
    areas: tuple[Area, ...] = AREAS
    setuid_dirs: tuple[str, ...] = DEFAULT_SETUID_DIRS
    setuid_max_files: int = 200_000
    setuid_deadline: Duration = _DEFAULT_DEADLINE
    one_filesystem: bool = True
    # items matching one of these (RE2) are left out, e.g. "^udp .*:5353$"
    ignore: tuple[Regex, ...] = field(default_factory=tuple)

    def check(self) -> list[tuple[str, str]]:
        out = [(f"setuid_dirs[{i}]", "must be an absolute path") for i, d in enumerate(self.setuid_dirs)
               if not d.startswith("/")]
        if self.setuid_max_files <= 0:
            out.append(("setuid_max_files", "must be positive"))
        return out


@dataclass
class Snapshot:
    """The current items of one area, and whether it could be read completely."""

    items: set[str]
    complete: bool = True
    note: str = ""


# ---------------------------------------------------------------- pure parsers

# /proc/net/tcp states: 0A is LISTEN; a UDP socket "listens" when bound and unconnected (07)
_TCP_LISTEN = "0A"
_UDP_UNCONNECTED = "07"


def _hex_addr(text: str, v6: bool) -> str:
    addr, _, port = text.partition(":")
    raw = bytes.fromhex(addr)
    if v6:
        # four little-endian 32-bit words
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        import ipaddress

        host = f"[{ipaddress.IPv6Address(words).compressed}]"
    else:
        host = ".".join(str(b) for b in raw[::-1])
    return f"{host}:{int(port, 16)}"


def parse_proc_net(text: str, proto: str) -> set[str]:
    """Listening sockets of one /proc/net/{tcp,tcp6,udp,udp6} file as ``proto addr:port`` items."""
    v6 = proto.endswith("6")
    udp = proto.startswith("udp")
    out: set[str] = set()
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 4:
            continue
        st = f[3].upper()
        try:
            local = _hex_addr(f[1], v6)
            remote_port = int(f[2].rpartition(":")[2], 16)
        except ValueError:
            continue
        if (not udp and st == _TCP_LISTEN) or (udp and st == _UDP_UNCONNECTED and remote_port == 0):
            out.add(f"{proto} {local}")
    return out


def parse_passwd(text: str) -> set[str]:
    """/etc/passwd -> ``name uid=U gid=G home=H shell=S`` items."""
    out: set[str] = set()
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split(":")
        if len(f) < 7:
            out.add(f"malformed {line.strip()}")
            continue
        out.add(f"{f[0]} uid={f[2]} gid={f[3]} home={f[5]} shell={f[6]}")
    return out


def uid0_accounts(items: Iterable[str]) -> set[str]:
    """Account items that have UID 0."""
    return {i for i in items if " uid=0 " in i}


def parse_group(text: str) -> set[str]:
    """/etc/group -> ``name gid=G members=a,b`` items (members sorted)."""
    out: set[str] = set()
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split(":")
        if len(f) < 4:
            out.add(f"malformed {line.strip()}")
            continue
        members = ",".join(sorted(m for m in f[3].split(",") if m))
        out.add(f"{f[0]} gid={f[2]} members={members}")
    return out


def effective_lines(text: str, keep_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Non-empty, non-comment lines (whitespace squeezed); lines starting with a kept prefix stay."""
    out: list[str] = []
    for line in text.splitlines():
        s = " ".join(line.split())
        if not s or (s.startswith("#") and not s.startswith(keep_prefixes)):
            continue
        out.append(s)
    return out


def parse_sudoers(text: str) -> list[str]:
    """Effective sudoers lines; ``#include``/``#includedir`` are directives, not comments."""
    return effective_lines(text, ("#include", "#includedir"))


_SSHD_LINE = re.compile(r"^([A-Za-z0-9]+)(?:\s*=\s*|\s+)(.*)$")

# OpenSSH defaults of the settings that matter for security (sshd_config(5))
SSHD_DEFAULTS: Mapping[str, str] = {
    "permitrootlogin": "prohibit-password",
    "passwordauthentication": "yes",
    "pubkeyauthentication": "yes",
    "permitemptypasswords": "no",
    "kbdinteractiveauthentication": "yes",
    "port": "22",
    "x11forwarding": "no",
    "allowtcpforwarding": "yes",
    "usepam": "no",
    "maxauthtries": "6",
}


def parse_sshd_config(text: str, read_include: Callable[[str], list[str]] | None = None) -> dict[str, str]:
    """Effective global sshd settings: the first value of each keyword wins, as in sshd.

    ``Include`` is followed through ``read_include`` (pattern -> texts);
    ``Match`` blocks are conditional and are kept as ``match <criteria> <key>``.
    """
    out: dict[str, str] = {}
    match = ""
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = _SSHD_LINE.match(s)
        if not m:
            continue
        key, value = m.group(1).lower(), " ".join(m.group(2).split())
        if key == "include" and read_include is not None:
            for pattern in value.split():
                for sub in read_include(pattern):
                    for k, v in parse_sshd_config(sub, None).items():
                        out.setdefault(k if not match else f"match {match} {k}", v)
            continue
        if key == "match":
            match = value.lower()
            continue
        out.setdefault(key if not match else f"match {match} {key}", value)
    return out


def sshd_items(settings: Mapping[str, str]) -> set[str]:
    """Settings with OpenSSH defaults filled in, as ``key value`` items."""
    merged = {**SSHD_DEFAULTS, **settings}
    return {f"{k} {v}" for k, v in merged.items()}


# ---------------------------------------------------------------- readers


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None


def read_ports(proc: Path) -> Snapshot:
    items: set[str] = set()
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        text = _read(proc / "net" / proto)
        if text is not None:
            items |= parse_proc_net(text, proto)
    return Snapshot(items)


def read_files_lines(root: Path, patterns: Iterable[str], parse: Callable[[str], list[str]]) -> Snapshot:
    """``/path: line`` items of the effective lines of every file matching the patterns."""
    items: set[str] = set()
    for pattern in patterns:
        full = str(root / pattern.lstrip("/"))
        paths = sorted(glob.glob(full)) if glob.has_magic(pattern) else [full]
        for p in paths:
            if os.path.isdir(p):
                continue
            text = _read(Path(p))
            if text is None:
                continue
            shown = "/" + os.path.relpath(p, root)
            for line in parse(text):
                items.add(f"{shown}: {line}")
            items.add(f"{shown} sha256={sha256(text.encode()).hexdigest()[:16]}")
    return Snapshot(items)


def read_sshd(root: Path) -> Snapshot:
    base = root / "etc/ssh"
    text = _read(base / "sshd_config")
    if text is None:
        return Snapshot(set(), note="no /etc/ssh/sshd_config")

    def include(pattern: str) -> list[str]:
        full = pattern if pattern.startswith("/") else f"/etc/ssh/{pattern}"
        out = []
        for p in sorted(glob.glob(str(root / full.lstrip("/")))):
            t = _read(Path(p))
            if t is not None:
                out.append(t)
        return out

    return Snapshot(sshd_items(parse_sshd_config(text, include)))


def scan_setuid(
    root: Path, dirs: Iterable[str], deadline: float, max_files: int, one_filesystem: bool = True,
    monotonic: Callable[[], float] = time.monotonic,
) -> Snapshot:
    """Setuid/setgid regular files under ``dirs`` (not following symlinks), bounded in time and count."""
    items: set[str] = set()
    seen = 0
    end = monotonic() + deadline
    visited: set[tuple[int, int]] = set()  # /bin -> /usr/bin symlinks must not count twice
    for d in dirs:
        top = root / d.lstrip("/")
        try:
            top_real = top.resolve()
            top_st = os.stat(top_real)
        except OSError:
            continue
        stack = [str(top_real)]
        while stack:
            current = stack.pop()
            try:
                st_dir = os.stat(current)
            except OSError:
                continue
            if (st_dir.st_dev, st_dir.st_ino) in visited:
                continue
            visited.add((st_dir.st_dev, st_dir.st_ino))
            try:
                # one entry at a time: a list of /usr/bin's thousands of entries was the
                # collector's whole memory peak (and a new 1 MB pymalloc arena kept for good)
                entries = os.scandir(current)
            except OSError:
                continue
            with entries:
                for e in entries:
                    seen += 1
                    if seen > max_files:
                        return Snapshot(items, False, f"stopped after {max_files} files (setuid_max_files)")
                    if seen % 256 == 0 and monotonic() > end:
                        return Snapshot(items, False, f"stopped at the {deadline:g}s deadline")
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        if not one_filesystem or st.st_dev == top_st.st_dev:
                            stack.append(e.path)
                    elif stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                        shown = "/" + os.path.relpath(e.path, root) if str(root) != "/" else e.path
                        items.add(
                            f"{shown} mode={stat.S_IMODE(st.st_mode):04o} uid={st.st_uid} gid={st.st_gid}"
                        )
    return Snapshot(items)


CRONTAB_PATHS = ("/etc/crontab", "/etc/cron.d/*", "/var/spool/cron/crontabs/*", "/var/spool/cron/*")


def current_state(config: BaselineConfig, paths_root: Path, proc: Path) -> dict[str, Snapshot]:
    """Read every configured area now."""
    out: dict[str, Snapshot] = {}
    for area in config.areas:
        if area == "ports":
            out[area] = read_ports(proc)
        elif area == "accounts":
            text = _read(paths_root / "etc/passwd")
            out[area] = Snapshot(parse_passwd(text) if text else set())
        elif area == "groups":
            text = _read(paths_root / "etc/group")
            out[area] = Snapshot(parse_group(text) if text else set())
        elif area == "sudoers":
            out[area] = read_files_lines(paths_root, ("/etc/sudoers", "/etc/sudoers.d/*"), parse_sudoers)
        elif area == "sshd":
            out[area] = read_sshd(paths_root)
        elif area == "setuid":
            out[area] = scan_setuid(paths_root, config.setuid_dirs, float(config.setuid_deadline),
                                    config.setuid_max_files, config.one_filesystem)
        elif area == "crontabs":
            out[area] = read_files_lines(paths_root, CRONTAB_PATHS, effective_lines)
    if config.ignore:
        rxs = [compile_regex(p) for p in config.ignore]
        for snap in out.values():
            snap.items = {i for i in snap.items if not any(rx.search(i) for rx in rxs)}
    return out


# ---------------------------------------------------------------- stored baseline


def area_key(area: str) -> str:
    return f"area:{area}"


def load_baseline(kv: KeyValue, area: str) -> tuple[set[str], float] | None:
    """The recorded items of an area and when they were recorded (None: no baseline yet)."""
    raw = kv.get(area_key(area))
    if raw is None:
        return None
    d = json.loads(raw)
    return set(d["items"]), float(d["ts"])


def save_baseline(kv: KeyValue, area: str, items: Iterable[str], ts: float) -> None:
    """Record ``items`` as the baseline of ``area``."""
    kv.put(area_key(area), json.dumps({"ts": ts, "items": sorted(items)}).encode())


def accept(config: BaselineConfig, kv: KeyValue, root: Path, proc: Path, now: float) -> dict[str, int]:
    """Record the current state of every area as the new baseline; returns item counts per area.

    An incompletely read area (setuid scan stopped by its deadline) keeps the
    items it found merged with the old baseline, so nothing is forgotten.
    """
    counts: dict[str, int] = {}
    for area, snap in current_state(config, root, proc).items():
        items = snap.items
        if not snap.complete:
            old = load_baseline(kv, area)
            items = items | (old[0] if old else set())
        save_baseline(kv, area, items, now)
        counts[area] = len(items)
    return counts


@register("baseline", config=BaselineConfig, default=True)
class BaselineCollector:
    """Security baseline drift: ports, accounts, groups, sudoers, sshd, setuid files, crontabs."""

    name = "baseline"

    def __init__(self, config: BaselineConfig):
        self.config = config

    def collect(self, ctx: Context) -> Iterator[Sample]:
        now = ctx.now()
        new_uid0 = new_setuid = 0
        for area, snap in current_state(self.config, ctx.paths.root, ctx.paths.proc).items():
            lab = {"area": area}
            yield ITEMS.sample(len(snap.items), lab)
            yield COMPLETE.sample(1 if snap.complete else 0, lab)
            recorded = load_baseline(ctx.state, area)
            if recorded is None:  # first run: this is the baseline
                if snap.complete:
                    save_baseline(ctx.state, area, snap.items, now)
                    yield RECORDED.sample(now, lab)
                yield DRIFT.sample(0, lab)
                continue
            base, ts = recorded
            yield RECORDED.sample(ts, lab)
            added = sorted(snap.items - base)
            # an incomplete scan cannot tell "removed" from "not reached"
            removed = sorted(base - snap.items) if snap.complete else []
            yield DRIFT.sample(len(added) + len(removed), lab)
            if area == "accounts":
                new_uid0 = len(uid0_accounts(added))
            if area == "setuid":
                new_setuid = len(added)
            if added or removed:
                lines = [f"security baseline drift in {area}:"]
                lines += [f"+ {i}" for i in added[:200]]
                lines += [f"- {i}" for i in removed[:200]]
                if len(added) > 200 or len(removed) > 200:
                    lines.append(f"({len(added)} added, {len(removed)} removed in all)")
                ctx.add_evidence(Evidence("baseline_drift", "\n".join(lines), lab, now))
            if not snap.complete:
                note = f"{area}: scan incomplete: {snap.note}"
                ctx.add_evidence(Evidence("baseline_drift", note, lab, now))
        if "accounts" in self.config.areas:
            yield NEW_UID0.sample(new_uid0, area="accounts")  # area: inhibits that area's drift alert
        if "setuid" in self.config.areas:
            yield NEW_SETUID.sample(new_setuid, area="setuid")
