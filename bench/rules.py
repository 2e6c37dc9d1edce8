"""Benchmark: the default rule packs over ~5,000 node_exporter-like series with 2 h of 15 s history.

Prints the median milliseconds per evaluation cycle (all packs, one ``evaluate`` call)
over N cycles; the target is <= 50 ms. Run: ``.venv/bin/python bench/rules.py [N]``.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.model import Sample
from rules.evaluator import RuleEvaluator
from rules.history import History
from rules.loader import RulesOptions, load_files, pack_paths

STEP = 15.0
HISTORY = 2 * 3600
CPUS, MODES = 8, ("idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice")
FILESYSTEMS = ("/", "/boot", "/var", "/data", "/home")
DEVICES = ("eth0", "eth1", "bond0", "lo")
NET_FIELDS = ("receive_bytes", "transmit_bytes", "receive_packets", "transmit_packets",
              "receive_errs", "transmit_errs", "receive_drop")
COLLECTORS = ("cpu", "meminfo", "filesystem", "netdev", "load", "timex", "hwmon", "stat", "diskstats",
              "uname")


def instance_series(inst: str, tier: str, t: float, rnd: random.Random) -> list[Sample]:
    """One collection of one fake host, counters growing with ``t``."""
    out: list[Sample] = []
    base = {"instance": inst, "tier": tier}
    for c in range(CPUS):
        for m in MODES:
            rate = 0.7 if m == "idle" else 0.3 / (len(MODES) - 1)
            out.append(Sample("node_cpu_seconds_total", {**base, "cpu": str(c), "mode": m}, rate * t))
    for i, mp in enumerate(FILESYSTEMS):
        fs = {**base, "device": f"/dev/sd{chr(97 + i)}1", "fstype": "ext4", "mountpoint": mp}
        size = 100e9
        avail = size * (0.5 - 0.4 * ((t % 86400) / 86400) * (i == 3))  # /data fills slowly
        out += [Sample("node_filesystem_size_bytes", fs, size),
                Sample("node_filesystem_avail_bytes", fs, avail),
                Sample("node_filesystem_free_bytes", fs, avail), Sample("node_filesystem_files", fs, 6e6),
                Sample("node_filesystem_files_free", fs, 5e6), Sample("node_filesystem_readonly", fs, 0),
                Sample("node_filesystem_device_error", fs, 0)]
    for d in DEVICES:
        nd = {**base, "device": d}
        out.append(Sample("node_network_up", nd, 1))
        for f in NET_FIELDS:
            out.append(Sample(f"node_network_{f}_total", nd, 1000 * t * (0.001 if "errs" in f else 1)))
    mem = 64e9
    out += [Sample("node_memory_MemTotal_bytes", base, mem),
            Sample("node_memory_MemAvailable_bytes", base, mem * (0.3 + 0.1 * rnd.random())),
            Sample("node_memory_SwapTotal_bytes", base, 8e9), Sample("node_memory_SwapFree_bytes", base, 7e9),
            Sample("node_load1", base, 2 + rnd.random()), Sample("node_load5", base, 2),
            Sample("node_load15", base, 2), Sample("node_timex_sync_status", base, 1),
            Sample("node_timex_maxerror_seconds", base, 0.1),
            Sample("node_timex_offset_seconds", base, 0.001),
            Sample("node_vmstat_pswpin", base, 10 * t), Sample("node_vmstat_pswpout", base, 10 * t),
            Sample("up", {**base, "job": "node"}, 1)]
    for s in range(4):
        out.append(Sample("node_hwmon_temp_celsius", {**base, "chip": "coretemp", "sensor": f"temp{s}"}, 45))
    for c in COLLECTORS:
        out.append(Sample("opsagent_collector_success", {**base, "collector": c}, 1))
    return out


def main() -> None:
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    rnd = random.Random(1)
    per_host = len(instance_series("x", "production", 0, rnd))
    hosts = [f"host{i:03d}:9100" for i in range(round(5000 / per_host))]
    tiers = ("production", "important", "test")
    history = History(HISTORY + 600)
    t_end = 1_700_000_000.0
    t0 = t_end - HISTORY
    t_fill = time.perf_counter()
    t = t0
    while t <= t_end:
        batch: list[Sample] = []
        for i, h in enumerate(hosts):
            batch += instance_series(h, tiers[i % 3], t, rnd)
        history.append(batch, t, source="bench")
        t += STEP
    fill = time.perf_counter() - t_fill
    rules = load_files(pack_paths())
    ev = RuleEvaluator(rules, RulesOptions(honor_group_interval=True))  # as the daemon
    times = []
    alerts = []
    for _ in range(cycles):
        batch = []
        for i, h in enumerate(hosts):
            batch += instance_series(h, tiers[i % 3], t, rnd)
        history.append(batch, t, source="bench")
        t0p = time.perf_counter()
        alerts = ev.evaluate(history, t)
        times.append(time.perf_counter() - t0p)
        t += STEP
    series = len(history)
    print(f"series: {series} ({len(hosts)} hosts x {per_host}), history: {HISTORY // 3600} h at {STEP:g} s "
          f"(filled in {fill:.1f} s)")
    print(f"rules: {len(rules.alerting_rules)} alerting rules from {len(rules.files)} packs; "
          f"alerts at the end: {len(alerts)}; evaluation failures: {ev.failures_total}")
    print(f"evaluation cycle: median {statistics.median(times) * 1000:.1f} ms, "
          f"min {min(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms over {cycles} cycles "
          "(target <= 50 ms; the max is a cycle where the 5m forecast group is due)")


if __name__ == "__main__":
    main()
