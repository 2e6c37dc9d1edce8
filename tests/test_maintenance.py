"""Maintenance windows: one-off, recurring, scoped by matchers."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from agent.maintenance import make_window, silencing

SH = ZoneInfo("Asia/Shanghai")


def at(*args: int) -> float:
    return dt.datetime(*args, tzinfo=SH).timestamp()


def test_recurring_window_crossing_midnight_scoped_by_regex():
    w = make_window("nightly", ['instance=~"db-.*"'], weekdays=["sun"], hours="23:00-02:00",
                    timezone="Asia/Shanghai")
    db, web = {"instance": "db-1"}, {"instance": "web-1"}
    sunday_late, monday_early = at(2024, 9, 22, 23, 30), at(2024, 9, 23, 1, 0)
    monday_late = at(2024, 9, 23, 23, 30)
    assert silencing([w], db, sunday_late) is w
    assert silencing([w], db, monday_early) is w
    assert silencing([w], db, monday_late) is None
    assert silencing([w], web, sunday_late) is None


def test_one_off_window():
    w = make_window("upgrade", ["job=node"], start="2024-09-20T20:00:00+08:00",
                    end="2024-09-20T22:00:00+08:00")
    assert silencing([w], {"job": "node"}, at(2024, 9, 20, 21, 0)) is w
    assert silencing([w], {"job": "node"}, at(2024, 9, 20, 22, 0)) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"matchers": ["instance=~(("], "hours": "01:00-02:00"}, "invalid regular expression"),
        ({"hours": "25:00-02:00"}, "out of range"),
        ({}, "needs start and end"),
        ({"start": "2024-09-20T22:00", "end": "2024-09-20T20:00"}, "ends before"),
    ],
)
def test_bad_windows(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_window("bad", **kwargs)
