"""Figures grid by grid (models/gridstats.py) on SQLite and PostgreSQL, against the known
cases of tests/test_stats.py (NOW is 2026-03-18 14:00 district time) placed in the demo grids:

    C1  WC-YLD-YX-01-A  micro   closed, on time, 满意            (March)
    C3  WC-YLD-YX-01    grid    closed, on time, 基本满意, 企业  (March)
    C2  WC-GTL-XC-01    grid    resolved late, unrated            (March)
    B1  WC-GTL-XC-01    grid    closed, on time, 满意            (March: 03-01 00:00 local)
    C5  WC-GTL          street  dispatched, open and yellow       (March)

Every other case has no grid: March has 12 cases (C1–C12 less the merged C9, plus B1), 8 open
(2 yellow, 3 red), so 7 received and 7 open are 未关联网格.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from models import gridstats, stats
from models.engine import session_scope
from models.tables import Case
from tests.test_stats import NOW, at, seed_known_cases


@pytest.fixture
async def known(engine, settings):
    return await seed_known_cases(engine, settings)


async def league(engine, rules):
    return await gridstats.grid_league(engine, now=NOW, rules=rules)


def pick(row: dict, *keys: str) -> dict:
    return {k: row[k] for k in keys}


FIGURES = ("created", "dispatched", "done", "open", "yellow", "red", "completion_rate",
           "on_time_rate", "satisfaction_rate")


async def test_district_view_rolls_every_grid_up_to_its_street(engine, rules, known):
    view = (await league(engine, rules)).view()
    node = view["node"]
    assert pick(node, "code", "name", "level", "created", "open", "yellow", "red") == {
        "code": "WC", "name": "望城区", "level": "district", "created": 12, "open": 8,
        "yellow": 2, "red": 3}
    assert node["unplaced"] == {"name": "未关联网格", "received": 7, "open": 7}
    assert view["path"] == [] and view["level"] == "street"
    # Worst first: 高塘岭 has the one yellow case; the two without lights by on-time rate, code.
    assert [r["code"] for r in view["rows"]] == ["WC-GTL", "WC-BLH", "WC-YLD"]
    gtl, blh, yld = view["rows"]
    assert pick(gtl, *FIGURES) == {
        "created": 3, "dispatched": 3, "done": 2, "open": 1, "yellow": 1, "red": 0,
        "completion_rate": 2 / 3, "on_time_rate": 0.5, "satisfaction_rate": 1.0}
    assert gtl["light"] == "yellow" and gtl["has_children"] is True
    assert pick(yld, *FIGURES) == {
        "created": 2, "dispatched": 2, "done": 2, "open": 0, "yellow": 0, "red": 0,
        "completion_rate": 1.0, "on_time_rate": 1.0, "satisfaction_rate": 1.0}
    assert pick(blh, "created", "open", "completion_rate", "on_time_rate") == {
        "created": 0, "open": 0, "completion_rate": None, "on_time_rate": None}
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
        "created": 2, "done": 2, "satisfaction_rate": 1.0}
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
        await s.exec(update(Case).where(Case.id == known["C6"]).values(
            grid_code="WC-YLD-YX-02", latitude=28.35, longitude=112.85))
        await s.exec(update(Case).where(Case.id == known["C10"]).values(
            grid_code="WC-GTL-XC-02", latitude=28.30, longitude=112.90))
    grids = await league(engine, rules)
    assert [(p["ref"], p["hours_overdue"], p["department"]) for p in grids.view()["red_points"]
            ] == [("C6", 30.0, "住建局"), ("C10", 6.0, "水务局")]
    assert [p["ref"] for p in grids.view("WC-YLD")["red_points"]] == ["C6"]
    assert grids.view("WC-YLD-YX-03")["red_points"] == []
    street = grids.view()["rows"]
    assert [(r["code"], r["red"]) for r in street[:2]] == [("WC-GTL", 1), ("WC-YLD", 1)]
    assert grids.view()["node"]["unplaced"]["open"] == 5


async def test_counts_per_channel_and_report_time_per_department(engine, rules, known):
    # 报到 (派单 → 签收): C1 signs 3 h after dispatch (on time), C3 30 h after (limit 24 h).
    async with session_scope(engine) as s:
        await s.exec(update(Case).where(Case.id == known["C1"]).values(
            signed_at=at(3, 2, 2) + timedelta(hours=3)))
        await s.exec(update(Case).where(Case.id == known["C3"]).values(signed_at=at(3, 11, 6)))
    extras = await gridstats.grid_extras(engine, now=NOW, rules=rules)
    channels = {r["channel"]: (r["name"], r["count"]) for r in extras["channels"]}
    assert channels["resident"] == ("随手拍", 10) and channels["enterprise"] == ("企业吹哨", 2)
    reports = [(r["code"], r["reported"], r["avg_report_hours"], r["report_on_time_rate"])
               for r in extras["report_times"]]
    # water: C1 3 h, C2 0, C3 30 h, C12 0 → 8.25 h, 3 of 4 on time; B0 is February's.
    assert reports == [("water", 4, 8.25, 0.75), ("housing", 2, 0.0, 1.0),
                       ("municipal", 1, 0.0, 1.0)]


async def test_a_grid_no_longer_in_the_table_counts_for_the_district_only(engine, rules, known):
    index = gridstats.GridIndex.from_rows([
        ("D", "区", "district", None), ("S", "街道", "street", "D"),
        ("G", "网格", "grid", "S"), ("X", "孤儿", "grid", "MISSING")])
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
        view = await gridstats.area_view(s, "WC-GTL-XC", start=month[0], end=month[1], now=NOW,
                                         rules=rules)
        gone = await gridstats.area_view(s, "WC-GONE", start=month[0], end=month[1], now=NOW,
                                         rules=rules)
    assert gone is None
    assert [p["name"] for p in view["path"]] == ["高塘岭街道", "新城社区"]
    assert pick(view["node"], "created", "done", "open", "on_time_rate") == {
        "created": 2, "done": 2, "open": 0, "on_time_rate": 0.5}
    assert [(r["code"], r["created"]) for r in view["rows"]][:1] == [("WC-GTL-XC-01", 2)]
    assert len(view["rows"]) == 6 and view["level_title"] == "网格"  # WC-GTL-XC-01 … 06
