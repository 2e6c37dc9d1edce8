"""Shared helpers for the log collector tests: build a collector from YAML, run it, read values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collector.model import Evidence, Sample
from collector.registry import Context, KeyValue, MemoryKeyValue
from collector.schema import Builder, ConfigError, compose


def build(cls: type, text: str, file: str = "config.yaml") -> Any:
    """Validate a YAML snippet into ``cls`` as the config loader would."""
    b = Builder(file)
    obj = b.build(cls, compose(text, file))
    if b.problems:
        raise ConfigError(b.problems)
    return obj


@dataclass
class Clock:
    """A settable clock (time is passed in, never read)."""

    t: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Run:
    samples: list[Sample]
    evidence: list[Evidence]

    def value(self, name: str, **labels: str) -> float | None:
        for s in self.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        return None

    def total(self, name: str, **labels: str) -> float:
        return sum(
            s.value for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )


@dataclass
class Harness:
    """Runs one collector against one durable state, like the daemon does cycle after cycle."""

    collector: Any
    state: KeyValue = field(default_factory=MemoryKeyValue)
    clock: Clock = field(default_factory=Clock)

    def run(self, advance: float = 15.0) -> Run:
        self.clock.t += advance
        ctx = Context(config=None, clock=self.clock, state=self.state)
        samples = list(self.collector.collect(ctx))
        return Run(samples, list(ctx.evidence))
