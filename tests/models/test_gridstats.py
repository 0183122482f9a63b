"""Figures grid by grid (models/gridstats.py) on SQLite and PostgreSQL, against the known
cases of tests/models/test_stats.py (NOW is 2026-03-18 14:00 district time) placed in the demo grids:

    C1  WC-YLD-YX-01-A  micro   closed, on time, 满意            (March)
    C3  WC-YLD-YX-01    grid    closed, on time, 基本满意, 企业  (March)
    C2  WC-GTL-XC-01    grid    resolved late, unrated            (March)
    B1  WC-GTL-XC-01    grid    closed, on time, 满意            (March: 03-01 00:00 local)
    C5  WC-GTL          street  dispatched, open and yellow       (March)

Every other case has no grid: March has 12 cases (C1–C12 less the merged C9, plus B1), 8 open
(2 yellow, 3 red), so 7 received and 7 open are 未关联网格.

GRID_WORK (below) then runs the grid workflow over some of them for 小事不出网格率 /
大事不出街镇率, the channels (哨) and 报到 from a whistle.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from models import gridstats, stats
from models.engine import session_scope
from models.lifecycle import DEPARTMENT_LEVEL, GRID_LEVEL, STREET_LEVEL
from models.tables import API, GRID_REPORT, HOTLINE, Case
from tests.models.test_stats import NOW, at, seed_known_cases


@pytest.fixture
async def known(engine, settings):
    return await seed_known_cases(engine, settings)


async def league(engine, rules):
    return await gridstats.grid_league(engine, now=NOW, rules=rules)


def pick(row: dict, *keys: str) -> dict:
    return {k: row[k] for k in keys}


FIGURES = (
    "created",
    "dispatched",
    "done",
    "open",
    "yellow",
    "red",
    "completion_rate",
    "on_time_rate",
    "satisfaction_rate",
)


async def test_district_view_rolls_every_grid_up_to_its_street(engine, rules, known):
    view = (await league(engine, rules)).view()
    node = view["node"]
    assert pick(node, "code", "name", "level", "created", "open", "yellow", "red") == {
        "code": "WC",
        "name": "望城区",
        "level": "district",
        "created": 12,
        "open": 8,
        "yellow": 2,
        "red": 3,
    }
    assert node["unplaced"] == {"name": "未关联网格", "received": 7, "open": 7}
    assert view["path"] == [] and view["level"] == "street"
    # Worst first: 高塘岭 has the one yellow case; the two without lights by on-time rate, code.
    assert [r["code"] for r in view["rows"]] == ["WC-GTL", "WC-BLH", "WC-YLD"]
    gtl, blh, yld = view["rows"]
    assert pick(gtl, *FIGURES) == {
        "created": 3,
        "dispatched": 3,
        "done": 2,
        "open": 1,
        "yellow": 1,
        "red": 0,
        "completion_rate": 2 / 3,
        "on_time_rate": 0.5,
        "satisfaction_rate": 1.0,
    }
    assert gtl["light"] == "yellow" and gtl["has_children"] is True
    assert pick(yld, *FIGURES) == {
        "created": 2,
        "dispatched": 2,
        "done": 2,
        "open": 0,
        "yellow": 0,
        "red": 0,
        "completion_rate": 1.0,
        "on_time_rate": 1.0,
        "satisfaction_rate": 1.0,
    }
    assert pick(blh, "created", "open", "completion_rate", "on_time_rate") == {
        "created": 0,
        "open": 0,
        "completion_rate": None,
        "on_time_rate": None,
    }
    # The district's own figures are the month's figures of models/stats.py, one rule for both.
    async with session_scope(engine) as s:
        month = stats.month_bounds(NOW, rules.calendar)
        overall = await stats.summary(s, start=month[0], end=month[1], now=NOW, rules=rules)
    assert pick(node, *FIGURES) == pick(overall, *FIGURES)


async def test_drill_down_street_community_grid(engine, rules, known):
    grids = await league(engine, rules)
    street = grids.view("WC-GTL")
    assert street["path"] == [{"code": "WC-GTL", "name": "高塘岭街道"}]
    assert street["level"] == "community" and street["level_title"] == "社区（村）"
    assert street["node"]["created"] == 3  # C5 sits on the street itself, above any community
    assert [r["code"] for r in street["rows"]] == ["WC-GTL-XC", "WC-GTL-GH", "WC-GTL-MY"]
    assert street["rows"][0]["created"] == 2 and street["rows"][0]["on_time_rate"] == 0.5

    community = grids.view("WC-YLD-YX")
    rows = {r["code"]: r for r in community["rows"]}
    assert community["level"] == "grid" and len(rows) == 5
    assert pick(rows["WC-YLD-YX-01"], "created", "done", "satisfaction_rate") == {
        "created": 2,
        "done": 2,
        "satisfaction_rate": 1.0,
    }
    assert rows["WC-YLD-YX-02"]["created"] == 0

    grid = grids.view("WC-YLD-YX-01")
    assert [p["name"] for p in grid["path"]] == ["月亮岛街道", "银星村", "银星村第一网格"]
    assert grid["level"] == "micro"
    micro = {r["code"]: r for r in grid["rows"]}
    assert micro["WC-YLD-YX-01-A"]["created"] == 1 and micro["WC-YLD-YX-01-B"]["created"] == 0
    assert micro["WC-YLD-YX-01-A"]["has_children"] is False

    with pytest.raises(KeyError):
        grids.view("WC-NOWHERE")


async def test_red_cases_with_a_location_are_map_points_within_their_area(engine, rules, known):
    # C6 (red, 30 h over) and C10 (red, 6 h over) get a place; P1 stays without one.
    async with session_scope(engine) as s:
        await s.exec(
            update(Case)
            .where(Case.id == known["C6"])
            .values(grid_code="WC-YLD-YX-02", latitude=28.35, longitude=112.85)
        )
        await s.exec(
            update(Case)
            .where(Case.id == known["C10"])
            .values(grid_code="WC-GTL-XC-02", latitude=28.30, longitude=112.90)
        )
    grids = await league(engine, rules)
    assert [
        (p["ref"], p["hours_overdue"], p["department"]) for p in grids.view()["red_points"]
    ] == [("C6", 30.0, "住建局"), ("C10", 6.0, "水务局")]
    assert [p["ref"] for p in grids.view("WC-YLD")["red_points"]] == ["C6"]
    assert grids.view("WC-YLD-YX-03")["red_points"] == []
    street = grids.view()["rows"]
    assert [(r["code"], r["red"]) for r in street[:2]] == [("WC-GTL", 1), ("WC-YLD", 1)]
    assert grids.view()["node"]["unplaced"]["open"] == 5


async def test_counts_per_channel_and_report_time_per_department(engine, rules, known):
    # 报到 (派单 → 签收): C1 signs 3 h after dispatch (on time), C3 30 h after (limit 24 h).
    async with session_scope(engine) as s:
        await s.exec(
            update(Case)
            .where(Case.id == known["C1"])
            .values(signed_at=at(3, 2, 2) + timedelta(hours=3))
        )
        await s.exec(update(Case).where(Case.id == known["C3"]).values(signed_at=at(3, 11, 6)))
    extras = await gridstats.grid_extras(engine, now=NOW, rules=rules)
    channels = {r["channel"]: (r["name"], r["count"]) for r in extras["channels"]}
    assert channels["resident"] == ("随手拍", 10) and channels["enterprise"] == ("企业吹哨", 2)
    reports = [
        (r["code"], r["reported"], r["avg_report_hours"], r["report_on_time_rate"])
        for r in extras["report_times"]
    ]
    # water: C1 3 h, C2 0, C3 30 h, C12 0 → 8.25 h, 3 of 4 on time; B0 is February's.
    assert reports == [
        ("water", 4, 8.25, 0.75),
        ("housing", 2, 0.0, 1.0),
        ("municipal", 1, 0.0, 1.0),
    ]


async def test_a_grid_no_longer_in_the_table_counts_for_the_district_only(engine, rules, known):
    index = gridstats.GridIndex.from_rows(
        [
            ("D", "区", "district", None),
            ("S", "街道", "street", "D"),
            ("G", "网格", "grid", "S"),
            ("X", "孤儿", "grid", "MISSING"),
        ]
    )

    def counts(**values):
        return [values.get(name, 0) for name in gridstats.COUNTS]

    period = {"G": counts(created=2), "GONE": counts(created=5), None: counts(created=1)}
    current = {"G": counts(open=1), "X": counts(open=4)}
    rolled, total, unplaced = gridstats.roll_up(index, period, current)
    street, district = gridstats.as_tally(rolled["S"]), gridstats.as_tally(rolled["D"])
    assert (street.created, street.open, district.created, district.open) == (2, 1, 2, 1)
    assert (total.created, total.open, unplaced.created, unplaced.open) == (8, 5, 6, 0)
    assert gridstats.as_tally(rolled["X"]).open == 4
    assert index.top() == (None, ["D", "X"])  # a row whose parent is gone becomes a root


async def test_area_view_counts_only_the_grid_and_below(engine, rules, known):
    """Grid staff's /stats: the community 新城社区 sees its grids; C5 on the street is not its."""
    month = stats.month_bounds(NOW, rules.calendar)
    async with session_scope(engine) as s:
        view = await gridstats.area_view(
            s, "WC-GTL-XC", start=month[0], end=month[1], now=NOW, rules=rules
        )
        gone = await gridstats.area_view(
            s, "WC-GONE", start=month[0], end=month[1], now=NOW, rules=rules
        )
    assert gone is None
    assert [p["name"] for p in view["path"]] == ["高塘岭街道", "新城社区"]
    assert pick(view["node"], "created", "done", "open", "on_time_rate") == {
        "created": 2,
        "done": 2,
        "open": 0,
        "on_time_rate": 0.5,
    }
    assert [(r["code"], r["created"]) for r in view["rows"]][:1] == [("WC-GTL-XC-01", 2)]
    assert len(view["rows"]) == 6 and view["level_title"] == "网格"  # WC-GTL-XC-01 … 06


