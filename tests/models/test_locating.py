"""Locating a new case in a grid (models/locating.py) and the configured GridMap (models/gridmap.py)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import pytest
from shapely.geometry import MultiPolygon, Polygon, box, mapping

from geo import GridLocator, GridRecord, GridTree, PlaceMatcher
from models import cases, people
from models.engine import session_scope
from models.gridmap import GridMap, log_problems
from models.locating import GPS, HOME, PLACE, Location, locate_case, locate_new_case
from models.tables import Reporter
from whistle.config import DistrictSettings
from whistle.preflight import ERROR, OK, WARNING, check_grids

NOW = datetime(2026, 11, 24, 10, 0)


def rec(code, level, parent=None, places=()):
    return GridRecord(code, f"{code}名", level, parent, tuple(places))


# Coordinates are (lon, lat) in shapely and GeoJSON; boxes keep edges and vertices exact.
RECORDS = [
    rec("D", "district"),
    rec("D-A", "street", "D"),
    rec("D-A-1", "community", "D-A", ["银星村村部"]),
    rec("D-A-1-01", "grid", "D-A-1", ["森林海小区", "梅园路"]),
    rec("D-A-1-01-X", "micro", "D-A-1-01", ["森林海小区三期"]),
    rec("D-A-1-02", "grid", "D-A-1", ["梅园"]),
    rec("D-A-2", "community", "D-A"),
    rec("D-B", "street", "D"),
    rec("D-B-1", "community", "D-B", ["双子花园"]),
]
SHAPES = {
    "D-A": box(0, 0, 2, 2),
    "D-A-1": box(0, 0, 1, 2),
    "D-A-1-01": box(0, 0, 1, 1),
    "D-A-1-01-X": box(0.2, 0.2, 0.4, 0.4),
    "D-A-1-02": box(0, 1, 1, 2),
    "D-A-2": Polygon(box(1, 0, 2, 2).exterior, [box(1.4, 1.4, 1.6, 1.6).exterior]),
    "D-B": MultiPolygon([box(3, 0, 4, 1), box(5, 0, 6, 1)]),
    "D-B-1": MultiPolygon([box(3, 0, 4, 1), box(5, 0, 6, 1)]),
}


@pytest.fixture
def gridmap() -> GridMap:
    tree = GridTree(RECORDS)
    return GridMap(
        tree=tree, locator=GridLocator(tree, SHAPES), places=PlaceMatcher.from_tree(tree)
    )


def at(gridmap, lat, lon, **kw) -> Location:
    return locate_case(gridmap, latitude=lat, longitude=lon, **kw)


# ---------------------------------------------------------------- GPS


def test_a_point_lands_in_the_deepest_grid(gridmap):
    assert at(gridmap, 0.3, 0.3) == Location("D-A-1-01-X", GPS)
    assert at(gridmap, 0.7, 0.7) == Location("D-A-1-01", GPS)
    assert at(gridmap, 1.2, 1.2) == Location("D-A-2", GPS)


def test_points_on_shared_edges_and_vertices_land_in_one_grid_the_same_way_each_time(gridmap):
    # (lat 1, lon 0.5) is on the edge between grid 01 and grid 02: the lower code wins.
    assert at(gridmap, 1.0, 0.5).grid_code == "D-A-1-01"
    # The corner shared by four polygons of three levels: the deepest (grid), lowest code.
    assert at(gridmap, 1.0, 1.0).grid_code == "D-A-1-01"
    # On the micro-grid's own edge: inside it, as every other point of that polygon.
    assert at(gridmap, 0.2, 0.3).grid_code == "D-A-1-01-X"
    # The district's outer edge still belongs to it.
    assert at(gridmap, 0.0, 2.0).grid_code == "D-A-2"


def test_a_point_in_a_hole_is_not_in_the_holed_grid(gridmap):
    where = at(gridmap, 1.5, 1.5)
    # The hole lies inside the street, which then is the deepest grid covering the point.
    assert where == Location("D-A", GPS)


def test_each_part_of_a_multipolygon_counts_and_the_gap_between_them_does_not(gridmap):
    assert at(gridmap, 0.5, 3.5).grid_code == "D-B-1"
    assert at(gridmap, 0.5, 5.5).grid_code == "D-B-1"
    gap = at(gridmap, 0.5, 4.5)
    assert gap.grid_code is None and gap.out_of_grid


def test_a_point_outside_every_grid_is_flagged_never_dropped(gridmap):
    where = at(gridmap, 9.0, 9.0, text="路灯坏了")
    assert where == Location(None, None, out_of_grid=True)


def test_a_point_beats_a_place_named_in_the_text(gridmap):
    where = at(gridmap, 1.2, 1.2, text="森林海小区门口漏水", address="梅园路 3 号")
    assert where == Location("D-A-2", GPS)


def test_outside_every_grid_a_named_place_still_places_it_but_the_flag_stays(gridmap):
    where = at(gridmap, 9.0, 9.0, text="森林海小区门口漏水")
    assert where == Location("D-A-1-01", PLACE, out_of_grid=True, place="森林海小区")


def test_outside_every_grid_the_reporters_home_is_not_used(gridmap):
    # A point away from every grid says the reporter is not at home.
    where = at(gridmap, 9.0, 9.0, text="这里路灯坏了", home_grid_code="D-A-1-02")
    assert where == Location(None, None, out_of_grid=True)


# ---------------------------------------------------------------- places and home


def test_the_longest_place_wins_and_the_address_before_the_text(gridmap):
    assert locate_case(gridmap, text="森林海小区三期门口漏水") == Location(
        "D-A-1-01-X", PLACE, place="森林海小区三期"
    )
    assert (
        locate_case(gridmap, text="梅园路边的梅园有垃圾").grid_code == "D-A-1-01"
    )  # 梅园路 > 梅园
    where = locate_case(gridmap, text="森林海小区的人常去那边", address="双子花园 5 栋")
    assert where == Location("D-B-1", PLACE, place="双子花园")


def test_full_width_and_spaces_do_not_hide_a_place(gridmap):
    assert locate_case(gridmap, text="森林海 小区停水").grid_code == "D-A-1-01"


def test_without_a_point_or_a_place_the_home_is_used(gridmap):
    assert locate_case(gridmap, text="楼道灯坏了", home_grid_code="D-A-1-02") == Location(
        "D-A-1-02", HOME
    )
    assert locate_case(gridmap, text="在梅园路", home_grid_code="D-A-1-02").located_by == PLACE


def test_a_home_no_longer_configured_is_ignored(gridmap):
    assert locate_case(gridmap, text="楼道灯坏了", home_grid_code="D-GONE") == Location()


def test_nothing_known_leaves_the_case_unlocated_for_triage(gridmap):
    assert locate_case(gridmap, text="楼道灯坏了") == Location()


def test_without_boundaries_a_point_is_not_flagged_and_places_still_work(gridmap):
    no_gps = dataclasses.replace(gridmap, locator=None)
    assert at(no_gps, 9.0, 9.0, text="路灯坏了") == Location()
    assert at(no_gps, 9.0, 9.0, text="梅园路灯坏了").grid_code == "D-A-1-01"


def test_an_empty_gridmap_locates_nothing():
    assert at(GridMap(), 0.5, 0.5, text="森林海小区", home_grid_code="D-A") == Location()


# ---------------------------------------------------------------- the configured GridMap


def demo_map(settings, **district) -> GridMap:
    return GridMap.from_settings(
        dataclasses.replace(settings, district=dataclasses.replace(settings.district, **district))
    )


def test_the_demo_district_locates_by_point_and_place(settings):
    gridmap = GridMap.from_settings(settings)
    assert gridmap.problems == []
    assert len(gridmap.tree) >= 60 and gridmap.locator is not None
    assert gridmap.locate(28.37, 112.82) == "WC-YLD-YX-01"
    assert gridmap.locate(39.90, 116.40) is None
    assert gridmap.match_place("森林海小区门口漏水") == ("WC-YLD-YX-01", "森林海小区")
    assert gridmap.path_names("WC-YLD-YX-01") == "月亮岛街道 › 银星村 › 银星村第一网格"
    assert [g.name for g in gridmap.children(None)] == ["白鹭湖街道", "高塘岭街道", "月亮岛街道"]


def test_a_missing_boundary_file_turns_off_gps_only(settings, tmp_path):
    gridmap = demo_map(settings, grid_boundaries=str(tmp_path / "nowhere.geojson"))
    assert gridmap.locator is None and gridmap.places is not None
    assert any("nowhere.geojson" in m for _, m in gridmap.problems)
    assert any("按定位归网格未启用" in m for _, m in gridmap.problems)
    assert gridmap.match_place("梅园路") == ("WC-GTL-MY-01", "梅园路")


def test_a_malformed_boundary_file_is_reported_and_left_out(settings, tmp_path):
    broken = tmp_path / "broken.geojson"
    broken.write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    gridmap = demo_map(settings, grid_boundaries=str(broken))
    assert gridmap.locator is None
    findings = check_grids(
        dataclasses.replace(
            settings, district=dataclasses.replace(settings.district, grid_boundaries=str(broken))
        )
    )
    assert {f.level for f in findings} == {WARNING, OK}  # never an error: the bot starts
    assert any("不是有效的 JSON" in f.message for f in findings)


def test_a_feature_with_an_unknown_code_is_left_out_and_the_rest_kept(settings, tmp_path):
    features = [
        {
            "type": "Feature",
            "properties": {"code": "WC-NOPE"},
            "geometry": mapping(box(112.8, 28.3, 112.9, 28.4)),
        },
        {
            "type": "Feature",
            "properties": {"code": "WC-YLD"},
            "geometry": mapping(box(112.8, 28.3, 112.9, 28.4)),
        },
    ]
    path = tmp_path / "b.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), "utf-8")
    gridmap = demo_map(settings, grid_boundaries=str(path))
    assert any("WC-NOPE" in m for _, m in gridmap.problems)
    assert gridmap.locate(28.35, 112.85) == "WC-YLD"


def test_a_broken_gazetteer_falls_back_to_the_grids_in_config(settings, tmp_path):
    bad = tmp_path / "grids.csv"
    bad.write_text("code,name\nWC,望城区\n", encoding="utf-8")
    gridmap = demo_map(settings, gazetteer=str(bad), grid_boundaries="")
    assert any(sev == ERROR and "缺少列" in m for sev, m in gridmap.problems)
    assert gridmap.tree is not None and "WC-YLD-YX-01" in gridmap
    assert len(gridmap.tree) == len(settings.grids)


def test_places_in_config_grids_are_added_to_the_gazetteers(settings):
    grids = tuple(
        dataclasses.replace(g, places=["白沙井小区"]) if g.code == "WC-GTL-XC-01" else g
        for g in settings.grids
    )
    gridmap = GridMap.from_settings(dataclasses.replace(settings, grids=grids))
    assert gridmap.match_place("白沙井小区停电") == ("WC-GTL-XC-01", "白沙井小区")
    assert gridmap.match_place("锦绣花园停电") == ("WC-GTL-XC-01", "锦绣花园")  # the gazetteer's


def test_no_grids_configured_means_no_grid_features(settings):
    gridmap = GridMap.from_settings(
        dataclasses.replace(
            settings, grids=(), district=DistrictSettings(name="X", case_prefix="X")
        )
    )
    assert gridmap.tree is None and gridmap.problems == []
    assert (
        check_grids(
            dataclasses.replace(
                settings, grids=(), district=DistrictSettings(name="X", case_prefix="X")
            )
        )[0].level
        == OK
    )


# ---------------------------------------------------------------- in the store


async def test_a_new_case_is_located_with_the_reporters_home_from_the_store(seeded):
    gridmap = GridMap.from_settings(seeded.settings)
    async with session_scope(seeded.engine) as s:
        reporter = await people.get_or_create_reporter(s, 7001, "王阿姨", now=NOW)
        reporter.home_grid_code, reporter.home_place = "WC-GTL-MY-02", "石门苑"
        s.add(reporter)
    async with session_scope(seeded.engine) as s:
        where = await locate_new_case(
            s,
            gridmap,
            telegram_id=7001,
            latitude=None,
            longitude=None,
            text="楼道灯坏了",
            address=None,
        )
        assert where == Location("WC-GTL-MY-02", HOME)
        case = await cases.create_case(
            s,
            reporter_telegram_id=7001,
            text="楼道灯坏了",
            now=NOW,
            grid_code=where.grid_code,
            located_by=where.located_by,
        )
        unknown = await locate_new_case(
            s,
            gridmap,
            telegram_id=7002,
            latitude=28.0,
            longitude=112.0,
            text="路灯坏了",
            address=None,
        )
    assert unknown == Location(out_of_grid=True)
    async with session_scope(seeded.engine) as s:
        stored = await cases.get_case(s, case.id)
        assert (stored.grid_code, stored.located_by, stored.out_of_grid) == (
            "WC-GTL-MY-02",
            HOME,
            False,
        )
        assert (await s.get(Reporter, reporter.id)).home_place == "石门苑"


def test_problems_are_logged_once_at_start_errors_as_errors(settings, tmp_path, caplog):
    gridmap = demo_map(settings, grid_boundaries=str(tmp_path / "gone.geojson"))
    with caplog.at_level("WARNING", logger="models.gridmap"):
        log_problems(gridmap)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("ERROR", f"网格: 边界文件不存在: {tmp_path / 'gone.geojson'}") in lines
    assert len(lines) == len(gridmap.problems)
