"""Working-day arithmetic on config.toml's calendar, and the traffic-light boundaries."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from models.deadlines import (
    GREEN,
    RED,
    YELLOW,
    Rules,
    WorkCalendar,
    case_light,
    deadline_after,
    parse_limit,
    traffic_light,
    yellow_at,
)
from models.tables import CLOSED, DISPATCHED, SIGNED, Case


def local(y, m, d, hh=10, mm=0) -> datetime:
    """Changsha wall-clock time as naive UTC (UTC+8, no daylight saving)."""
    return datetime(y, m, d, hh, mm) - timedelta(hours=8)


@pytest.fixture
def cal(settings) -> WorkCalendar:
    return WorkCalendar.from_settings(settings)


def test_calendar_comes_from_config(cal):
    assert date(2026, 10, 1) in cal.holidays
    assert date(2026, 10, 10) in cal.adjusted_workdays
    assert not cal.is_workday(date(2026, 10, 5))  # Monday, National Day holiday
    assert cal.is_workday(date(2026, 10, 10))  # Saturday, adjusted working day (调休)
    assert not cal.is_workday(date(2026, 10, 11))  # ordinary Sunday
    assert cal.is_workday(date(2026, 10, 8))


def test_one_working_day_jumps_the_national_day_holiday(cal):
    # Wed 30 Sep 10:00 + 1wd: 1–7 Oct are holiday or weekend, so Thu 8 Oct 10:00.
    assert deadline_after(local(2026, 9, 30), "1wd", cal) == local(2026, 10, 8)


def test_five_working_days_count_the_adjusted_saturday(cal):
    # 8 Oct (Thu), 9 (Fri), 10 (Sat, 调休), 12 (Mon), 13 (Tue).
    assert deadline_after(local(2026, 9, 30), "5wd", cal) == local(2026, 10, 13)


def test_adjusted_working_saturday_in_spring_festival(cal):
    # Fri 13 Feb + 1wd is Sat 14 Feb (调休), not Mon 16 Feb (a holiday anyway).
    assert deadline_after(local(2026, 2, 13), "1wd", cal) == local(2026, 2, 14)
    # From Sat 14 Feb: 16–20 and 23 Feb are holidays, 21/22 a weekend -> Tue 24 Feb.
    assert deadline_after(local(2026, 2, 14), "1wd", cal) == local(2026, 2, 24)


def test_a_report_on_a_holiday_counts_from_the_next_working_morning(cal):
    # Sat 3 Oct 15:00 -> counted from Thu 8 Oct 09:00 -> Fri 9 Oct 09:00.
    assert deadline_after(local(2026, 10, 3, 15), "1wd", cal) == local(2026, 10, 9, 9)


def test_the_local_date_decides_not_the_utc_date(cal):
    # 30 Sep 17:00 UTC is 1 Oct 01:00 in Changsha: already the holiday.
    start = datetime(2026, 9, 30, 17, 0)
    assert deadline_after(start, "1wd", cal) == local(2026, 10, 9, 9)


def test_clock_limits_ignore_the_calendar(cal):
    start = local(2026, 10, 1, 20)
    assert deadline_after(start, "2h", cal) == start + timedelta(hours=2)
    assert deadline_after(start, "1d", cal) == start + timedelta(days=1)
    assert deadline_after(start, "1.5h", cal) == start + timedelta(minutes=90)


@pytest.mark.parametrize("bad", ["", "5", "wd", "1.5wd", "3 weeks", "-1d"])
def test_bad_limits_are_refused(bad):
    with pytest.raises(ValueError, match="时限"):
        parse_limit(bad)


START = datetime(2026, 11, 24, 2, 0)
DEADLINE = START + timedelta(hours=100)


@pytest.mark.parametrize(
    "offset, light",
    [
        (timedelta(0), GREEN),
        (timedelta(hours=75) - timedelta(seconds=1), GREEN),
        (timedelta(hours=75), YELLOW),  # exactly 75 % used
        (timedelta(hours=100), YELLOW),  # at the deadline: not yet overdue
        (timedelta(hours=100, seconds=1), RED),
        (timedelta(days=30), RED),
    ],
)
def test_traffic_light_boundaries(offset, light):
    assert traffic_light(START + offset, START, DEADLINE, 0.75) == light


def test_yellow_at_matches_the_light():
    turn = yellow_at(START, DEADLINE, 0.75)
    assert turn == START + timedelta(hours=75)
    assert traffic_light(turn, START, DEADLINE) == YELLOW
    assert traffic_light(turn - timedelta(microseconds=1), START, DEADLINE) == GREEN


def test_degenerate_window():
    assert traffic_light(START, START, START) == YELLOW
    assert traffic_light(START + timedelta(seconds=1), START, START) == RED


def test_case_light_follows_the_current_deadline(settings):
    rules = Rules.from_settings(settings)
    sign_by, resolve_by = rules.deadlines(None, "normal", START)
    case = Case(
        ref="x",
        reporter_id=1,
        text="t",
        created_at=START,
        dispatched_at=START,
        sign_by=sign_by,
        resolve_by=resolve_by,
        status=DISPATCHED,
    )
    after_sign_by = sign_by + timedelta(minutes=1)
    assert case_light(case, after_sign_by, rules) == RED  # not signed in time
    case.status = SIGNED
    assert case_light(case, after_sign_by, rules) == GREEN  # now measured on resolve_by
    case.status = CLOSED
    assert case_light(case, after_sign_by, rules) is None


def test_rules_use_config_limits_and_yellow_ratio(settings):
    rules = Rules.from_settings(settings)
    assert rules.yellow_ratio == settings.followup.yellow_ratio
    assert rules.limits_for(None, "normal") == (
        settings.limits["sign_normal"],
        settings.limits["resolve_normal"],
    )
    assert rules.limits_for(None, "urgent") == ("2h", "1d")
