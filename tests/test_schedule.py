"""The check calendar, with injected times: due checks, misfire grace, no bursts, DST."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from agent.schedule import CheckSpec, next_occurrence, plan, previous_occurrence

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0

MORNING = CheckSpec.parse("morning", "08:00")
EVENING = CheckSpec.parse("evening", "18:30")
WEEKLY = CheckSpec.parse("weekly", "09:00", ["mon"])
SPECS = [MORNING, EVENING, WEEKLY]


def t(tz: ZoneInfo, *args: int, fold: int = 0) -> float:
    return datetime(*args, tzinfo=tz, fold=fold).timestamp()  # type: ignore[misc]


def test_nothing_due_between_occurrences_and_next_is_the_soonest() -> None:
    now = t(SH, 2024, 5, 8, 12, 0)  # a Wednesday
    last = {
        "morning": t(SH, 2024, 5, 8, 8, 0),
        "evening": t(SH, 2024, 5, 7, 18, 30),
        "weekly": t(SH, 2024, 5, 6, 9),
    }
    p = plan(SPECS, last, now, SH, grace=2 * HOUR)
    assert p.due == () and p.skipped == ()
    assert p.next_at == t(SH, 2024, 5, 8, 18, 30)


def test_check_is_due_at_its_time_once() -> None:
    last = {"morning": t(SH, 2024, 5, 7, 8, 0)}
    now = t(SH, 2024, 5, 8, 8, 0)
    p = plan([MORNING], last, now, SH, grace=2 * HOUR)
    assert [(d.name, d.scheduled, d.late) for d in p.due] == [("morning", now, 0.0)]
    # once recorded, not due again; next is tomorrow
    p = plan([MORNING], {"morning": now}, now + 1, SH, grace=2 * HOUR)
    assert p.due == () and p.next_at == t(SH, 2024, 5, 9, 8, 0)


def test_weekly_only_on_its_weekday() -> None:
    assert previous_occurrence(WEEKLY, t(SH, 2024, 5, 8, 12), SH) == t(SH, 2024, 5, 6, 9)  # Monday
    assert next_occurrence(WEEKLY, t(SH, 2024, 5, 8, 12), SH) == t(SH, 2024, 5, 13, 9)
    assert next_occurrence(WEEKLY, t(SH, 2024, 5, 13, 9), SH) == t(SH, 2024, 5, 20, 9)  # strictly after


def test_missed_while_down_within_grace_runs_once() -> None:
    # down from Tuesday 07:00 to Wednesday 09:00: the morning check is late by one hour
    last = {"morning": t(SH, 2024, 5, 7, 8, 0)}
    now = t(SH, 2024, 5, 8, 9, 0)
    p = plan([MORNING], last, now, SH, grace=2 * HOUR)
    assert [(d.scheduled, d.late) for d in p.due] == [(t(SH, 2024, 5, 8, 8, 0), HOUR)]


def test_missed_outside_grace_is_skipped_not_run() -> None:
    last = {"morning": t(SH, 2024, 5, 7, 8, 0)}
    now = t(SH, 2024, 5, 8, 11, 0)
    p = plan([MORNING], last, now, SH, grace=2 * HOUR)
    assert p.due == ()
    assert [(d.name, d.scheduled) for d in p.skipped] == [("morning", t(SH, 2024, 5, 8, 8, 0))]


def test_several_missed_occurrences_coalesce_into_one_run() -> None:
    # down for five days; back up 30 minutes after the morning check
    last = {"morning": t(SH, 2024, 5, 3, 8, 0), "evening": t(SH, 2024, 5, 2, 18, 30)}
    now = t(SH, 2024, 5, 8, 8, 30)
    p = plan([MORNING, EVENING], last, now, SH, grace=2 * HOUR)
    assert [(d.name, d.scheduled) for d in p.due] == [("morning", t(SH, 2024, 5, 8, 8, 0))]
    # the evening check's latest occurrence (yesterday 18:30) is far outside grace: skipped once
    assert [(d.name, d.scheduled) for d in p.skipped] == [("evening", t(SH, 2024, 5, 7, 18, 30))]


def test_never_run_check_waits_for_its_next_occurrence() -> None:
    now = t(SH, 2024, 5, 8, 8, 30)
    p = plan([MORNING], {}, now, SH, grace=2 * HOUR)
    assert p.due == () and p.skipped == ()
    assert p.next_at == t(SH, 2024, 5, 9, 8, 0)


def test_dst_spring_forward_gap_runs_once_shifted() -> None:
    # 2024-03-10 02:30 does not exist in New York (clocks jump 02:00 -> 03:00)
    spec = CheckSpec.parse("night", "02:30")
    before = t(NY, 2024, 3, 10, 1, 0)
    nxt = next_occurrence(spec, before, NY)
    assert nxt is not None
    local = datetime.fromtimestamp(nxt, NY)
    assert (local.day, local.hour, local.minute) == (10, 3, 30)
    # exactly one run that day
    p = plan([spec], {"night": t(NY, 2024, 3, 9, 2, 30)}, nxt + 60, NY, grace=HOUR)
    assert len(p.due) == 1
    p = plan([spec], {"night": p.due[0].scheduled}, nxt + 2 * HOUR, NY, grace=HOUR)
    assert p.due == ()


def test_dst_fall_back_repeated_hour_runs_once() -> None:
    # 2024-11-03 01:30 happens twice in New York; the check runs at the first one only
    spec = CheckSpec.parse("night", "01:30")
    first = t(NY, 2024, 11, 3, 1, 30, fold=0)
    second = t(NY, 2024, 11, 3, 1, 30, fold=1)
    assert second - first == HOUR
    p = plan([spec], {"night": t(NY, 2024, 11, 2, 1, 30)}, first + 1, NY, grace=2 * HOUR)
    assert [d.scheduled for d in p.due] == [first]
    p = plan([spec], {"night": first}, second + 1, NY, grace=2 * HOUR)
    assert p.due == ()
    assert p.next_at == t(NY, 2024, 11, 4, 1, 30)


def test_wall_clock_time_is_kept_across_dst() -> None:
    # 08:00 stays 08:00 local time across Berlin's switch to summer time (23 h apart)
    a = t(BERLIN, 2024, 3, 30, 8, 0)
    assert next_occurrence(MORNING, a, BERLIN) == a + 23 * HOUR
