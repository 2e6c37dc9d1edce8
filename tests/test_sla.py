"""SLA due times and breaches (SPEC §3)."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from agent.calendar import AlwaysCalendar, make_calendar
from agent.sla import SlaPolicy, breaches, clock_stop, parse_target

SH = ZoneInfo("Asia/Shanghai")


def at(*args: int) -> float:
    return dt.datetime(*args, tzinfo=SH).timestamp()


def policy() -> SlaPolicy:
    cal = make_calendar("workdays", "Asia/Shanghai", hours=["09:00-12:00", "13:00-18:00"], china=True)
    return SlaPolicy(calendars={"24x7": AlwaysCalendar(), "workdays": cal})


def test_default_targets_follow_the_contract():
    p = policy()
    t0 = at(2024, 9, 18, 10, 0)
    d = p.dues("P1", t0)
    assert (d["respond"] - t0, d["restore"] - t0, d["resolve"] - t0) == (1800, 7200, 6 * 3600)
    assert p.dues("P4", t0)["restore"] is None


def test_p3_restore_is_two_working_days_friday_before_mid_autumn():
    p = policy()
    d = p.dues("P3", at(2024, 9, 13, 17, 0))
    assert dt.datetime.fromtimestamp(d["restore"], SH).replace(tzinfo=None) == dt.datetime(2024, 9, 18, 17)
    # the other P3 clocks are 24x7
    assert d["respond"] == at(2024, 9, 13, 23, 0)


def test_parse_target_forms():
    assert parse_target("2 working days").working_days == 2
    assert parse_target("1h30m").seconds == 5400
    assert parse_target("-") is None
    with pytest.raises(ValueError):
        parse_target("soon")


def test_ack_stops_response_clock_and_breach_is_reported_once():
    dues = {"respond": 100.0, "restore": 200.0, "resolve": 300.0}
    stops = {c: clock_stop(c, 50.0, None, None, None) for c in dues}
    assert breaches(dues, stops, set(), 250.0) == ["restore"]
    assert breaches(dues, stops, {"restore"}, 250.0) == []
    late_ack = {c: clock_stop(c, 150.0, None, None, None) for c in dues}
    assert breaches(dues, late_ack, set(), 160.0) == ["respond"]
