"""Log scanning speed: the logs collector against `LC_ALL=C grep -c -i -E`, same 20 patterns, same file.

Generates a syslog-like file (default 1 GiB, about 1 % matching lines) once
into a temporary directory, warms the page cache, then times grep and the
real ``LogsCollector`` (reading from the beginning, all 20 patterns, default
continuation lines) side by side, best of ``--repeat`` runs each. Prints MB/s
of both and the ratio; the target is >= 0.5 of grep's throughput.

    .venv/bin/python bench/logscan.py [--size-mib 1024] [--repeat 2] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.logs import DEFAULT_PATTERNS, LogFiles, LogPattern, LogsCollector, LogsConfig
from collector.logscan import Matcher, PatternSpec
from collector.registry import Context, MemoryKeyValue
from collector.schema import Regex

# The 8 default patterns plus 12 more a team would add: 20 in all.
EXTRA = {
    "conn_refused": r"connection refused",
    "timed_out": r"timed out",
    "disk_full": r"no space left on device",
    "read_only": r"read-only file system",
    "call_trace": r"call trace",
    "hung_task": r"blocked for more than [0-9]+ seconds",
    "link_down": r"link is down",
    "temperature": r"temperature above threshold",
    "corrupt": r"corrupt",
    "deadlock": r"deadlock",
    "fd_limit": r"too many open files",
    "unreachable": r"unreachable",
}

HOSTS = ["web01", "db02", "app03", "cache04"]
PROGS = ["sshd[1234]", "CRON[4567]", "kernel", "systemd[1]", "nginx[778]", "postfix/smtpd[889]"]
NORMAL = [
    "Accepted publickey for deploy from 10.0.0.{n} port 5{n} ssh2: ED25519 SHA256:abcdef",
    "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
    "Started Session {n} of User deploy.",
    "[UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56 SRC=10.1.2.{n} DST=10.0.0.{n} LEN=40 TTL=52 PROTO=TCP",
    "connect from unknown[10.2.3.{n}]",
    "10.4.5.{n} - - \"GET /api/v1/items/{n} HTTP/1.1\" 200 512 \"-\" \"curl/7.88\"",
    "Reached target Timers; {n} units active",
]
BAD = [
    "Out of memory: Killed process {n} (java) total-vm:1234kB",
    "segfault at 0 ip 00007f{n} sp 00007ffd error 4 in libc.so.6",
    "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh rhost=10.9.9.{n}",
    "blk_update_request: I/O error, dev sda, sector {n} op 0x0:(READ)",
    "upstream connect error: connection refused while connecting to 10.0.0.{n}",
    "task kworker/{n}:1 blocked for more than 120 seconds.",
    "Kernel panic - not syncing: Fatal exception in interrupt {n}",
    "ERROR worker {n}: request timed out",
]


def patterns() -> dict[str, LogPattern]:
    out = dict(DEFAULT_PATTERNS)
    out.update({k: LogPattern(Regex(v), "error") for k, v in EXTRA.items()})
    assert len(out) == 20
    return out


def generate(path: Path, size: int, bad_ratio: float = 0.01, seed: int = 1) -> None:
    """Write ``size`` bytes of syslog-like lines: an 8 MiB random block, repeated (bounded)."""
    rnd = random.Random(seed)
    lines = []
    n = 0
    while n < min(size, 8 << 20):
        t = rnd.choice(BAD) if rnd.random() < bad_ratio else rnd.choice(NORMAL)
        ts = f"Nov 21 {rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}"
        line = f"{ts} {rnd.choice(HOSTS)} {rnd.choice(PROGS)}: {t.format(n=rnd.randint(1, 250))}\n"
        lines.append(line)
        n += len(line)
    block = "".join(lines).encode()
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        written = 0
        for _ in range(size // len(block) + 1):  # bounded
            if written >= size:
                break
            f.write(block)
            written += len(block)
    tmp.rename(path)


def grep_count(path: Path, pats: dict[str, LogPattern]) -> tuple[int, float]:
    expr = "|".join(f"({p.regex})" for p in pats.values())
    env = {**os.environ, "LC_ALL": "C"}
    t0 = time.perf_counter()
    res = subprocess.run(["grep", "-c", "-i", "-E", expr, str(path)], capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    if res.returncode not in (0, 1):
        raise SystemExit(f"grep failed: {res.stderr}")
    return int(res.stdout.strip() or 0), dt


def collector_run(path: Path, pats: dict[str, LogPattern]) -> tuple[float, float]:
    """The real collector, reading the whole file in one cycle: (records counted, seconds)."""
    cfg = LogsConfig(
        files=(LogFiles(paths=(str(path),), from_beginning=True),),
        patterns=pats, default_patterns=False, max_bytes_per_cycle=1 << 40, evidence_lines=5,
    )
    coll = LogsCollector(cfg)
    ctx = Context(config=cfg, state=MemoryKeyValue(), clock=lambda: 1.0)
    t0 = time.perf_counter()
    samples = list(coll.collect(ctx))
    dt = time.perf_counter() - t0
    return sum(s.value for s in samples if s.name == "opsagent_log_matches_total"), dt


def matching_lines(path: Path, pats: dict[str, LogPattern]) -> int:
    """Lines matching any pattern, by our engine without continuation lines (comparable to grep -c)."""
    m = Matcher([PatternSpec(k, v.regex, v.ignore_case) for k, v in pats.items()], continuation=None)
    n = 0
    with path.open("rb") as f:
        rest = b""
        while True:
            block = f.read(8 << 20)
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            n += len(m.scan(block[:cut]))
    return n + len(m.flush())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "opsagent-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the generated file for the next run")
    args = ap.parse_args()
    if shutil.which("grep") is None:
        raise SystemExit("grep not found")
    size = args.size_mib << 20
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"syslog-{args.size_mib}m.log"
    if not path.exists() or path.stat().st_size < size:
        print(f"generating {path} ({args.size_mib} MiB) ...", flush=True)
        generate(path, size)
    real = path.stat().st_size
    pats = patterns()
    try:
        grep_count(path, pats)  # warm the page cache
        g_best = c_best = float("inf")
        for _ in range(max(1, args.repeat)):
            g_lines, g = grep_count(path, pats)
            c_records, c = collector_run(path, pats)
            g_best, c_best = min(g_best, g), min(c_best, c)
        ours = matching_lines(path, pats)
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
    mb = real / 1e6
    print(f"file: {real / (1 << 20):.0f} MiB, 20 patterns (case-insensitive), ~1% matching lines")
    print(f"grep -c -i -E (LC_ALL=C): {mb / g_best:8.0f} MB/s  {g_lines} matching lines")
    print(f"opsagent logs collector : {mb / c_best:8.0f} MB/s  {c_records:.0f} pattern matches in records")
    same = "equal to" if ours == g_lines else "DIFFERS from"
    print(f"  same engine, line mode: {ours} matching lines ({same} grep)")
    ratio = g_best / c_best
    print(f"ratio collector/grep    : {ratio:.2f}  (target >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'})")
    return 0 if ours == g_lines else 1


if __name__ == "__main__":
    sys.exit(main())
