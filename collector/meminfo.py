"""Memory and swap from /proc/meminfo, with node_exporter's metric names."""

from __future__ import annotations

import re
from collections.abc import Iterator

from collector.model import Desc, Sample, counter, gauge
from collector.procfs import read_text
from collector.registry import CollectorFailure, Context, EmptyConfig, register

_PAREN = re.compile(r"\((.*)\)")
_DESCS: dict[str, Desc] = {}


def parse_meminfo(text: str) -> dict[str, float]:
    """Parse /proc/meminfo into node_exporter's keys and units.

    ``Active(anon): 10 kB`` becomes ``Active_anon_bytes`` = 10240; a line
    without a unit (``HugePages_Total: 0``) keeps its name and value. A
    malformed line raises ValueError naming it.
    """
    out: dict[str, float] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (2, 3) or not parts[0].endswith(":"):
            raise ValueError(f"line {lineno}: malformed meminfo line {line[:80]!r}")
        try:
            value = float(parts[1])
        except ValueError:
            raise ValueError(f"line {lineno}: invalid value in meminfo line {line[:80]!r}") from None
        key = parts[0][:-1]
        if "(" in key:
            key = _PAREN.sub(r"_\1", key)
        if len(parts) == 3:  # the kernel's only unit here is kB
            value *= 1024
            key += "_bytes"
        out[key] = value
    return out


def desc_for(key: str) -> Desc:
    """The metric family of one meminfo key (``MemTotal_bytes`` -> node_memory_MemTotal_bytes)."""
    d = _DESCS.get(key)
    if d is None:
        make = counter if key.endswith("_total") else gauge
        d = _DESCS[key] = make(f"node_memory_{key}", f"Memory information field {key}.")
    return d


@register("meminfo", config=EmptyConfig)
class MeminfoCollector:
    """Memory and swap sizes and usage (node_memory_*_bytes)."""

    name = "meminfo"

    def __init__(self, config: EmptyConfig):
        self.config = config

    def collect(self, ctx: Context) -> Iterator[Sample]:
        path = ctx.paths.proc / "meminfo"
        try:
            info = parse_meminfo(read_text(path))
        except ValueError as e:
            raise CollectorFailure(f"{path}: {e}") from e
        for key, value in info.items():
            yield desc_for(key).sample(value)
