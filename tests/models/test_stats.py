"""Every dashboard figure against a store seeded with known cases (SQLite and PostgreSQL).

Cases are inserted straight into the tables with known timestamps, so each expected value
below is worked out by hand in the comments. NOW is Wednesday 2026-03-18 14:00 district time.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from sqlmodel import select

from models import stats
from models.auth import LOGIN_CODE_TTL, issue_login_code, normalize_code, redeem_login_code
from models.deadlines import GREEN, RED, YELLOW, case_light
from models.engine import session_scope
from models.lifecycle import NotPermitted
from models.reference import sync_reference_data
from models.tables import (
    BASIC,
    CLOSED,
    DISPATCHED,
    ENTERPRISE,
    MERGED,
    RESOLVED,
    SATISFIED,
    SIGNED,
    SUBMITTED,
    TRIAGE,
    UNRATED,
    UNSATISFIED,
    Case,
    Enterprise,
    LabelCorrection,
    Reporter,
)
from tests.worded import raises_worded

NOW = datetime(2026, 3, 18, 6, 0)  # UTC; 14:00 in Asia/Shanghai
RESIDENT_PHONE = "13800138000"
RESIDENT_NAME = "测试居民甲"
RESIDENT_TID = 555001


def at(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second)


# ref: (status, department, kind, created, dispatched, sign_by, resolve_by, resolved,
#       satisfaction, suggested, model_version, grid)
KNOWN_CASES = {
    "C1": (
        CLOSED,
        "water",
        "resident",
        at(3, 2, 1),
        at(3, 2, 2),
        at(3, 3, 2),
        at(3, 6, 2),
        at(3, 5, 2),
        SATISFIED,
        "water",
        "v1",
        "WC-YLD-YX-01-A",
    ),
    "C2": (
        RESOLVED,
        "water",
        "resident",
        at(3, 3, 1),
        at(3, 3, 1),
        at(3, 3, 9),
        at(3, 4, 1),
        at(3, 5, 1),
        None,
        "housing",
        "v1",
        "WC-GTL-XC-01",
    ),
    "C3": (
        CLOSED,
        "water",
        ENTERPRISE,
        at(3, 10),
        at(3, 10),
        at(3, 11),
        at(3, 15),
        at(3, 11),
        BASIC,
        "water",
        "v2",
        "WC-YLD-YX-01",
    ),
    "C4": (
        CLOSED,
        "housing",
        "resident",
        at(3, 5),
        at(3, 5),
        at(3, 5, 8),
        at(3, 6),
        at(3, 5, 12),
        UNRATED,
        "housing",
        "v2",
        None,
    ),
    # Dispatched 00:00, sign-for by 08:00, now 06:00: exactly 75% used → yellow.
    "C5": (
        DISPATCHED,
        "housing",
        "resident",
        at(3, 18),
        at(3, 18),
        at(3, 18, 8),
        at(3, 25),
        None,
        None,
        "municipal",
        "v2",
        "WC-GTL",
    ),
    # Signed, resolve-by 03-17 00:00: red, 30 hours overdue.
    "C6": (
        SIGNED,
        "housing",
        ENTERPRISE,
        at(3, 16),
        at(3, 16),
        at(3, 16, 8),
        at(3, 17),
        None,
        None,
        "housing",
        "v2",
        None,
    ),
    # Dispatched 05:00, sign-for by 09:00, now 06:00: 25% used → green. No suggestion.
    "C7": (
        DISPATCHED,
        "municipal",
        "resident",
        at(3, 18, 5),
        at(3, 18, 5),
        at(3, 18, 9),
        at(3, 25),
        None,
        None,
        None,
        None,
        None,
    ),
    "C8": (
        SUBMITTED,
        None,
        "resident",
        at(3, 17, 20),
        None,
        None,
        None,
        None,
        None,
        "water",
        "v2",
        None,
    ),
    "C9": (MERGED, None, "resident", at(3, 10), None, None, None, None, None, "water", "v1", None),
    # Reopened after 不满意: dispatched again 03-17, sign-for by 03-18 00:00 → red, 6 h over.
    "C10": (
        DISPATCHED,
        "water",
        "resident",
        at(3, 12),
        at(3, 17),
        at(3, 18),
        at(3, 24),
        None,
        UNSATISFIED,
        "water",
        "v1",
        None,
    ),
    "C11": (
        TRIAGE,
        None,
        "resident",
        at(3, 18, 1),
        None,
        None,
        None,
        None,
        None,
        "labor",
        "v3",
        None,
    ),
    # Signed, resolve-by is exactly now: still yellow (red only after the deadline).
    "C12": (
        SIGNED,
        "water",
        "resident",
        at(3, 14, 6),
        at(3, 14, 6),
        at(3, 15, 6),
        at(3, 18, 6),
        None,
        None,
        "water",
        "v2",
        None,
    ),
    # February: red for 462 hours (02-27 00:00 → 03-18 06:00), outside this month's figures.
    "P1": (
        SIGNED,
        "municipal",
        "resident",
        at(2, 20),
        at(2, 20),
        at(2, 21),
        at(2, 27),
        None,
        None,
        "municipal",
        "v1",
        None,
    ),
    "P2": (
        CLOSED,
        "water",
        "resident",
        at(2, 25),
        at(2, 25),
        at(2, 26),
        at(3, 2),
        at(2, 26),
        SATISFIED,
        "water",
        "v1",
        None,
    ),
    # Month boundary: 02-28 16:00 UTC is 03-01 00:00 local (in March), one second less is not.
    "B1": (
        CLOSED,
        "municipal",
        "resident",
        at(2, 28, 16),
        at(2, 28, 16),
        at(3, 1, 16),
        at(3, 5, 16),
        at(3, 2, 16),
        SATISFIED,
        "municipal",
        "v1",
        "WC-GTL-XC-01",
    ),
    "B0": (
        CLOSED,
        "water",
        "resident",
        at(2, 28, 15, 59, 59),
        at(2, 28, 16),
        at(3, 1, 16),
        at(3, 5, 16),
        at(3, 2, 16),
        SATISFIED,
        "water",
        "v1",
        None,
    ),
}


async def seed_known_cases(engine, settings) -> dict[str, int]:
    """Reference data from config.toml plus KNOWN_CASES; returns ref → case id."""
    ids = {}
    async with session_scope(engine) as s:
        await sync_reference_data(s, settings)
        firm = Enterprise(
            name="测试科技有限公司", credit_code="91430100MA4L0XXXXX", created_at=at(1, 1)
        )
        s.add(firm)
        await s.flush()
        resident = Reporter(
            telegram_id=RESIDENT_TID,
            display_name=RESIDENT_NAME,
            phone=RESIDENT_PHONE,
            phone_consent=True,
            created_at=at(1, 1),
        )
        boss = Reporter(
            telegram_id=555002,
            kind=ENTERPRISE,
            display_name="测试企业主",
            enterprise_id=firm.id,
            created_at=at(1, 1),
        )
        s.add_all([resident, boss])
        await s.flush()
        for ref, (
            status,
            dept,
            kind,
            created,
            dispatched,
            sign_by,
            resolve_by,
            resolved,
            satisfaction,
            suggested,
            version,
            grid,
        ) in KNOWN_CASES.items():
            reporter = boss if kind == ENTERPRISE else resident
            case = Case(
                ref=ref,
                kind=kind,
                reporter_id=reporter.id,
                enterprise_id=firm.id if kind == ENTERPRISE else None,
                text=f"{ref} 测试诉求内容，联系电话 {RESIDENT_PHONE}",
                status=status,
                department_code=dept,
                created_at=created,
                dispatched_at=dispatched,
                signed_at=dispatched if status in (SIGNED, RESOLVED, CLOSED) else None,
                sign_by=sign_by,
                resolve_by=resolve_by,
                resolved_at=resolved,
                closed_at=resolved if status == CLOSED else None,
                satisfaction=satisfaction,
                suggested_department=suggested,
                suggested_confidence=0.7 if suggested else None,
                model_version=version,
                grid_code=grid,
                address="测试路1号",
                reopen_count=1 if ref == "C10" else 0,
            )
            s.add(case)
            await s.flush()
            ids[ref] = case.id
        for ref, suggested, corrected, when in (
            ("C2", "housing", "water", at(3, 3, 1)),
            ("C5", "municipal", "housing", at(3, 18)),
        ):
            s.add(
                LabelCorrection(
                    case_id=ids[ref],
                    text="测试",
                    suggested_label=suggested,
                    corrected_label=corrected,
                    staff_telegram_id=9001,
                    model_version="v2",
                    at=when,
                )
            )
    return ids


@pytest.fixture
async def known(engine, settings):
    return await seed_known_cases(engine, settings)


# ---------------------------------------------------------------- periods


def test_periods_follow_district_time(rules):
    cal = rules.calendar
    assert stats.today_bounds(NOW, cal) == (at(3, 17, 16), at(3, 18, 16))
    assert stats.month_bounds(NOW, cal) == (at(2, 28, 16), at(3, 31, 16))
    assert stats.last_days_bounds(NOW, cal, 30) == (at(2, 16, 16), at(3, 18, 16))
    # 23:30 UTC on 03-31 is already April 1st in Shanghai.
    assert stats.month_bounds(at(3, 31, 23, 30), cal) == (at(3, 31, 16), at(4, 30, 16))


# ---------------------------------------------------------------- headline figures


async def test_summary_of_the_month(engine, known, rules):
    start, end = stats.month_bounds(NOW, rules.calendar)
    async with session_scope(engine) as s:
        got = await stats.summary(s, start=start, end=end, now=NOW, rules=rules)
    # March: C1-C8, C10-C12 and B1 (C9 merged; P1, P2, B0 are February).
    assert got["created"] == 12
    # Dispatched: C1-C7, C10, C12, B1. Done: C1, C2, C3, C4, B1.
    assert (got["dispatched"], got["done"]) == (10, 5)
    assert got["completion_rate"] == pytest.approx(0.5)
    # On time: all done but C2 (resolved 03-05 01:00 after its 03-04 01:00 deadline).
    assert (got["on_time"], got["timed"], got["on_time_rate"]) == (4, 5, pytest.approx(0.8))
    # Handling hours: C1 72 + C2 48 + C3 24 + C4 12 + B1 48 = 204 over 5.
    assert got["avg_handling_hours"] == pytest.approx(40.8)
    # Rated: C1 satisfied, C3 basic, C10 unsatisfied, B1 satisfied (C4 unrated is left out).
    assert (got["content"], got["rated"], got["satisfaction_rate"]) == (3, 4, 0.75)
    # Suggested and dispatched: 9 (C7 has no suggestion); C2 and C5 went elsewhere.
    assert (got["accepted"], got["suggested"]) == (7, 9)
    assert got["acceptance_rate"] == pytest.approx(7 / 9)
    # Now, whatever the period: open C5, C6, C7, C8, C10, C11, C12 and February's P1.
    assert (got["open"], got["yellow"], got["red"]) == (8, 2, 3)
    assert got["by_status"] == {
        CLOSED: 4,
        RESOLVED: 1,
        DISPATCHED: 3,
        SIGNED: 2,
        SUBMITTED: 1,
        TRIAGE: 1,
    }


async def test_summary_filters_by_department_and_kind(engine, known, rules):
    start, end = stats.month_bounds(NOW, rules.calendar)
    async with session_scope(engine) as s:
        water = await stats.summary(
            s, start=start, end=end, now=NOW, rules=rules, department="water"
        )
        firms = await stats.summary(s, start=start, end=end, now=NOW, rules=rules, kind=ENTERPRISE)
    # Water in March: C1, C2, C3, C10, C12; open C10 (red) and C12 (yellow).
    assert (water["created"], water["dispatched"], water["done"]) == (5, 5, 3)
    assert (water["open"], water["yellow"], water["red"]) == (2, 1, 1)
    assert water["satisfaction_rate"] == pytest.approx(2 / 3)
    # Enterprise demands: C3 (closed) and C6 (signed, red).
    assert (firms["created"], firms["done"], firms["completion_rate"]) == (2, 1, 0.5)
    assert (firms["open"], firms["red"]) == (1, 1)


async def test_dashboard_headline(engine, known, rules):
    data = await stats.dashboard_data(engine, now=NOW, rules=rules)
    assert data["headline"] == {
        "today": 4,  # C5, C7, C8 (03-17 20:00 UTC = 03-18 04:00 local), C11
        "month": 12,
        "open": 8,
        "yellow": 2,
        "red": 3,
        "completion_rate": 0.5,
        "on_time_rate": 0.8,
        "satisfaction_rate": 0.75,
        "enterprise": 2,
        "enterprise_completion_rate": 0.5,
    }


# ---------------------------------------------------------------- league table


async def test_department_league_worst_first(engine, known, rules):
    start, end = stats.month_bounds(NOW, rules.calendar)
    async with session_scope(engine) as s:
        league = await stats.by_department(s, start=start, end=end, now=NOW, rules=rules)
    codes = [row["code"] for row in league]
    # water and housing each have a red and a yellow; water's on-time rate (2/3) is worse.
    assert codes[:3] == ["water", "housing", "municipal"]
    assert codes[3:] == ["commerce", "education", "environment", "health", "labor", "transport"]
    rows = {row["code"]: row for row in league}
    water, housing, municipal = rows["water"], rows["housing"], rows["municipal"]
    assert (water["open"], water["yellow"], water["red"], water["light"]) == (2, 1, 1, RED)
    assert water["avg_handling_hours"] == pytest.approx(48.0)  # (72 + 48 + 24) / 3
    assert water["satisfaction_rate"] == pytest.approx(2 / 3)
    assert water["completion_rate"] == pytest.approx(3 / 5)
    assert (housing["open"], housing["yellow"], housing["red"]) == (2, 1, 1)
    assert housing["avg_handling_hours"] == pytest.approx(12.0)
    assert housing["satisfaction_rate"] is None  # C4 was closed unrated
    # municipal: C7 green (March) and P1 red (February, still open).
    assert (municipal["open"], municipal["yellow"], municipal["red"]) == (2, 0, 1)
    assert municipal["satisfaction_rate"] == 1.0
    assert rows["labor"]["light"] == GREEN and rows["labor"]["open"] == 0
    assert rows["water"]["name"] == "水务局"


# ---------------------------------------------------------------- trend, grids, reds


async def test_daily_counts_by_local_day(engine, known, rules):
    cal = rules.calendar
    start, end = stats.last_days_bounds(NOW, cal, 30)
    async with session_scope(engine) as s:
        trend = await stats.daily_counts(s, start=start, end=end, calendar=cal)
    days = trend["days"]
    assert (days[0], days[-1], len(days)) == ("2026-02-17", "2026-03-18", 30)
    series = trend["series"]
    on = days.index
    # B0 (23:59:59 local) belongs to 02-28, B1 (00:00 local) to 03-01.
    assert series["water"][on("2026-02-28")] == 1
    assert series["municipal"][on("2026-03-01")] == 1
    # Not yet dispatched today: C8 and C11.
    assert series[None][on("2026-03-18")] == 2
    assert sum(sum(counts) for counts in series.values()) == 15  # all but C9 (merged)


async def test_cases_by_community(engine, known, rules):
    start, end = stats.month_bounds(NOW, rules.calendar)
    async with session_scope(engine) as s:
        grids = await stats.by_grid(s, start=start, end=end)
    assert grids == [
        {"code": None, "name": "未关联网格", "count": 7},
        {"code": "WC-GTL-XC", "name": "新城社区", "count": 2},  # C2, B1
        {"code": "WC-YLD-YX", "name": "银星村", "count": 2},  # C1 (micro-grid), C3
        {"code": "WC-GTL", "name": "高塘岭街道", "count": 1},  # C5, filed at street level
    ]


async def test_red_cases_most_overdue_first(engine, known, rules):
    async with session_scope(engine) as s:
        reds = await stats.red_cases(s, now=NOW, rules=rules)
    assert [(r["ref"], r["department"], r["stage"], r["hours_overdue"]) for r in reds] == [
        ("P1", "市政局", "办理超时", 462.0),
        ("C6", "住建局", "办理超时", 30.0),
        ("C10", "水务局", "签收超时", 6.0),
    ]


async def test_classifier_health(engine, known, rules):
    start, end = stats.month_bounds(NOW, rules.calendar)
    async with session_scope(engine) as s:
        health = await stats.classifier_health(s, start=start, end=end)
    assert health["acceptance_rate"] == pytest.approx(7 / 9)
    assert (health["suggested"], health["corrected"]) == (9, 2)
    assert health["model_version"] == "v3"  # C11, the newest case with a model version
    by_version = {v["model_version"]: v for v in health["by_version"]}
    assert (by_version["v1"]["accepted"], by_version["v1"]["suggested"]) == (3, 4)
    assert (by_version["v2"]["accepted"], by_version["v2"]["suggested"]) == (4, 5)
    assert by_version["v3"]["acceptance_rate"] is None  # C11 is not dispatched yet
    assert [(c["ref"], c["suggested"], c["corrected"]) for c in health["recent_corrections"]] == [
        ("C5", "municipal", "housing"),
        ("C2", "housing", "water"),
    ]


async def test_empty_store_gives_no_rates(engine, settings, rules):
    async with session_scope(engine) as s:
        await sync_reference_data(s, settings)
    data = await stats.dashboard_data(engine, now=NOW, rules=rules)
    headline = data["headline"]
    assert headline["month"] == 0 and headline["completion_rate"] is None
    assert headline["satisfaction_rate"] is None and data["red_cases"] == []
    assert data["classifier"]["model_version"] is None


# ---------------------------------------------------------------- SQL lights = case_light()


async def test_sql_light_counts_agree_with_traffic_light(engine, settings, rules):
    """Random open cases plus the edge cases; the SQL counts must equal case_light()'s."""
    rng = random.Random(20260318)
    now = NOW
    windows = []
    for _ in range(300):
        start = now - timedelta(seconds=rng.randint(0, 10 * 86400))
        windows.append((start, start + timedelta(seconds=rng.randint(-3600, 8 * 86400))))
    windows += [
        (now - timedelta(hours=6), now + timedelta(hours=2)),  # exactly 75% used
        (now - timedelta(hours=6), now + timedelta(hours=2, seconds=1)),  # just under
        (now - timedelta(hours=1), now),  # deadline is now
        (now, now),  # a window of no length, now at its deadline
        (now + timedelta(hours=1), now + timedelta(hours=1)),  # no length, not yet due
        (now - timedelta(hours=2), now - timedelta(hours=3)),  # deadline before start
        (now + timedelta(hours=2), now + timedelta(hours=1)),  # deadline before start, ahead
        (now - timedelta(days=3), now - timedelta(microseconds=1)),  # just past
    ]
    async with session_scope(engine) as s:
        await sync_reference_data(s, settings)
        reporter = Reporter(telegram_id=1, created_at=now)
        s.add(reporter)
        await s.flush()
        for i, (start, deadline) in enumerate(windows):
            status = DISPATCHED if i % 2 else SIGNED
            s.add(
                Case(
                    ref=f"L{i}",
                    reporter_id=reporter.id,
                    text="测试",
                    status=status,
                    department_code="water",
                    created_at=start,
                    dispatched_at=start,
                    sign_by=deadline if status == DISPATCHED else None,
                    resolve_by=deadline if status == SIGNED else deadline + timedelta(days=9),
                )
            )
    async with session_scope(engine) as s:
        cases = (await s.exec(select(Case))).all()
        expected = [case_light(c, now, rules) for c in cases]
        got = await stats.summary(s, start=now, end=now, now=now, rules=rules)
    assert got["yellow"] == expected.count(YELLOW)
    assert got["red"] == expected.count(RED)
    assert got["open"] == len(windows)
    assert 0 < expected.count(YELLOW) < len(windows) and 0 < expected.count(RED) < len(windows)


# ---------------------------------------------------------------- one-time login codes


async def test_login_code_works_once_for_active_staff(engine, settings):
    async with session_scope(engine) as s:
        await sync_reference_data(s, settings)
        code = await issue_login_code(s, 9000, NOW)
    assert len(normalize_code(code)) == 8
    async with session_scope(engine) as s:
        staff = await redeem_login_code(s, code.lower().replace("-", " "), NOW)
    assert staff is not None and staff.role == "admin"
    async with session_scope(engine) as s:
        assert await redeem_login_code(s, code, NOW) is None  # used up


async def test_login_code_expires_and_is_only_for_staff(engine, settings):
    async with session_scope(engine) as s:
        await sync_reference_data(s, settings)
        code = await issue_login_code(s, 9005, NOW)
        with raises_worded(NotPermitted, "工作人员"):
            await issue_login_code(s, RESIDENT_TID, NOW)
    async with session_scope(engine) as s:
        later = NOW + LOGIN_CODE_TTL + timedelta(seconds=1)
        assert await redeem_login_code(s, code, later) is None
        assert await redeem_login_code(s, "ABCD-EFGH", NOW) is None
        assert await redeem_login_code(s, "", NOW) is None