# ---------------------------------------------------------------- 吹哨报到 in the grid

# The known cases after the grid workflow (models/gridwork.py), each as its transitions leave
# it: a 交网格办理 stamps dispatched_at and clears the department; the grid's 签收 stamps
# signed_at; a 吹哨 to a department stamps whistled_at and dispatched_at alike and clears
# signed_at, so the department's 签收 is its 报到.
GRID_WORK = {
    # 小事不出网格: resolved by the micro-grid's staff.
    "C1": {
        "started_in_grid": True,
        "department_code": None,
        "signed_at": at(3, 2, 3),
        "resolved_level": GRID_LEVEL,
    },
    # 大事不出街镇: the grid whistled up to the street, whose staff signed and resolved it.
    "C3": {
        "started_in_grid": True,
        "department_code": None,
        "whistled_at": at(3, 10, 1),
        "whistle_level": "grid",
        "dispatched_at": at(3, 10, 1),
        "signed_at": at(3, 10, 2),
        "resolved_level": STREET_LEVEL,
    },
    # Whistled to 水务局 at 02:00, which reported (签收) at 05:00: 3 h, within sign_by 09:00;
    # resolved by the department and 核查通过 by the grid.
    "C2": {
        "started_in_grid": True,
        "whistled_at": at(3, 3, 2),
        "whistle_level": "grid",
        "dispatched_at": at(3, 3, 2),
        "signed_at": at(3, 3, 5),
        "resolved_level": DEPARTMENT_LEVEL,
    },
    # Resolved in its grid on the first of the month.
    "B1": {"started_in_grid": True, "department_code": None, "resolved_level": GRID_LEVEL},
    # Whistled to 水务局 at 02:00, 退回 and dispatched again at 06:00 (the seed's dispatch),
    # signed at 10:00: 报到 counts from the later call, 4 h. Still open.
    "C12": {
        "started_in_grid": True,
        "whistled_at": at(3, 14, 2),
        "whistle_level": "grid",
        "signed_at": at(3, 14, 10),
    },
    # Whistled up by the street, not signed yet: open, so in no rate's denominator.
    "C5": {"started_in_grid": True, "whistled_at": at(3, 18), "whistle_level": "street"},
    # A grid worker's own report from the field (雷锋哨), still with triage.
    "C8": {"channel": GRID_REPORT},
    # February: resolved in a grid, outside March's figures.
    "P2": {
        "started_in_grid": True,
        "grid_code": "WC-YLD-YX-02",
        "department_code": None,
        "resolved_level": GRID_LEVEL,
    },
    "C4": {"channel": HOTLINE},
    "C10": {"channel": HOTLINE},
    "C7": {"channel": API},
    "C6": {"is_hard": True},  # 攻坚哨, whatever it came in by (an enterprise's report)
}


