"""Load averages, as node_exporter's loadavg collector."""

from __future__ import annotations

from collections.abc import Iterator

from collector.model import Sample, gauge
from collector.procfs import read_text
from collector.registry import CollectorFailure, Context, EmptyConfig, register

LOAD1 = gauge("node_load1", "1m load average.")
LOAD5 = gauge("node_load5", "5m load average.")
LOAD15 = gauge("node_load15", "15m load average.")


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """Parse /proc/loadavg: ``0.12 0.30 0.25 1/123 4567``."""
    parts = text.split()
    if len(parts) < 3:
        raise ValueError(f"unexpected /proc/loadavg content: {text!r}")
    return float(parts[0]), float(parts[1]), float(parts[2])


@register("load", config=EmptyConfig)
class LoadCollector:
    """Load averages over 1, 5 and 15 minutes."""

    name = "load"

    def __init__(self, config: EmptyConfig):
        self.config = config

    def collect(self, ctx: Context) -> Iterator[Sample]:
        path = ctx.paths.proc / "loadavg"
        try:
            l1, l5, l15 = parse_loadavg(read_text(path))
        except ValueError as e:
            raise CollectorFailure(f"{path}: {e}") from e
        yield LOAD1.sample(l1)
        yield LOAD5.sample(l5)
        yield LOAD15.sample(l15)
