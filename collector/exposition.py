"""Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from collector.model import Sample, describe

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def render(samples: Iterable[Sample]) -> str:
    """Render samples grouped by family, families sorted by name, series sorted by labels."""
    fams: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for s in samples:
        fams.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    out: list[str] = []
    for name in sorted(fams):
        d = describe(name)
        if d.help:
            out.append(f"# HELP {name} {_escape_help(d.help)}")
        out.append(f"# TYPE {name} {'gauge' if d.type == 'info' else d.type}")
        for labels in sorted(fams[name]):
            if labels:
                lab = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
                out.append(f"{name}{{{lab}}} {format_value(fams[name][labels])}")
            else:
                out.append(f"{name} {format_value(fams[name][labels])}")
    out.append("")
    return "\n".join(out)
