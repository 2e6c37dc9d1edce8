"""The system clock and time zone, as node_exporter's time collector."""

from __future__ import annotations

import time as _time
from collections.abc import Iterator

from collector.model import Sample, gauge
from collector.procfs import read_attr
from collector.registry import Context, EmptyConfig, register

NOW = gauge("node_time_seconds", "System time in seconds since epoch (1970).")
ZONE_OFFSET = gauge("node_time_zone_offset_seconds", "System time zone offset in seconds.")
CLOCKSOURCE_AVAILABLE = gauge(
    "node_time_clocksource_available_info",
    "Available clocksources read from '/sys/devices/system/clocksource'.",
)
CLOCKSOURCE_CURRENT = gauge(
    "node_time_clocksource_current_info", "Current clocksource read from '/sys/devices/system/clocksource'."
)


def zone_offset(now: float) -> tuple[str, int]:
    """The local time zone's abbreviation and UTC offset (seconds) at ``now``."""
    t = _time.localtime(now)
    return t.tm_zone, t.tm_gmtoff


@register("time", config=EmptyConfig)
class TimeCollector:
    """The system time, the time zone offset and the kernel's clock sources."""

    name = "time"

    def __init__(self, config: EmptyConfig):
        self.config = config

    def collect(self, ctx: Context) -> Iterator[Sample]:
        now = ctx.now()
        yield NOW.sample(now)
        zone, offset = zone_offset(now)
        yield ZONE_OFFSET.sample(offset, time_zone=zone)
        base = ctx.paths.sys / "devices" / "system" / "clocksource"
        try:
            sources = sorted(p for p in base.iterdir() if p.name.startswith("clocksource"))
        except OSError:
            return  # no clocksource directory (containers): the clock itself is still reported
        for src in sources:
            device = src.name[len("clocksource"):]
            for name in (read_attr(f"{src}/available_clocksource") or "").split():
                yield CLOCKSOURCE_AVAILABLE.sample(1, clocksource=name, device=device)
            current = read_attr(f"{src}/current_clocksource")
            if current:
                yield CLOCKSOURCE_CURRENT.sample(1, clocksource=current, device=device)
