"""SLA clocks: when a ticket must be responded to, restored and resolved (SPEC §3).

Pure: due times are computed from the level, the instant the clock started
and the calendars; nothing here reads the clock or the store. A target is a
duration counted on the level's calendar (``30m``, ``6h``, ``3d``) or a
number of working days (``2wd``) counted on the working calendar, whatever
the level's own calendar is — "2 working days" in a contract means that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.calendar import ALWAYS, AlwaysCalendar, Calendar
from collector.schema import Duration

CLOCKS = ("respond", "restore", "resolve")
_WORKING_DAYS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:wd|working[ _]?days?)\s*$")


@dataclass(frozen=True)
class Target:
    """One SLA target: an amount of time, or of working days."""

    seconds: float = 0.0
    working_days: float = 0.0

    def __str__(self) -> str:
        if self.working_days:
            return f"{self.working_days:g}wd"
        return str(Duration(self.seconds))


def parse_target(text: str | None) -> Target | None:
    """``"30m"``, ``"2wd"`` / ``"2 working days"``; ``None``, ``""`` or ``"-"``: no target."""
    if text is None:
        return None
    text = str(text).strip()
    if text in ("", "-", "none"):
        return None
    m = _WORKING_DAYS.match(text)
    if m:
        return Target(working_days=float(m.group(1)))
    return Target(seconds=float(Duration.parse(text)))


@dataclass(frozen=True)
class LevelSla:
    """Targets of one level and the calendar its clocks run on."""

    respond: Target | None
    restore: Target | None
    resolve: Target | None
    calendar: str = ALWAYS

    def target(self, clock: str) -> Target | None:
        return {"respond": self.respond, "restore": self.restore, "resolve": self.resolve}[clock]


def _t(text: str) -> Target | None:
    return parse_target(text)


DEFAULT_LEVELS: Mapping[str, LevelSla] = {
    "P1": LevelSla(_t("30m"), _t("2h"), _t("6h")),
    "P2": LevelSla(_t("1h"), _t("4h"), _t("1d")),
    "P3": LevelSla(_t("6h"), _t("2wd"), _t("3d")),
    "P4": LevelSla(_t("8h"), None, _t("7d")),
}


@dataclass(frozen=True)
class SlaPolicy:
    """Per-level targets plus the calendars they refer to."""

    levels: Mapping[str, LevelSla] = field(default_factory=lambda: dict(DEFAULT_LEVELS))
    calendars: Mapping[str, Calendar] = field(default_factory=lambda: {ALWAYS: AlwaysCalendar()})
    working_calendar: str = "workdays"

    def calendar(self, name: str) -> Calendar:
        return self.calendars.get(name) or AlwaysCalendar()

    def due(self, level: str, clock: str, started_at: float) -> float | None:
        """When ``clock`` of a ticket of ``level`` whose clocks started at ``started_at`` is due."""
        lv = self.levels.get(level)
        target = lv.target(clock) if lv else None
        if target is None or lv is None:
            return None
        if target.working_days:
            cal = self.calendar(self.working_calendar)
            if cal.always:
                cal = self.calendar(lv.calendar)
            return cal.add(started_at, target.working_days * cal.day_seconds)
        return self.calendar(lv.calendar).add(started_at, target.seconds)

    def dues(self, level: str, started_at: float) -> dict[str, float | None]:
        """All three due times."""
        return {c: self.due(level, c, started_at) for c in CLOCKS}


def clock_stop(
    clock: str,
    acknowledged_at: float | None,
    restored_at: float | None,
    resolved_at: float | None,
    closed_at: float | None,
) -> float | None:
    """When a clock stopped: an acknowledgement answers the response clock, recovery of the
    alert restores service, resolving (or closing) the ticket resolves it; a later stage
    also stops the earlier clocks."""
    stops = {
        "respond": (acknowledged_at, restored_at, resolved_at, closed_at),
        "restore": (restored_at, resolved_at, closed_at),
        "resolve": (resolved_at, closed_at),
    }[clock]
    present = [s for s in stops if s is not None]
    return min(present) if present else None


def breaches(
    dues: Mapping[str, float | None],
    stops: Mapping[str, float | None],
    already: frozenset[str] | set[str],
    now: float,
) -> list[str]:
    """Clocks newly breached at ``now``: past due and not stopped in time, not yet recorded."""
    out = []
    for clock in CLOCKS:
        due = dues.get(clock)
        if due is None or clock in already:
            continue
        stop = stops.get(clock)
        if (stop is None and now > due) or (stop is not None and stop > due):
            out.append(clock)
    return out
