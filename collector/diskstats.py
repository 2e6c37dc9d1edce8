"""Block device I/O from /proc/diskstats, as node_exporter's diskstats collector."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from collector.model import Desc, Sample, counter, gauge
from collector.procfs import read_text
from collector.registry import CollectorFailure, Context, register
from collector.schema import Duration, Regex, compile_regex

# node_exporter 1.5's --collector.diskstats.device-exclude: partitions and
# RAM/loop/floppy devices, whose I/O is already counted on the whole disk.
DEFAULT_DEVICE_EXCLUDE = Regex(r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$")

SECTOR = 512.0  # /proc/diskstats counts 512-byte sectors whatever the device's own size
MS = 0.001

# One entry per /proc/diskstats column after the device name: (family, scale).
_C = counter
_SPENT = "This is the total number of seconds spent by"
COLUMNS: tuple[tuple[Desc, float], ...] = (
    (_C("node_disk_reads_completed_total", "The total number of reads completed successfully."), 1),
    (_C("node_disk_reads_merged_total", "The total number of reads merged."), 1),
    (_C("node_disk_read_bytes_total", "The total number of bytes read successfully."), SECTOR),
    (_C("node_disk_read_time_seconds_total", "The total number of seconds spent by all reads."), MS),
    (_C("node_disk_writes_completed_total", "The total number of writes completed successfully."), 1),
    (_C("node_disk_writes_merged_total", "The number of writes merged."), 1),
    (_C("node_disk_written_bytes_total", "The total number of bytes written successfully."), SECTOR),
    (_C("node_disk_write_time_seconds_total", f"{_SPENT} all writes."), MS),
    (gauge("node_disk_io_now", "The number of I/Os currently in progress."), 1),
    (_C("node_disk_io_time_seconds_total", "Total seconds spent doing I/Os."), MS),
    (_C("node_disk_io_time_weighted_seconds_total", "The weighted # of seconds spent doing I/Os."), MS),
    (_C("node_disk_discards_completed_total", "The total number of discards completed successfully."), 1),
    (_C("node_disk_discards_merged_total", "The total number of discards merged."), 1),
    (_C("node_disk_discarded_sectors_total", "The total number of sectors discarded successfully."), 1),
    (_C("node_disk_discard_time_seconds_total", f"{_SPENT} all discards."), MS),
    (_C("node_disk_flush_requests_total", "The total number of flush requests completed successfully"), 1),
    (
        _C(
            "node_disk_flush_requests_time_seconds_total",
            f"{_SPENT} all flush requests.",
        ),
        MS,
    ),
)
INFO = gauge("node_disk_info", "Info of /sys/block/<block_device>.")

# udev property -> node_disk_info label
UDEV_LABELS = {"ID_MODEL": "model", "ID_PATH": "path", "ID_REVISION": "revision",
               "ID_SERIAL_SHORT": "serial", "ID_WWN": "wwn"}


class DiskStats(NamedTuple):
    """One line of /proc/diskstats: device numbers, name and its counters (4 to 17 of them)."""

    major: int
    minor: int
    device: str
    counters: tuple[int, ...]


def parse_diskstats(text: str) -> list[DiskStats]:
    """Parse /proc/diskstats; a short or non-numeric line raises ValueError naming it."""
    out: list[DiskStats] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) < 7:
                raise ValueError
            out.append(DiskStats(int(parts[0]), int(parts[1]), parts[2], tuple(int(x) for x in parts[3:20])))
        except ValueError:
            raise ValueError(f"line {lineno}: malformed diskstats line {line[:80]!r}") from None
    return out


def parse_udev_properties(text: str) -> dict[str, str]:
    """The ``E:KEY=value`` properties of a udev database entry (/run/udev/data/b8:0)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("E:"):
            key, _, value = line[2:].partition("=")
            out[key] = value
    return out


@dataclass(frozen=True)
class DiskstatsConfig:
    """Options of the diskstats collector."""

    enabled: bool | None = None
    # own collection interval and deadline; unset: schedule.interval and schedule.timeout
    interval: Duration | None = None
    timeout: Duration | None = None
    # devices not reported (RE2); the default skips partitions, RAM and loop devices
    device_exclude: Regex = DEFAULT_DEVICE_EXCLUDE
    # if set, only devices matching it are reported (and device_exclude still applies)
    device_include: Regex | None = None


@register("diskstats", config=DiskstatsConfig)
class DiskstatsCollector:
    """Reads, writes, bytes, time and queue of each block device (node_disk_*)."""

    name = "diskstats"

    def __init__(self, config: DiskstatsConfig):
        self.config = config
        self._exclude = compile_regex(config.device_exclude)
        self._include = compile_regex(config.device_include) if config.device_include else None

    def collect(self, ctx: Context) -> Iterator[Sample]:
        path = ctx.paths.proc / "diskstats"
        try:
            disks = parse_diskstats(read_text(path))
        except ValueError as e:
            raise CollectorFailure(f"{path}: {e}") from e
        udev = ctx.paths.run / "udev" / "data"
        for d in disks:
            if self._exclude.search(d.device) or (self._include and not self._include.search(d.device)):
                continue
            yield INFO.sample(1, self._info_labels(udev, d))
            lab = {"device": d.device}
            for (desc, scale), value in zip(COLUMNS, d.counters):
                yield desc.sample(value * scale, lab)

    @staticmethod
    def _info_labels(udev: Path, d: DiskStats) -> dict[str, str]:
        labels = {"device": d.device, "major": str(d.major), "minor": str(d.minor)}
        labels.update(dict.fromkeys(UDEV_LABELS.values(), ""))
        try:
            props = parse_udev_properties((udev / f"b{d.major}:{d.minor}").read_text(errors="replace"))
        except OSError:  # no udev database (containers, minimal systems): labels stay empty
            return labels
        for key, label in UDEV_LABELS.items():
            labels[label] = props.get(key, "")
        return labels
