"""Maintenance windows: one-off or recurring, scoped by label matchers.

A window in force silences notifications and escalation for the alerts it
matches; tickets are still opened, counted and resolved (recording goes on,
as in Zabbix's "with data collection" maintenance). Pure: ``now`` is passed in.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from agent.calendar import WEEKDAYS, WorkingHours
from collector.schema import compile_regex

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


@dataclass(frozen=True)
class Matcher:
    """A Prometheus-style label matcher: ``name=value``, ``!=``, ``=~`` or ``!~`` (RE2, anchored)."""

    name: str
    op: str
    value: str
    regex: Any = field(default=None, compare=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = self.regex.fullmatch(v) is not None
        return hit if self.op == "=~" else not hit


def parse_matcher(text: str) -> Matcher:
    """Parse ``instance=~"db-.*"``; ValueError says what is wrong."""
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f'matcher must look like name="value" or name=~"regex"; got {text!r}')
    name, op, value = m.groups()
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = compile_regex(value)
        except Exception as e:  # re2.error and re.error share no base class
            raise ValueError(f"invalid regular expression {value!r}: {e}") from None
    return Matcher(name, op, value, regex)


@dataclass(frozen=True)
class Window:
    """A maintenance window. One-off: ``start``/``end`` instants. Recurring: ``hours`` on
    ``weekdays`` (all days if empty) in ``tz``; hours may cross midnight (``22:00-02:00``)."""

    name: str
    matchers: tuple[Matcher, ...] = ()
    start: float | None = None
    end: float | None = None
    weekdays: frozenset[int] = frozenset()
    hours: tuple[int, int] | None = None
    tz: ZoneInfo | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def in_force(self, now: float) -> bool:
        if self.hours is None:
            return (self.start is None or now >= self.start) and (self.end is None or now < self.end)
        if (self.start is not None and now < self.start) or (self.end is not None and now >= self.end):
            return False
        local = dt.datetime.fromtimestamp(now, self.tz)
        minute = local.hour * 60 + local.minute
        a, b = self.hours
        if a < b:
            return a <= minute < b and self._on(local.date())
        # crosses midnight: the evening part belongs to today, the morning part to yesterday
        if minute >= a:
            return self._on(local.date())
        return minute < b and self._on(local.date() - dt.timedelta(days=1))

    def _on(self, day: dt.date) -> bool:
        return not self.weekdays or day.weekday() in self.weekdays


def make_window(
    name: str,
    matchers: Iterable[str] = (),
    start: str = "",
    end: str = "",
    weekdays: Iterable[str] = (),
    hours: str = "",
    timezone: str = "",
) -> Window:
    """Build a window from config-style strings; ValueError names the first bad value."""
    from agent.calendar import local_zone

    tz = ZoneInfo(timezone) if timezone else local_zone()
    days = set()
    for w in weekdays:
        if w not in WEEKDAYS:
            raise ValueError(f"unknown weekday {w!r} (use {', '.join(WEEKDAYS)})")
        days.add(WEEKDAYS.index(w))
    span = None
    if hours:
        a, sep, b = hours.partition("-")
        if not sep:
            raise ValueError(f"hours must look like 02:00-04:00; got {hours!r}")
        wa = WorkingHours.parse(f"{a}-24:00").start
        wb = WorkingHours.parse(f"00:00-{b}").end if b.strip() not in ("00:00", "0:00") else 24 * 60
        if wa == wb:
            raise ValueError(f"empty maintenance hours {hours!r}")
        span = (wa, wb)
    t0 = _instant(start, tz) if start else None
    t1 = _instant(end, tz) if end else None
    if span is None and (t0 is None or t1 is None):
        raise ValueError("a maintenance window needs start and end, or recurring hours")
    if t0 is not None and t1 is not None and t1 <= t0:
        raise ValueError("maintenance window ends before it starts")
    return Window(name, tuple(parse_matcher(m) for m in matchers), t0, t1, frozenset(days), span, tz)


def _instant(text: str, tz: ZoneInfo) -> float:
    try:
        d = dt.datetime.fromisoformat(str(text))
    except ValueError:
        raise ValueError(f"times must be ISO 8601, e.g. 2025-01-02T20:00:00+08:00; got {text!r}") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=tz)
    return d.timestamp()


def silencing(windows: Iterable[Window], labels: Mapping[str, str], now: float) -> Window | None:
    """The first window in force at ``now`` that matches ``labels`` (None: not silenced)."""
    for w in windows:
        if w.in_force(now) and w.matches(labels):
            return w
    return None
