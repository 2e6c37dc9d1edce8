"""Business calendars: working hours, weekends, public holidays and make-up working days.

A calendar answers two questions for SLA clocks: is this day a working day,
and when does a given amount of working time, started at some instant, run
out. China's statutory holidays and their make-up working days (调休) come
from the ``chinese-calendar`` package, which is imported only when a
calendar asks for it; configured extra holidays and workdays override it.
Time is always passed in (Unix seconds); nothing here reads the clock.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS = "24x7"
# A due time further away than this is a configuration mistake, not a deadline.
_MAX_DAYS = 3660


@dataclass(frozen=True)
class WorkingHours:
    """One span of working time within a day, ``09:00-12:00``; minutes since midnight."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> WorkingHours:
        """Parse ``HH:MM-HH:MM`` (end may be ``24:00``); ValueError names the problem."""
        a, sep, b = text.partition("-")
        if not sep:
            raise ValueError(f"working hours must look like 09:00-18:00; got {text!r}")
        start, end = _minutes(a), _minutes(b)
        if end <= start:
            raise ValueError(f"working hours end before they start: {text!r}")
        return cls(start, end)


def _minutes(text: str) -> int:
    h, sep, m = text.strip().partition(":")
    if not (sep and h.isdigit() and m.isdigit() and len(m) == 2):
        raise ValueError(f"time must be HH:MM; got {text.strip()!r}")
    total = int(h) * 60 + int(m)
    if int(m) > 59 or total > 24 * 60:
        raise ValueError(f"time out of range: {text.strip()!r}")
    return total


def china_workday_rule() -> Callable[[dt.date], bool | None]:
    """``date -> is it a working day in mainland China`` (None outside the package's years)."""
    import chinese_calendar  # lazily: only calendars that ask for it pay for it

    def rule(day: dt.date) -> bool | None:
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:  # a year the package has no data for yet
            return None

    return rule


@dataclass(frozen=True)
class BusinessCalendar:
    """Working time: hours on working days, in one time zone.

    A day is a working day if it is listed in ``workdays``; otherwise not if
    it is in ``holidays``; otherwise China's official calendar decides (when
    ``china`` is set and the year is known); otherwise its weekday does.
    """

    name: str
    tz: ZoneInfo
    hours: tuple[WorkingHours, ...] = (WorkingHours(9 * 60, 18 * 60),)
    weekdays: frozenset[int] = frozenset(range(5))
    holidays: frozenset[dt.date] = frozenset()
    workdays: frozenset[dt.date] = frozenset()
    official: Callable[[dt.date], bool | None] | None = field(default=None, compare=False)

    @property
    def always(self) -> bool:
        return False

    @property
    def day_seconds(self) -> float:
        """Working seconds in one full working day (the length of "1 working day")."""
        return float(sum(h.end - h.start for h in self.hours) * 60)

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        if self.official is not None:
            verdict = self.official(day)
            if verdict is not None:
                return verdict
        return day.weekday() in self.weekdays

    def spans(self, day: dt.date) -> list[tuple[float, float]]:
        """The working spans of ``day`` as (start, end) Unix seconds (empty on a day off)."""
        if not self.is_working_day(day):
            return []
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=self.tz)
        out = []
        for h in self.hours:
            # wall-clock arithmetic per span, so a DST change is honoured
            a = midnight + dt.timedelta(minutes=h.start)
            b = midnight + dt.timedelta(minutes=h.end)
            out.append((_wall(a), _wall(b)))
        return out

    def add(self, start: float, seconds: float) -> float:
        """The instant at which ``seconds`` of working time, counted from ``start``, have passed."""
        if seconds <= 0:
            return start
        remaining = seconds
        day = dt.datetime.fromtimestamp(start, self.tz).date()
        for _ in range(_MAX_DAYS):
            for a, b in self.spans(day):
                a = max(a, start)
                if b <= a:
                    continue
                if remaining <= b - a:
                    return a + remaining
                remaining -= b - a
            day += dt.timedelta(days=1)
        raise ValueError(f"calendar {self.name!r} has no working time within {_MAX_DAYS} days")

    def between(self, start: float, end: float) -> float:
        """Working seconds between two instants (0 if ``end`` is not after ``start``)."""
        if end <= start:
            return 0.0
        total = 0.0
        day = dt.datetime.fromtimestamp(start, self.tz).date()
        last = dt.datetime.fromtimestamp(end, self.tz).date()
        for _ in range(_MAX_DAYS):
            for a, b in self.spans(day):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total += hi - lo
            if day >= last:
                break
            day += dt.timedelta(days=1)
        return total


def _wall(d: dt.datetime) -> float:
    # Re-resolve a naive wall-clock time in its zone (timedelta on aware datetimes ignores DST).
    naive = d.replace(tzinfo=None)
    return naive.replace(tzinfo=d.tzinfo).timestamp()


@dataclass(frozen=True)
class AlwaysCalendar:
    """24x7: every second counts; a working day is 24 hours."""

    name: str = ALWAYS

    @property
    def always(self) -> bool:
        return True

    @property
    def day_seconds(self) -> float:
        return 86400.0

    def is_working_day(self, day: dt.date) -> bool:
        return True

    def add(self, start: float, seconds: float) -> float:
        return start + max(0.0, seconds)

    def between(self, start: float, end: float) -> float:
        return max(0.0, end - start)


Calendar = BusinessCalendar | AlwaysCalendar


def make_calendar(
    name: str,
    timezone: str,
    hours: Iterable[str] = ("09:00-18:00",),
    weekdays: Iterable[str] = WEEKDAYS[:5],
    holidays: Iterable[str] = (),
    workdays: Iterable[str] = (),
    china: bool = False,
) -> BusinessCalendar:
    """Build a calendar from config-style strings; ValueError names the first bad value."""
    tz = ZoneInfo(timezone) if timezone else local_zone()
    spans = tuple(sorted((WorkingHours.parse(h) for h in hours), key=lambda h: h.start))
    if not spans:
        raise ValueError("a business calendar needs working hours")
    for x, y in itertools.pairwise(spans):
        if y.start < x.end:
            raise ValueError("working hours overlap")
    days = set()
    for w in weekdays:
        if w not in WEEKDAYS:
            raise ValueError(f"unknown weekday {w!r} (use {', '.join(WEEKDAYS)})")
        days.add(WEEKDAYS.index(w))
    return BusinessCalendar(
        name=name,
        tz=tz,
        hours=spans,
        weekdays=frozenset(days),
        holidays=frozenset(_date(d) for d in holidays),
        workdays=frozenset(_date(d) for d in workdays),
        official=china_workday_rule() if china else None,
    )


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(text))
    except ValueError:
        raise ValueError(f"dates must be YYYY-MM-DD; got {text!r}") from None


def local_zone() -> ZoneInfo:
    """The system's local time zone (TZ, then /etc/localtime), UTC if unknown."""
    import os

    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ValueError, KeyError):
            pass
    try:
        link = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in link:
            return ZoneInfo(link.split("zoneinfo/", 1)[1])
    except (OSError, ValueError, KeyError):
        pass
    return ZoneInfo("UTC")
