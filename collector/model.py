"""The one data model: Prometheus samples, their metric descriptions, and evidence."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

MetricType = Literal["counter", "gauge", "untyped", "info"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one series at one time (the Prometheus data model)."""

    name: str
    labels: Mapping[str, str]
    value: float
    ts: float = 0.0

    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """A hashable identity of the series (name plus sorted labels)."""
        return (self.name, tuple(sorted(self.labels.items())))


@dataclass(frozen=True, slots=True)
class Evidence:
    """What explains a series: matched log lines, a config diff, the backup file found."""

    kind: str
    text: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ts: float = 0.0


@dataclass(frozen=True, slots=True)
class Desc:
    """Name, type and help text of one metric family.

    Collectors declare their families at module level; ``Desc.sample`` builds
    samples so the name is written once.
    """

    name: str
    type: MetricType
    help: str

    def sample(self, value: float, labels: Mapping[str, str] | None = None, **kw: str) -> Sample:
        if labels is None:
            return Sample(self.name, kw, float(value))
        if kw:
            labels = {**labels, **kw}
        return Sample(self.name, labels, float(value))


# Static metadata keyed by metric name (filled by Desc declarations at import).
CATALOG: dict[str, Desc] = {}


def declare(name: str, type: MetricType, help: str) -> Desc:
    """Declare a metric family once, at module level."""
    d = Desc(name, type, help)
    CATALOG.setdefault(name, d)
    return d


def counter(name: str, help: str) -> Desc:
    return declare(name, "counter", help)


def gauge(name: str, help: str) -> Desc:
    return declare(name, "gauge", help)


def describe(name: str) -> Desc:
    """The description of a metric family; undeclared names are untyped."""
    return CATALOG.get(name) or Desc(name, "untyped", "")