async def seed_grid_work(engine) -> None:
    """GRID_WORK over the known cases (seed_known_cases first)."""
    async with session_scope(engine) as s:
        for ref, values in GRID_WORK.items():
            await s.exec(update(Case).where(Case.ref == ref).values(**values))


@pytest.fixture
async def grid_work(engine, known):
    await seed_grid_work(engine)
    return known


RATES = ("grid_done", "in_grid", "in_street", "in_grid_rate", "in_street_rate")


async def test_small_matters_stay_in_the_grid_rates_per_level(engine, rules, grid_work):
    grids = await league(engine, rules)
    top = grids.view()
    # March's grid-started cases done: C1 (grid), B1 (grid), C3 (street), C2 (department);
    # C12 and C5 are open, P2 is February's.
    assert pick(top["node"], *RATES) == {
        "grid_done": 4,
        "in_grid": 2,
        "in_street": 3,
        "in_grid_rate": 0.5,
        "in_street_rate": 0.75,
    }
    streets = {r["code"]: pick(r, *RATES) for r in top["rows"]}
    assert streets == {
        "WC-YLD": {
            "grid_done": 2,
            "in_grid": 1,
            "in_street": 2,  # C1, C3
            "in_grid_rate": 0.5,
            "in_street_rate": 1.0,
        },
        "WC-GTL": {
            "grid_done": 2,
            "in_grid": 1,
            "in_street": 1,  # B1, C2
            "in_grid_rate": 0.5,
            "in_street_rate": 0.5,
        },
        "WC-BLH": {
            "grid_done": 0,
            "in_grid": 0,
            "in_street": 0,
            "in_grid_rate": None,
            "in_street_rate": None,
        },
    }
    community = {r["code"]: r for r in grids.view("WC-YLD-YX")["rows"]}
    assert pick(community["WC-YLD-YX-01"], "grid_done", "in_grid_rate", "in_street_rate") == {
        "grid_done": 2,
        "in_grid_rate": 0.5,
        "in_street_rate": 1.0,
    }
    assert community["WC-YLD-YX-02"]["in_grid_rate"] is None  # P2 is not this month's
    micro = {r["code"]: r for r in grids.view("WC-YLD-YX-01")["rows"]}
    assert (micro["WC-YLD-YX-01-A"]["in_grid_rate"], micro["WC-YLD-YX-01-A"]["in_street_rate"]) == (
        1.0,
        1.0,
    )
    # The other figures are the ones without the grid workflow.
    assert top["node"]["created"] == 12 and top["node"]["done"] == 5


