"""Kernel activity from /proc/stat, as node_exporter's stat collector."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from collector.model import Sample, counter, gauge
from collector.procfs import read_proc_stat
from collector.registry import CollectorFailure, Context, register
from collector.schema import Duration

BOOT_TIME = gauge("node_boot_time_seconds", "Node boot time, in unixtime.")
CONTEXT_SWITCHES = counter("node_context_switches_total", "Total number of context switches.")
FORKS = counter("node_forks_total", "Total number of forks.")
INTR = counter("node_intr_total", "Total number of interrupts serviced.")
PROCS_RUNNING = gauge("node_procs_running", "Number of processes in runnable state.")
PROCS_BLOCKED = gauge("node_procs_blocked", "Number of processes blocked waiting for I/O to complete.")
SOFTIRQS = counter("node_softirqs_total", "Number of softirq calls.")

# Column order of the "softirq" line of /proc/stat (after its total).
SOFTIRQ_VECTORS = (
    "hi", "timer", "net_tx", "net_rx", "block", "block_iopoll", "tasklet", "sched", "hrtimer", "rcu",
)


@dataclass(frozen=True)
class StatConfig:
    """Options of the stat collector."""

    enabled: bool | None = None
    # own collection interval and deadline; unset: schedule.interval and schedule.timeout
    interval: Duration | None = None
    timeout: Duration | None = None
    # also report node_softirqs_total{vector} (node_exporter's --collector.stat.softirq)
    softirq: bool = False


@register("stat", config=StatConfig)
class StatCollector:
    """Boot time, context switches, forks, interrupts, running and blocked processes."""

    name = "stat"

    def __init__(self, config: StatConfig):
        self.config = config

    def collect(self, ctx: Context) -> Iterator[Sample]:
        st = read_proc_stat(ctx.paths.proc)
        if st.btime is None or st.ctxt is None:
            raise CollectorFailure(f"{ctx.paths.proc / 'stat'}: no btime or ctxt line")
        yield BOOT_TIME.sample(st.btime)
        yield CONTEXT_SWITCHES.sample(st.ctxt)
        if st.processes is not None:
            yield FORKS.sample(st.processes)
        if st.intr is not None:
            yield INTR.sample(st.intr)
        if st.procs_running is not None:
            yield PROCS_RUNNING.sample(st.procs_running)
        if st.procs_blocked is not None:
            yield PROCS_BLOCKED.sample(st.procs_blocked)
        if self.config.softirq:
            for vector, n in zip(SOFTIRQ_VECTORS, st.softirq[1:]):
                yield SOFTIRQS.sample(n, vector=vector)
