"""Business calendars: working hours, weekends, China's holidays and make-up workdays."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from agent.calendar import AlwaysCalendar, make_calendar

SH = ZoneInfo("Asia/Shanghai")


def at(*args: int) -> float:
    return dt.datetime(*args, tzinfo=SH).timestamp()


def local(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, SH).replace(tzinfo=None)


def cn() -> object:
    return make_calendar("cn", "Asia/Shanghai", hours=["09:00-12:00", "13:00-18:00"], china=True)


def test_mid_autumn_2024_holiday_and_makeup_saturday():
    cal = cn()
    assert cal.is_working_day(dt.date(2024, 9, 14))  # Saturday, make-up working day
    assert not cal.is_working_day(dt.date(2024, 9, 16))  # Monday, Mid-Autumn holiday
    assert not cal.is_working_day(dt.date(2024, 9, 15))
    assert cal.is_working_day(dt.date(2024, 9, 18))


def test_two_working_days_from_friday_evening_before_a_holiday():
    cal = cn()
    # Fri 2024-09-13 17:00: 1h left on Friday, Saturday 14th is a make-up workday (8h),
    # 15-17 are the holiday, so the remaining 7h run out on Wednesday at 17:00.
    due = cal.add(at(2024, 9, 13, 17, 0), 2 * cal.day_seconds)
    assert local(due) == dt.datetime(2024, 9, 18, 17, 0)


def test_national_day_week_is_skipped():
    cal = cn()
    due = cal.add(at(2024, 9, 30, 17, 0), 2 * 3600)
    # 1-7 October 2024 are holidays; Tuesday 8th is the next working day
    assert local(due) == dt.datetime(2024, 10, 8, 10, 0)


def test_lunch_break_and_outside_hours():
    cal = cn()
    assert local(cal.add(at(2024, 9, 18, 11, 30), 3600)) == dt.datetime(2024, 9, 18, 13, 30)
    # opened at night: the clock starts at the next 09:00
    assert local(cal.add(at(2024, 9, 18, 22, 0), 3600)) == dt.datetime(2024, 9, 19, 10, 0)
    assert cal.between(at(2024, 9, 18, 11, 0), at(2024, 9, 18, 14, 0)) == 2 * 3600


def test_configured_holidays_and_workdays_override():
    cal = make_calendar(
        "x", "Asia/Shanghai", holidays=["2024-09-18"], workdays=["2024-09-21"], china=False
    )
    assert not cal.is_working_day(dt.date(2024, 9, 18))
    assert cal.is_working_day(dt.date(2024, 9, 21))  # a Saturday made a workday
    assert not cal.is_working_day(dt.date(2024, 9, 22))


def test_year_outside_package_data_falls_back_to_weekdays():
    cal = cn()
    assert cal.is_working_day(dt.date(2031, 1, 6))  # a Monday
    assert not cal.is_working_day(dt.date(2031, 1, 5))  # a Sunday


def test_always_calendar_counts_every_second():
    assert AlwaysCalendar().add(1000.0, 60) == 1060.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hours": ["18:00-09:00"]}, "end before"),
        ({"hours": ["9-18"]}, "HH:MM"),
        ({"weekdays": ["monday"]}, "unknown weekday"),
        ({"holidays": ["2024/10/01"]}, "YYYY-MM-DD"),
    ],
)
def test_bad_calendar_values_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_calendar("bad", "UTC", **kwargs)
