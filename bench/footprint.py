"""Footprint of opsagent beside Debian's node_exporter, scraped the same way, side by side.

    .venv/bin/python bench/footprint.py [--scrapes 300] [--cycles 10] [--duration 5]

Starts ``opsagent run`` (config.example.yaml with a temporary state file, a
free loopback port and a 1 s interval so cycles can be counted quickly) and
``prometheus-node-exporter`` twice (all default collectors; only the
collectors opsagent implements), all on 127.0.0.1. Prints, for each:

* series exposed; steady RSS after N scrapes (/proc/<pid>/status VmRSS);
* CPU per collection, in one 30 s window, one collection a second each:
  opsagent per cycle (utime+stime from /proc/<pid>/stat over the window,
  divided by the 1 s intervals in it, so a 10 ms clock tick is 0.3 ms per
  cycle; ``opsagent_collection_cycles_total`` is printed as a check) and
  node_exporter per scrape (it collects on scrape; scraped once a second
  meanwhile). Both collect with caches gone cold after a second of sleep,
  which costs either about twice a back-to-back collection; the CPU per
  scrape of 300 back-to-back scrapes is printed too. The example's other
  intervals (collectors' own ``interval``, ``rules.evaluation_interval``)
  are scaled by the same factor as ``schedule.interval`` (15 s -> 1 s), so
  each cycle carries its fair share of the slower work, as it would at 15 s;
* scrape latency p50/p99 sequentially (keep-alive) and under 10 concurrent
  scrapers (``wrk -t2 -c10`` if installed, else 10 threads with keep-alive),
  requests/s; all scrapes send ``Accept-Encoding: gzip`` as Prometheus does;
* the ratios opsagent / node_exporter.

Bounded: well under 90 s with the defaults.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"
OUR_COLLECTORS = [
    "cpu",
    "meminfo",
    "filesystem",
    "diskstats",
    "netdev",
    "loadavg",
    "stat",
    "time",
    "timex",
    "hwmon",
]
HEADERS = {"Accept-Encoding": "gzip"}
# the daemon's schedule.interval in the bench (the example says 15 s; 1 s is the minimum)
INTERVAL = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


@dataclass
class Target:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    figures: dict[str, float] = field(default_factory=dict)

    def scrape(self, conn: http.client.HTTPConnection | None = None) -> bytes:
        own = conn is None
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("GET", "/metrics", headers=HEADERS)
        r = c.getresponse()
        body = r.read()
        if own:
            c.close()
        if r.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {r.status}")
        return gzip.decompress(body) if r.getheader("Content-Encoding") == "gzip" else body

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                self.scrape()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready")


UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> float:
    """A Prometheus duration (``15s``, ``1h30m``) in seconds."""
    return sum(float(n) * UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text))


def scale_intervals(cfg: dict[str, Any], interval: float) -> None:
    """Set ``schedule.interval`` and scale the other intervals alike (their ratio to it stays)."""
    factor = interval / seconds(str(cfg["schedule"]["interval"]))
    cfg["schedule"]["interval"] = f"{interval * 1000:.0f}ms"
    rules = cfg.get("rules") or {}
    if seconds(str(rules.get("evaluation_interval") or "0s")):
        ev = seconds(str(rules["evaluation_interval"])) * factor
        rules["evaluation_interval"] = f"{ev * 1000:.0f}ms"
    for section in (cfg.get("collectors") or {}).values():
        if isinstance(section, dict) and section.get("interval"):
            own = max(interval, seconds(str(section["interval"])) * factor)
            section["interval"] = f"{own * 1000:.0f}ms"


def start_opsagent(tmp: Path) -> Target:
    cfg = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    port = free_port()
    cfg["agent"]["state_file"] = str(tmp / "state.db")
    cfg["agent"]["log_level"] = "warning"
    cfg["web"]["listen_address"] = f"127.0.0.1:{port}"
    scale_intervals(cfg, INTERVAL)
    path = tmp / "opsagent.yaml"
    path.write_text(yaml.safe_dump(cfg))
    exe = ROOT / ".venv" / "bin" / "python"
    proc = subprocess.Popen(
        [str(exe if exe.exists() else sys.executable), "-m", "agent.cli", "run", "-c", str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "opsagent.log", "w"),
    )
    return Target("opsagent", port, proc)


def start_node_exporter(name: str, limited: bool) -> Target:
    port = free_port()
    args = [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"]
    if limited:
        args += ["--collector.disable-defaults"] + [f"--collector.{c}" for c in OUR_COLLECTORS]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Target(name, port, proc)


def metric(text: bytes, name: str) -> float:
    m = re.search(rb"^" + re.escape(name.encode()) + rb" (\S+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


def series(text: bytes) -> int:
    return sum(1 for ln in text.splitlines() if ln and not ln.startswith(b"#"))


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def sequential(t: Target, n: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    lat = []
    c0 = cpu_seconds(t.proc.pid)
    for _ in range(n):
        t0 = time.perf_counter()
        t.scrape(conn)
        lat.append((time.perf_counter() - t0) * 1000)
    t.figures["cpu_per_scrape_ms"] = (cpu_seconds(t.proc.pid) - c0) / n * 1000
    conn.close()
    t.figures["seq_p50_ms"] = statistics.median(lat)
    t.figures["seq_p99_ms"] = pct(lat, 99)
    t.figures["rss_mb"] = rss_mb(t.proc.pid)


def concurrent(t: Target, duration: float) -> None:
    if shutil.which("wrk"):
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                "-c10",
                f"-d{duration:g}s",
                "--latency",
                "-H",
                "Accept-Encoding: gzip",
                f"http://127.0.0.1:{t.port}/metrics",
            ],
            capture_output=True,
            text=True,
            timeout=duration + 30,
        ).stdout
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)$", out, re.M)
        p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)$", out, re.M)
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
        t.figures["conc_rps"] = float(rps.group(1)) if rps else float("nan")
        t.figures["conc_p99_ms"] = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
        t.figures["conc_p50_ms"] = float(p50.group(1)) * scale[p50.group(2)] if p50 else float("nan")
        t.figures["conc_tool_wrk"] = 1
        return
    lat: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
        mine = []
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            t.scrape(conn)
            mine.append((time.perf_counter() - t0) * 1000)
        conn.close()
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    t.figures["conc_rps"] = len(lat) / (time.monotonic() - t0)
    t.figures["conc_p50_ms"] = statistics.median(lat)
    t.figures["conc_p99_ms"] = pct(lat, 99)
    t.figures["conc_tool_wrk"] = 0


def cycle_cpu(ops: Target, others: list[Target], cycles: int, interval: float) -> None:
    """CPU per collection, all targets in one window, one collection per ``interval`` each.

    opsagent: the CPU of the whole window divided by the number of
    ``interval`` periods in it, so everything the agent does between cycles
    (idle wake-ups, a collector with its own interval running off-beat) is
    charged to the cycles; the counter's increase is printed beside it as a
    check. node_exporter collects on scrape: it is scraped once per
    ``interval`` meanwhile, so both collect at the same pace with cold caches
    (back-to-back scrapes cost it less: see "CPU per scrape").
    """
    first = metric(ops.scrape(), "opsagent_collection_cycles_total")
    c0 = {t.name: cpu_seconds(t.proc.pid) for t in [ops, *others]}
    w0 = time.monotonic()
    scrapes = 0
    for i in range(cycles):
        for t in others:
            t.scrape()
        scrapes += 1
        time.sleep(max(0.0, w0 + (i + 1) * interval - time.monotonic()))
    w1 = time.monotonic()
    c1 = {t.name: cpu_seconds(t.proc.pid) for t in [ops, *others]}
    n = metric(ops.scrape(), "opsagent_collection_cycles_total")
    periods = (w1 - w0) / interval
    ops.figures["cycles"] = n - first
    ops.figures["periods"] = periods
    ops.figures["cpu_per_cycle_ms"] = (c1[ops.name] - c0[ops.name]) / periods * 1000
    for t in others:
        t.figures["cpu_per_cycle_ms"] = (c1[t.name] - c0[t.name]) / scrapes * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scrapes", type=int, default=300, help="sequential scrapes before reading RSS")
    ap.add_argument("--cycles", type=int, default=30, help="opsagent collection cycles for CPU per cycle")
    ap.add_argument("--duration", type=float, default=5, help="seconds of 10 concurrent scrapers per target")
    args = ap.parse_args()
    if not Path(NODE_EXPORTER).exists():
        print("bench: prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)")
        return 1
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="opsagent-bench-") as d:
        tmp = Path(d)
        targets = [
            start_opsagent(tmp),
            start_node_exporter("node_exporter (defaults)", limited=False),
            start_node_exporter("node_exporter (our 10 collectors)", limited=True),
        ]
        try:
            for t in targets:
                t.wait_ready()
                t.figures["rss_idle_mb"] = rss_mb(t.proc.pid)
                t.figures["series"] = series(t.scrape())
            ops = targets[0]
            cycle_cpu(ops, targets[1:], args.cycles, INTERVAL)
            # interleave the targets so machine noise hits all of them alike
            for t in targets:
                sequential(t, args.scrapes)
            for t in targets:
                concurrent(t, args.duration)
            for t in targets:
                t.figures["rss_after_mb"] = rss_mb(t.proc.pid)
        finally:
            for t in targets:
                t.proc.terminate()
            for t in targets:
                try:
                    t.proc.wait(10)
                except subprocess.TimeoutExpired:
                    t.proc.kill()
    report(targets, args, time.monotonic() - t_start)
    return 0


def report(targets: list[Target], args: argparse.Namespace, elapsed: float) -> None:
    ops, ne, ne_small = targets
    rows = [
        ("series", "series", "{:.0f}"),
        ("RSS idle (MB)", "rss_idle_mb", "{:.1f}"),
        (f"RSS after {args.scrapes} seq. scrapes (MB)", "rss_mb", "{:.1f}"),
        ("RSS after concurrent load (MB)", "rss_after_mb", "{:.1f}"),
        ("CPU per collection, one per interval (ms)", "cpu_per_cycle_ms", "{:.2f}"),
        (f"CPU per scrape, {args.scrapes} back-to-back (ms)", "cpu_per_scrape_ms", "{:.2f}"),
        ("sequential p50 (ms)", "seq_p50_ms", "{:.2f}"),
        ("sequential p99 (ms)", "seq_p99_ms", "{:.2f}"),
        ("10 concurrent: req/s", "conc_rps", "{:.0f}"),
        ("10 concurrent: p50 (ms)", "conc_p50_ms", "{:.2f}"),
        ("10 concurrent: p99 (ms)", "conc_p99_ms", "{:.2f}"),
    ]
    names = [t.name for t in targets]
    w = max(len(r[0]) for r in rows)
    print(f"{'':<{w}}  " + "  ".join(f"{n:>34}" for n in names))
    for label, key, fmt in rows:
        print(
            f"{label:<{w}}  "
            + "  ".join(f"{fmt.format(t.figures.get(key, float('nan'))):>34}" for t in targets)
        )
    tool = "wrk -t2 -c10" if ops.figures.get("conc_tool_wrk") else "10 keep-alive threads"
    print(
        f"\nconcurrent load by {tool}, {args.duration:g}s per target; all requests Accept-Encoding: gzip;"
        f" opsagent CPU over {ops.figures.get('periods', 0):.1f} intervals of {INTERVAL:g}s"
        f" ({ops.figures.get('cycles', 0):.0f} collect calls counted); bench time {elapsed:.0f}s"
    )
    print("\nratios opsagent / node_exporter (defaults | our 10 collectors):")
    for label, key, better in [
        ("steady RSS", "rss_mb", "lower"),
        ("CPU per collection (one per interval, both)", "cpu_per_cycle_ms", "lower"),
        ("concurrent req/s", "conc_rps", "higher"),
        ("concurrent p99", "conc_p99_ms", "lower"),
        ("sequential p99", "seq_p99_ms", "lower"),
    ]:
        a = ops.figures.get(key, float("nan"))
        r1 = a / ne.figures[key] if ne.figures.get(key) else float("nan")
        r2 = a / ne_small.figures[key] if ne_small.figures.get(key) else float("nan")
        print(f"  {label:<52} {r1:6.2f} | {r2:6.2f}   ({better} is better)")
    f, n = ops.figures, ne.figures
    print("\ntargets (against node_exporter with its default collectors):")
    for label, ok, detail in [
        ("steady RSS <= 30 MB", f["rss_mb"] <= 30, f"{f['rss_mb']:.1f} MB"),
        (
            "CPU per collection <= node_exporter's",
            f["cpu_per_cycle_ms"] <= n["cpu_per_cycle_ms"],
            f"{f['cpu_per_cycle_ms']:.2f} vs {n['cpu_per_cycle_ms']:.2f} ms",
        ),
        ("10 concurrent: req/s >= node_exporter's", f["conc_rps"] >= n["conc_rps"],
         f"{f['conc_rps']:.0f} vs {n['conc_rps']:.0f}"),
        ("10 concurrent: p99 <= node_exporter's", f["conc_p99_ms"] <= n["conc_p99_ms"],
         f"{f['conc_p99_ms']:.2f} vs {n['conc_p99_ms']:.2f} ms"),
    ]:
        print(f"  {label:<50} {'met' if ok else 'NOT met':>8}  ({detail})")


if __name__ == "__main__":
    sys.exit(main())