async def test_rates_in_grid_staffs_area_view(engine, rules, grid_work):
    month = stats.month_bounds(NOW, rules.calendar)
    async with session_scope(engine) as s:
        view = await gridstats.area_view(
            s, "WC-GTL-XC", start=month[0], end=month[1], now=NOW, rules=rules
        )
    assert pick(view["node"], "grid_done", "in_grid_rate", "in_street_rate") == {
        "grid_done": 2,
        "in_grid_rate": 0.5,
        "in_street_rate": 0.5,
    }
    assert view["rows"][0]["code"] == "WC-GTL-XC-01" and view["rows"][0]["grid_done"] == 2


async def test_channels_as_the_seed_reports_them_and_report_time_from_the_whistle(
    engine, rules, grid_work
):
    extras = await gridstats.grid_extras(engine, now=NOW, rules=rules)
    # 雷锋哨: C2, C3, C5, C12 whistled and C8 from the field; 攻坚哨 C6 (an enterprise's);
    # 热线哨 C4, C10; 其他平台 C7; 随手拍 C1, C11, B1. No 企业吹哨 is left: not listed.
    # Ties keep the order 攻坚哨, 雷锋哨, 热线哨, 其他平台, 企业吹哨, 随手拍.
    assert [(r["name"], r["count"]) for r in extras["channels"]] == [
        ("雷锋哨", 5),
        ("随手拍", 3),
        ("热线哨", 2),
        ("攻坚哨", 1),
        ("其他平台", 1),
    ]
    assert sum(r["count"] for r in extras["channels"]) == 12  # each case in one channel
    # 水务局 reported C2 (3 h from the whistle) and C12 (4 h from the later dispatch), both
    # whistled up; C1 and C3 stayed in the grid and the street: their 签收 is no 报到.
    # 住建局: C4 and C6 signed at dispatch. 市政局 had only B1, which the grid resolved.
    assert [
        (r["name"], r["reported"], r["whistled"], r["avg_report_hours"], r["report_on_time_rate"])
        for r in extras["report_times"]
    ] == [("水务局", 2, 2, 3.5, 1.0), ("住建局", 2, 0, 0.0, 1.0)]


async def test_a_late_report_after_a_whistle_is_late(engine, rules, grid_work):
    # 水务局 signs C2 at 11:00, 9 h after the whistle and past its sign_by (09:00).
    async with session_scope(engine) as s:
        await s.exec(update(Case).where(Case.ref == "C2").values(signed_at=at(3, 3, 11)))
    water = (await gridstats.grid_extras(engine, now=NOW, rules=rules))["report_times"][0]
    assert (water["code"], water["avg_report_hours"], water["report_on_time_rate"]) == (
        "water",
        6.5,
        0.5,
    )


async def test_an_empty_month_lists_no_channel(engine, rules, known):
    extras = await gridstats.grid_extras(engine, now=at(6, 15), rules=rules)
    assert extras == {"channels": [], "report_times": []}
