"""Virtual memory statistics from /proc/vmstat, as node_exporter's vmstat collector.

node_exporter 1.5 exports the fields whose names match ``--collector.vmstat.fields``
(page faults, paging, swapping, OOM kills by default) as *untyped* families
``node_vmstat_<field>``; so do we, names, types and help text alike, so rules
written for node_exporter (``rate(node_vmstat_pswpin[5m])``) work unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from collector.model import Desc, Sample, declare
from collector.procfs import read_text
from collector.registry import CollectorFailure, Context, register
from collector.schema import Duration, Regex, compile_regex

# node_exporter's default for --collector.vmstat.fields
DEFAULT_FIELDS = Regex(r"^(oom_kill|pgpg|pswp|pg.*fault).*")

_DESCS: dict[str, Desc] = {}


def parse_vmstat(text: str) -> dict[str, float]:
    """Parse /proc/vmstat (``pgfault 17018708`` per line) into {field: value}.

    A line that is not a name and a number raises ValueError naming the line.
    """
    out: dict[str, float] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ValueError(f"line {lineno}: malformed vmstat line {line[:80]!r}")
        try:
            out[parts[0]] = float(parts[1])
        except ValueError:
            raise ValueError(f"line {lineno}: invalid value in vmstat line {line[:80]!r}") from None
    return out


def desc_for(field: str) -> Desc:
    """The (untyped, as in node_exporter) family of one vmstat field."""
    d = _DESCS.get(field)
    if d is None:
        d = _DESCS[field] = declare(
            f"node_vmstat_{field}", "untyped", f"/proc/vmstat information field {field}."
        )
    return d


@dataclass(frozen=True)
class VmstatConfig:
    """Options of the vmstat collector."""

    enabled: bool | None = None
    # own collection interval and deadline; unset: schedule.interval and schedule.timeout
    interval: Duration | None = None
    timeout: Duration | None = None
    # /proc/vmstat fields to export (RE2, searched in the field name); node_exporter's default
    fields: Regex = DEFAULT_FIELDS


@register("vmstat", config=VmstatConfig)
class VmstatCollector:
    """Page faults, paging, swapping and OOM kills (node_vmstat_*)."""

    name = "vmstat"

    def __init__(self, config: VmstatConfig):
        self.config = config
        self._fields = compile_regex(config.fields)
        # field name -> exported?; the kernel's field names never change while it runs
        self._wanted: dict[str, bool] = {}

    def collect(self, ctx: Context) -> Iterator[Sample]:
        path = ctx.paths.proc / "vmstat"
        try:
            stats = parse_vmstat(read_text(path))
        except ValueError as e:
            raise CollectorFailure(f"{path}: {e}") from e
        for field, value in stats.items():
            wanted = self._wanted.get(field)
            if wanted is None:
                wanted = self._wanted[field] = self._fields.search(field) is not None
            if wanted:
                yield desc_for(field).sample(value)
