"""Fault levels: from a rule's severity, thresholds or impact x urgency to P1..P4 (SPEC §2).

Everything here is pure; the tables are configuration (``rules:`` section)
with the defaults below.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rules.model import LEVELS

# Prometheus' conventional ``severity`` label -> level (configurable).
DEFAULT_SEVERITY_LEVELS: Mapping[str, str] = {
    "critical": "P1",
    "error": "P2",
    "major": "P2",
    "warning": "P3",
    "info": "P4",
}

IMPACTS = ("production", "important", "test")
# high: down or stopped; medium: degraded; low: limited or local; planning: trend, advisory
URGENCIES = ("high", "medium", "low", "planning")

# impact (the target's ``tier``) x urgency (the rule's ``impact.urgency``) -> level.
# Rows reproduce SPEC §2: on a production system, down/stopped (high) is P1,
# degraded (medium) P2, limited (low) P3, advisory (planning) P4; the same
# fault on an important but non-production system is one level lower at the
# top; a test system never starts the emergency process (at worst P3).
DEFAULT_IMPACT_MATRIX: Mapping[str, Mapping[str, str]] = {
    "production": {"high": "P1", "medium": "P2", "low": "P3", "planning": "P4"},
    "important": {"high": "P2", "medium": "P2", "low": "P3", "planning": "P4"},
    "test": {"high": "P3", "medium": "P3", "low": "P4", "planning": "P4"},
}

# Impact of a target whose series carry no ``tier`` label.
DEFAULT_TIER = "production"

_OPS: Mapping[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True, slots=True)
class Threshold:
    """A comparison of a series value against a number: ``> 0.95``."""

    op: str
    value: float

    def holds(self, v: float) -> bool:
        """Whether ``v`` satisfies the comparison (NaN never does, as in PromQL)."""
        if math.isnan(v):
            return False
        return _OPS[self.op](v, self.value)

    def __str__(self) -> str:
        return f"{self.op} {_number(self.value)}"


def parse_threshold(text: str) -> Threshold:
    """Parse ``"> 0.95"`` / ``"<=10"``; raise ValueError with a message for the user."""
    s = str(text).strip()
    for op in (">=", "<=", "==", "!=", ">", "<"):
        if s.startswith(op):
            num = s[len(op):].strip()
            try:
                value = float(num)
            except ValueError:
                raise ValueError(f"threshold {text!r}: {num!r} is not a number") from None
            return Threshold(op, value)
    raise ValueError(f"threshold {text!r} must be a comparison and a number, e.g. \"> 0.95\"")


def _number(v: float) -> str:
    return str(int(v)) if v == int(v) and abs(v) < 1e15 else repr(v)


def rank(level: str, order: Sequence[str] = LEVELS) -> int:
    """Position of a level, worst first (P1 -> 0); unknown levels sort last."""
    try:
        return order.index(level)
    except ValueError:
        return len(order)


def worst(levels: Iterable[str], order: Sequence[str] = LEVELS) -> str | None:
    """The worst of some levels, or None when there are none."""
    best: str | None = None
    for lv in levels:
        if best is None or rank(lv, order) < rank(best, order):
            best = lv
    return best


def level_for_value(
    value: float, thresholds: Sequence[tuple[str, Threshold]], order: Sequence[str] = LEVELS
) -> str | None:
    """The worst level whose threshold holds for ``value``; None when none holds."""
    return worst((lv for lv, th in thresholds if th.holds(value)), order)


def level_for_severity(severity: str | None, mapping: Mapping[str, str]) -> str | None:
    """Level of a Prometheus ``severity`` label (case-insensitive); None when unmapped."""
    if not severity:
        return None
    return mapping.get(severity) or mapping.get(severity.lower())


def severity_for_level(level: str, mapping: Mapping[str, str]) -> str:
    """The first severity that maps to ``level`` (for export); the level itself when none does."""
    for sev, lv in mapping.items():
        if lv == level:
            return sev
    return level


def level_for_impact(
    tier: str | None,
    urgency: str,
    matrix: Mapping[str, Mapping[str, str]],
    default_tier: str = DEFAULT_TIER,
) -> str | None:
    """matrix[tier][urgency]; an unknown or missing tier counts as ``default_tier``."""
    row = matrix.get(tier or default_tier) or matrix.get(default_tier) or {}
    return row.get(urgency)


def check_matrix(
    matrix: Mapping[str, Mapping[str, str]], order: Sequence[str] = LEVELS
) -> list[tuple[str, str]]:
    """Problems of an impact matrix as (key path, message): unknown levels, ragged rows."""
    out: list[tuple[str, str]] = []
    urgencies: set[str] | None = None
    for impact, row in matrix.items():
        for urgency, lv in row.items():
            if lv not in order:
                out.append((f"{impact}.{urgency}", f"unknown level {lv!r} (use one of {', '.join(order)})"))
        if urgencies is None:
            urgencies = set(row)
        elif set(row) != urgencies:
            names = ", ".join(sorted(urgencies))
            out.append((impact, f"must name the same urgencies as the other rows: {names}"))
    return out


def flap_percent(history: Sequence[bool]) -> float:
    """Nagios' weighted percent state change over a window of results (oldest first).

    Each change between consecutive results counts with a weight rising
    linearly from 0.8 (oldest) to 1.2 (newest), so recent changes weigh
    more; 21 results give 20 possible changes and 100 % means every result
    differed from the previous one.
    """
    n = len(history) - 1
    if n < 1:
        return 0.0
    total = 0.0
    for i in range(n):
        if history[i] != history[i + 1]:
            weight = 0.8 + 0.4 * (i / (n - 1)) if n > 1 else 1.0
            total += weight
    return 100.0 * total / n
