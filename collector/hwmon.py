"""Temperatures, fan speeds and voltages from /sys/class/hwmon, as node_exporter's hwmon collector.

Chips are named as node_exporter names them (``platform_coretemp_0``,
``pci0000:00_0000:00:18_3``, or the chip's ``name`` file), so dashboards
and alert rules built on ``node_hwmon_temp_celsius{chip,sensor}`` work.
Only temperature, fan and voltage sensors are read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from collector.model import Desc, Sample, gauge
from collector.procfs import read_attr
from collector.registry import Context, EmptyConfig, NoData, register

CHIP_NAMES = gauge("node_hwmon_chip_names", "Annotation metric for human-readable chip names")
SENSOR_LABEL = gauge("node_hwmon_sensor_label", "Label for given chip and sensor")

_INVALID = re.compile(r"[^a-z0-9:_]")
_SENSOR_FILE = re.compile(r"^(temp|fan|in)([0-9]+)_([a-z_]+)$")
_DESCS: dict[str, Desc] = {}


def clean_name(name: str) -> str:
    """node_exporter's cleanMetricName: lower case, [^a-z0-9:_] -> _, trimmed of _."""
    return _INVALID.sub("_", name.strip().lower()).strip("_")


def chip_name(hwmon_dir: Path) -> str:
    """The stable name node_exporter gives a hwmon chip.

    hwmonN numbering follows module load order, so the device path is preferred
    (``<bus type>_<device>``), then the chip's ``name`` file, then ``hwmonN``.
    """
    dev = hwmon_dir / "device"
    if dev.exists():
        real = Path(os.path.realpath(dev))
        dev_name, dev_type = clean_name(real.name), clean_name(real.parent.name)
        if dev_type and dev_name:
            return f"{dev_type}_{dev_name}"
        if dev_name:
            return dev_name
    name = clean_name(read_attr(str(hwmon_dir / "name")) or "")
    return name or clean_name(Path(os.path.realpath(hwmon_dir)).name)


def _family(sensor_type: str, element: str) -> tuple[Desc, float]:
    """Metric family and scale of one sensor file (``temp1_max`` -> node_hwmon_temp_max_celsius)."""
    name = f"node_hwmon_{sensor_type}" + ("" if element == "input" else f"_{element}")
    if sensor_type == "temp" and element != "type":
        name, help, scale = name + "_celsius", f"Hardware monitor for temperature ({element})", 0.001
    elif sensor_type == "in":
        name, help, scale = name + "_volts", f"Hardware monitor for voltage ({element})", 0.001
    elif sensor_type == "fan" and element in ("input", "min", "max", "target"):
        name, help, scale = name + "_rpm", f"Hardware monitor for fan revolutions per minute ({element})", 1.0
    else:
        help, scale = f"Hardware monitor {sensor_type} element {element}", 1.0
    d = _DESCS.get(name)
    if d is None:
        d = _DESCS[name] = gauge(name, help)
    return d, scale


def chip_samples(hwmon_dir: Path) -> Iterator[Sample]:
    """The samples of one hwmonN directory (and of its ``device/`` where old drivers put files)."""
    chip = chip_name(hwmon_dir)
    raw_name = read_attr(str(hwmon_dir / "name"))
    if raw_name:
        yield CHIP_NAMES.sample(1, chip=chip, chip_name=clean_name(raw_name))
    files: dict[str, Path] = {}
    for d in (hwmon_dir / "device", hwmon_dir):  # the hwmonN directory itself wins
        try:
            for entry in os.scandir(d):
                if _SENSOR_FILE.match(entry.name):
                    files[entry.name] = Path(entry.path)
        except OSError:
            continue
    for fname in sorted(files):
        m = _SENSOR_FILE.match(fname)
        assert m is not None
        sensor = f"{m.group(1)}{m.group(2)}"
        element = m.group(3)
        text = read_attr(str(files[fname]))
        if text is None:
            continue
        if element == "label":
            yield SENSOR_LABEL.sample(1, chip=chip, label=text, sensor=sensor)
            continue
        try:
            value = float(text)
        except ValueError:
            continue  # a driver's non-numeric attribute: not a reading
        desc, scale = _family(m.group(1), element)
        yield desc.sample(value * scale, chip=chip, sensor=sensor)


@register("hwmon", config=EmptyConfig)
class HwmonCollector:
    """Temperatures, fans and voltages of hardware monitoring chips (node_hwmon_*)."""

    name = "hwmon"

    def __init__(self, config: EmptyConfig):
        self.config = config

    def collect(self, ctx: Context) -> Iterator[Sample]:
        base = ctx.paths.sys / "class" / "hwmon"
        try:
            dirs = sorted(base.iterdir())
        except OSError:
            dirs = []
        if not dirs:
            raise NoData(f"no hardware monitoring chips under {base}")
        for d in dirs:
            yield from chip_samples(d)
