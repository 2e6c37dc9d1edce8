"""CPU time per CPU and mode from /proc/stat, as node_exporter's cpu collector."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from collector.model import Sample, counter
from collector.procfs import USER_HZ, read_proc_stat
from collector.registry import Context, register
from collector.schema import Duration

SECONDS = counter("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.")
GUEST = counter("node_cpu_guest_seconds_total", "Seconds the CPUs spent in guests (VMs) for each mode.")

# /proc/stat column order; guest time is also counted in user/nice, so
# node_exporter reports it as a separate family rather than as modes.
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
GUEST_MODES = ("user", "nice")


@dataclass(frozen=True)
class CpuConfig:
    """Options of the cpu collector."""

    enabled: bool | None = None
    # own collection interval and deadline; unset: schedule.interval and schedule.timeout
    interval: Duration | None = None
    timeout: Duration | None = None
    # also report node_cpu_guest_seconds_total (node_exporter's --collector.cpu.guest)
    guest: bool = True


@register("cpu", config=CpuConfig)
class CpuCollector:
    """Seconds each CPU spent in each mode (node_cpu_seconds_total)."""

    name = "cpu"

    def __init__(self, config: CpuConfig):
        self.config = config
        # Last values reported per CPU: some kernels let counters step back a
        # little (iowait, CPU hotplug); a counter must never decrease.
        self._last: dict[str, list[float]] = {}

    def collect(self, ctx: Context) -> Iterator[Sample]:
        st = read_proc_stat(ctx.paths.proc)
        for name, jiffies in st.cpus.items():
            cpu = name[3:]
            now = [j / USER_HZ for j in jiffies[:10]]
            now += [0.0] * (10 - len(now))
            prev = self._last.get(name)
            if prev is not None and now[3] >= prev[3]:
                # idle going back means the CPU was re-plugged: start afresh
                now = [max(a, b) for a, b in zip(now, prev)]
            self._last[name] = now
            for i, mode in enumerate(MODES):
                yield SECONDS.sample(now[i], cpu=cpu, mode=mode)
            if self.config.guest:
                yield GUEST.sample(now[8], cpu=cpu, mode="user")
                yield GUEST.sample(now[9], cpu=cpu, mode="nice")
