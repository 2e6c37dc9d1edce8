"""The check calendar: which named checks are due, and when the next one is. Pure.

A named check (morning 08:00, evening 18:30, weekly Monday 09:00) happens at
a wall-clock time in a time zone, on some weekdays. Everything here takes
``now`` (Unix seconds) and the last scheduled time each check ran for, and
returns a :class:`Plan`; nothing reads the clock or the store.

Rules (as APScheduler's ``misfire_grace_time`` and coalescing):

* a check is due when its latest occurrence at or before ``now`` is later
  than the occurrence it last ran for;
* if that occurrence is more than ``grace`` seconds in the past (the agent
  was down), it is skipped, not run late;
* several missed occurrences coalesce into one run, for the latest one --
  never a burst;
* a check that has never run has no missed occurrences: its first run is
  its next occurrence (the daemon passes the agent's first start time as
  the "last run" of such checks, so downtime after installation counts).

DST: occurrences are computed per local date with ``zoneinfo``. A time that
does not exist that day (the spring-forward gap) runs at the same
wall-clock offset before the change, i.e. shifted forward by the gap; a
time that exists twice (fall back) runs once, at its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """A named check: ``hour:minute`` local time on ``days`` (weekday numbers, Monday 0; empty: daily)."""

    name: str
    hour: int
    minute: int
    days: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, name: str, at: str, days: Iterable[str] = ()) -> CheckSpec:
        """From the config form: ``at="08:00"``, ``days=["mon"]``."""
        h, _, m = at.partition(":")
        return cls(name, int(h), int(m), frozenset(WEEKDAYS.index(d) for d in days))

    def on(self, day: date) -> bool:
        return not self.days or day.weekday() in self.days


@dataclass(frozen=True, slots=True)
class Due:
    """A check to run now, for the occurrence ``scheduled`` (Unix seconds)."""

    name: str
    scheduled: float
    late: float


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run now, what was skipped as too late, and when to look again."""

    due: tuple[Due, ...]
    skipped: tuple[Due, ...]
    next_at: float | None


def occurrence(spec: CheckSpec, day: date, tz: tzinfo) -> float:
    """Unix time of ``spec`` on the local date ``day`` (see the module doc for DST)."""
    return datetime.combine(day, time(spec.hour, spec.minute), tzinfo=tz).timestamp()


def previous_occurrence(spec: CheckSpec, now: float, tz: tzinfo) -> float | None:
    """The latest occurrence at or before ``now`` (within the last 8 days)."""
    today = datetime.fromtimestamp(now, tz).date()
    for back in range(0, 9):
        day = today - timedelta(days=back)
        if spec.on(day):
            t = occurrence(spec, day, tz)
            if t <= now:
                return t
    return None


def next_occurrence(spec: CheckSpec, after: float, tz: tzinfo) -> float | None:
    """The earliest occurrence strictly after ``after`` (within the next 8 days)."""
    today = datetime.fromtimestamp(after, tz).date()
    for ahead in range(-1, 9):
        day = today + timedelta(days=ahead)
        if spec.on(day):
            t = occurrence(spec, day, tz)
            if t > after:
                return t
    return None


def plan(
    specs: Iterable[CheckSpec],
    last: Mapping[str, float],
    now: float,
    tz: tzinfo,
    grace: float,
) -> Plan:
    """Decide which checks are due at ``now``.

    ``last`` maps a check name to the scheduled time it last ran for (or
    the time from which occurrences count as missed); a name absent from
    ``last`` has never run and only future occurrences concern it.
    """
    due: list[Due] = []
    skipped: list[Due] = []
    nexts: list[float] = []
    for spec in specs:
        prev = previous_occurrence(spec, now, tz)
        ran = last.get(spec.name)
        if prev is not None and ran is not None and prev > ran:
            late = now - prev
            (due if late <= grace else skipped).append(Due(spec.name, prev, late))
        nxt = next_occurrence(spec, now, tz)
        if nxt is not None:
            nexts.append(nxt)
    return Plan(tuple(due), tuple(skipped), min(nexts) if nexts else None)
