"""geo/: the grid tree, gazetteer, GeoJSON boundaries, point locating and place matching."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box, mapping

from geo import (
    ERROR,
    WARNING,
    GridError,
    GridLocator,
    GridRecord,
    GridTree,
    PlaceMatcher,
    load_boundaries,
    load_gazetteer,
    normalise,
    parse_boundaries,
    records_from_config,
    write_gazetteer,
)
from geo.demo import make_demo

DEMO = Path(make_demo.__file__).parent
DEMO_BBOX = (112.55, 28.15, 113.05, 28.60)  # config.toml's [district] bbox


def rec(code, level, parent=None, name=None, places=()):
    return GridRecord(code, name or f"{code}名", level, parent, tuple(places))


# A small district. Coordinates are (lon, lat); boxes keep edges and vertices exact.
RECORDS = [
    rec("WC", "district", name="望城区"),
    rec("WC-A", "street", "WC", "月亮岛街道"),
    rec("WC-A-1", "community", "WC-A", "银星村", ["银星村村部"]),
    rec("WC-A-1-01", "grid", "WC-A-1", "银星村第一网格", ["森林海小区", "梅园路"]),
    rec("WC-A-1-01-X", "micro", "WC-A-1-01", "汉王陵片区微网格"),
    rec("WC-A-1-02", "grid", "WC-A-1", "银星村第二网格"),
    rec("WC-A-2", "community", "WC-A", "月塘社区"),
    rec("WC-B", "street", "WC", "高塘岭街道"),
    rec("WC-B-1", "community", "WC-B", "新城社区"),
    rec("WC-B-1-P", "area", "WC-B-1", "新城北片"),  # 片: the optional level
    rec("WC-B-1-P-01", "grid", "WC-B-1-P", "新城北片第一网格"),
]
HOLE = box(1.4, 1.4, 1.6, 1.6)
SHAPES = {
    "WC-A": box(0, 0, 2, 2),
    "WC-A-1": box(0, 0, 1, 2),
    "WC-A-1-01": box(0, 0, 1, 1),
    "WC-A-1-01-X": box(0.2, 0.2, 0.4, 0.4),
    "WC-A-1-02": box(0, 1, 1, 2),
    "WC-A-2": Polygon(box(1, 0, 2, 2).exterior, [HOLE.exterior]),
    "WC-B": MultiPolygon([box(3, 0, 4, 1), box(5, 0, 6, 1)]),
    "WC-B-1": MultiPolygon([box(3, 0, 4, 1), box(5, 0, 6, 1)]),
    "WC-B-1-P": box(3, 0, 4, 1),
    "WC-B-1-P-01": box(3, 0, 4, 1),
}


@pytest.fixture
def tree() -> GridTree:
    return GridTree(RECORDS)


@pytest.fixture
def locator(tree) -> GridLocator:
    return GridLocator(tree, SHAPES)


def collection(shapes: dict) -> dict:
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"code": code}, "geometry": mapping(geom)}
            for code, geom in shapes.items()
        ],
    }


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def messages(problems, severity):
    return [p.message for p in problems if p.severity == severity]


# --- the grid tree ------------------------------------------------------------------------


def test_path_names_start_at_the_street(tree):
    assert tree.path_names("WC-A-1-01") == "月亮岛街道 › 银星村 › 银星村第一网格"
    assert tree.path_names("WC-B-1-P-01") == "高塘岭街道 › 新城社区 › 新城北片 › 新城北片第一网格"
    assert tree.path_names("WC") == ""


def test_walking_up_and_down(tree):
    assert tree.ancestors("WC-A-1-01-X") == ("WC-A-1-01", "WC-A-1", "WC-A", "WC")
    assert tree.lineage("WC-A-1") == ("WC-A-1", "WC-A", "WC")
    assert tree.children("WC-A") == ("WC-A-1", "WC-A-2")
    assert tree.descendants("WC-A-1") == ("WC-A-1-01", "WC-A-1-01-X", "WC-A-1-02")
    assert tree.subtree("WC-B") == ("WC-B", "WC-B-1", "WC-B-1-P", "WC-B-1-P-01")
    assert tree.descendants("WC-A-1-02") == ()
    assert tree.level_of("WC-B-1-P") == "area"
    assert tree.depth("WC-A-1-01-X") > tree.depth("WC-A-1-01") > tree.depth("WC-B-1-P")
    assert tree.is_within("WC-A-1-01-X", "WC-A") and not tree.is_within("WC-A", "WC-A-1")
    assert tree.roots == ("WC",) and len(tree) == len(RECORDS)


def test_unknown_code_is_named(tree):
    with pytest.raises(KeyError, match="未知网格编码 WC-Z"):
        tree.level_of("WC-Z")


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([rec("WC", "district"), rec("WC-A", "street", "WC-Z")], "WC-A 的上级 WC-Z 不存在"),
        ([rec("WC", "district"), rec("WC", "district")], "网格编码 WC 重复"),
        (
            [rec("WC", "district"), rec("WC-A", "grid", "WC"), rec("WC-A-1", "community", "WC-A")],
            "WC-A-1 的层级（社区）应低于上级 WC-A（网格）",
        ),
        (
            [rec("WC", "district"), rec("WC-A", "street", "WC"), rec("WC-A-1", "street", "WC-A")],
            "WC-A-1 的层级（街道）应低于上级 WC-A（街道）",
        ),
        ([rec("WC", "district"), rec("WC-A", "village", "WC")], "WC-A 的层级 'village' 无效"),
        ([rec("WC", "district"), rec("WC-A", "grid")], "网格 WC-A（WC-A名）缺少上级网格"),
        ([rec("WC", "district"), GridRecord("WC-A", " ", "street", "WC")], "网格 WC-A 缺少名称"),
        ([rec("WC", "district"), rec("WC A", "street", "WC")], "不能为空或含空格"),
    ],
)
def test_tree_refuses_bad_records_naming_the_code(records, expected):
    with pytest.raises(GridError) as caught:
        GridTree(records)
    assert any(expected in p for p in caught.value.problems), caught.value.problems


def test_tree_lists_every_problem_at_once():
    with pytest.raises(GridError) as caught:
        GridTree(
            [
                rec("WC", "district"),
                rec("WC-A", "street", "WC-Z"),
                rec("WC", "district"),
                rec("WC-B", "micro", "WC"),
                rec("WC-B-1", "grid", "WC-B"),
            ]
        )
    assert len(caught.value.problems) == 3
    assert str(caught.value) == "\n".join(caught.value.problems)


def test_levels_may_be_skipped_and_streets_may_be_roots():
    tree = GridTree(
        [
            rec("YLD", "street"),
            rec("YLD-1", "grid", "YLD"),
            rec("GTL", "street"),
            rec("GTL-1", "micro", "GTL"),
        ]
    )
    assert tree.roots == ("GTL", "YLD")
    assert tree.path_names("YLD-1") == "YLD名 › YLD-1名"


def test_statistical_codes_nest_without_separators():
    tree = GridTree(
        [
            rec("430112", "district"),
            rec("430112001", "street", "430112"),
            rec("430112001001", "community", "430112001"),
        ]
    )
    assert tree.ancestors("430112001001") == ("430112001", "430112")


def test_records_from_config_tables():
    records = records_from_config(
        [
            {"code": "WC", "name": "望城区", "level": "district"},
            {
                "code": "WC-A",
                "name": "月亮岛街道",
                "level": "街道",
                "parent": "WC",
                "places": ["森林海小区", " 梅园路 ", ""],
            },
        ]
    )
    assert records[1] == GridRecord("WC-A", "月亮岛街道", "street", "WC", ("森林海小区", "梅园路"))
    with pytest.raises(GridError, match="WC-A）的 places 应为字符串列表"):
        records_from_config([{"code": "WC-A", "name": "x", "level": "street", "places": "梅园路"}])


# --- the gazetteer ------------------------------------------------------------------------

GAZETTEER = """\ufeffcode,name,level,parent,places
WC,望城区,区,,
WC-A,月亮岛街道,街道,WC,
WC-A-1,银星村,村,WC-A,银星村村部
WC-A-1-01,银星村第一网格,grid,WC-A-1,森林海小区|梅园路；银星村一组; 汉王陵
,,,,
"""


def test_gazetteer_loads_with_chinese_levels_and_both_separators(tmp_path):
    path = tmp_path / "grids.csv"
    path.write_text(GAZETTEER, encoding="utf-8")
    tree = GridTree(load_gazetteer(path))
    assert tree.level_of("WC-A-1") == "community"
    assert tree.record("WC-A-1-01").places == ("森林海小区", "梅园路", "银星村一组", "汉王陵")
    assert tree.path_names("WC-A-1-01") == "月亮岛街道 › 银星村 › 银星村第一网格"


def test_gazetteer_round_trips(tmp_path):
    write_gazetteer(tmp_path / "grids.csv", RECORDS)
    assert load_gazetteer(tmp_path / "grids.csv") == RECORDS


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("code,name,level\nWC,望城区,district\n", "缺少列: parent, places"),
        ("code,name,level,parent,places\nWC,望城区,县城,,\n", "第 2 行: 层级 '县城' 无效"),
        ("code,name,level,parent,places\nWC,望城区,district,,,多余\n", "第 2 行的列数多于表头"),
        ("", "缺少列: code, name, level, parent, places"),
    ],
)
def test_gazetteer_problems_name_the_line(tmp_path, content, expected):
    path = tmp_path / "grids.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(GridError, match=expected):
        load_gazetteer(path)


def test_gazetteer_missing_or_not_utf8(tmp_path):
    with pytest.raises(GridError, match="网格表文件不存在"):
        load_gazetteer(tmp_path / "nope.csv")
    path = tmp_path / "gbk.csv"
    path.write_bytes(GAZETTEER.lstrip("\ufeff").encode("gbk"))
    with pytest.raises(GridError, match="不是 UTF-8 编码"):
        load_gazetteer(path)


def test_gazetteer_rows_are_validated_by_the_tree(tmp_path):
    path = tmp_path / "grids.csv"
    path.write_text(
        "code,name,level,parent,places\nWC,望城区,district,,\nWC-A,月亮岛街道,street,WC-Q,\n",
        encoding="utf-8",
    )
    with pytest.raises(GridError, match="WC-A 的上级 WC-Q 不存在"):
        GridTree(load_gazetteer(path))


# --- boundaries ---------------------------------------------------------------------------


def test_boundaries_load_polygons_holes_and_multipolygons(tmp_path, tree):
    result = load_boundaries(write_json(tmp_path / "b.geojson", collection(SHAPES)), tree)
    assert result.errors == []
    assert result.shapes.keys() == SHAPES.keys()
    assert len(result.shapes["WC-A-2"].interiors) == 1
    assert result.shapes["WC-B"].geom_type == "MultiPolygon"
    assert result.warnings == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "不是有效的 JSON（第 1 行第 2 列）"),
        ('{"type": "FeatureCollection", "features": [NaN]}', "不是有效的 JSON"),
        ('{"type": "Feature", "geometry": null}', "应为 GeoJSON FeatureCollection"),
        ("[1, 2]", "应为 GeoJSON FeatureCollection"),
        ('{"type": "FeatureCollection"}', "缺少 features 列表"),
    ],
)
def test_malformed_geojson_is_one_clear_error(tmp_path, tree, text, expected):
    path = tmp_path / "b.geojson"
    path.write_text(text, encoding="utf-8")
    result = load_boundaries(path, tree)
    assert result.shapes == {}
    assert len(result.errors) == 1 and expected in result.errors[0], result.errors


def test_missing_geojson_file(tmp_path, tree):
    result = load_boundaries(tmp_path / "nope.geojson", tree)
    assert result.errors == [f"边界文件不存在: {tmp_path / 'nope.geojson'}"]
    directory = load_boundaries(tmp_path, tree)
    assert directory.errors and "无法读取边界文件" in directory.errors[0]


def feature(code, geometry, **props):
    return {"type": "Feature", "properties": {"code": code, **props}, "geometry": geometry}


def square(x0, y0, x1, y1):
    return mapping(box(x0, y0, x1, y1))


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (
            {"type": "Feature", "properties": {}, "geometry": square(0, 0, 1, 1)},
            "第 2 个要素缺少 properties.code（网格编码）",
        ),
        ({"type": "Feature", "geometry": square(0, 0, 1, 1)}, "缺少 properties.code"),
        ({"type": "Featur", "properties": {"code": "WC-A"}}, "第 2 个要素不是 GeoJSON Feature"),
        (feature("WC-Q", square(0, 0, 1, 1)), "第 2 个要素（WC-Q）的网格编码 WC-Q 不在网格表中"),
        (
            feature("WC-A-2", {"type": "Point", "coordinates": [1, 1]}),
            "的几何类型应为 Polygon 或 MultiPolygon（实际为 Point）",
        ),
        (feature("WC-A-2", None), "的几何类型应为 Polygon 或 MultiPolygon（实际为 None）"),
        (
            feature("WC-A-2", {"type": "Polygon", "coordinates": [[[1, 1], [2, 1]]]}),
            "的坐标格式错误",
        ),
        (
            feature(
                "WC-A-2", {"type": "Polygon", "coordinates": [[["a", 1], [2, 1], [2, 2], [1, 1]]]}
            ),
            "的坐标格式错误",
        ),
        (feature("WC-A-2", {"type": "Polygon", "coordinates": []}), "的坐标格式错误"),
        (
            feature("WC-A-2", square(28.2, 112.6, 28.3, 112.7)),
            "的坐标超出经纬度范围（GeoJSON 坐标顺序为 [经度, 纬度]）",
        ),
        (
            feature(
                "WC-A-2", {"type": "Polygon", "coordinates": [[[1, 1], [2, 2], [3, 3], [1, 1]]]}
            ),
            "的边界无效且无法修复",
        ),
    ],
)
def test_bad_feature_is_left_out_with_a_message(tree, bad, expected):
    data = {"type": "FeatureCollection", "features": [feature("WC-A-1", square(0, 0, 1, 2)), bad]}
    result = parse_boundaries(data, tree, source="边界文件 b.geojson")
    assert list(result.shapes) == ["WC-A-1"]
    assert len(result.errors) == 1, result.errors
    assert result.errors[0].startswith("边界文件 b.geojson 第 2 个要素")
    assert expected in result.errors[0] and result.errors[0].endswith("已忽略")


def test_self_intersecting_polygon_is_repaired_with_a_warning(tree):
    bowtie = {"type": "Polygon", "coordinates": [[[1, 0], [2, 2], [2, 0], [1, 2], [1, 0]]]}
    result = parse_boundaries(collection({}) | {"features": [feature("WC-A-2", bowtie)]}, tree)
    assert result.errors == []
    repaired = result.shapes["WC-A-2"]
    assert repaired.is_valid and math.isclose(repaired.area, 1.0)
    assert any("边界无效（Self-intersection" in w and "已自动修复" in w for w in result.warnings)


def test_numeric_codes_and_third_coordinates_are_accepted():
    tree = GridTree([rec("430112", "district"), rec("430112001", "street", "430112")])
    ring = [[112.6, 28.2, 30.0], [112.7, 28.2, 30.0], [112.7, 28.3, 30.0], [112.6, 28.2, 30.0]]
    data = {
        "type": "FeatureCollection",
        "features": [feature(430112001, {"type": "Polygon", "coordinates": [ring]})],
    }
    result = parse_boundaries(data, tree)
    assert result.errors == [] and not result.shapes["430112001"].has_z


def test_overlapping_siblings_warn_with_the_share(tree):
    shapes = dict(SHAPES, **{"WC-A-1-02": box(0, 0.75, 1, 2)})  # a quarter of WC-A-1-01
    result = parse_boundaries(collection(shapes), tree)
    overlaps = [w for w in result.warnings if "重叠" in w]
    assert overlaps == [
        (
            "网格 WC-A-1-01 与 WC-A-1-02 的边界重叠，重叠部分占 WC-A-1-01 面积的 "
            "25.0%；重叠处的位置归入编码较小的 WC-A-1-01"
        )
    ]
    # The locator does what the warning says.
    assert GridLocator(tree, result.shapes).locate(0.9, 0.5) == "WC-A-1-01"


def test_siblings_sharing_an_edge_or_a_sliver_are_not_overlaps(tree):
    sliver = dict(SHAPES, **{"WC-A-1-02": box(0, 0.99999, 1, 2)})  # 0.001 % of WC-A-1-01
    assert [w for w in parse_boundaries(collection(sliver), tree).warnings if "重叠" in w] == []
    assert parse_boundaries(collection(SHAPES), tree).warnings == []


def test_sibling_inside_a_sibling_is_an_overlap(tree):
    shapes = dict(SHAPES, **{"WC-A-1-02": box(0.5, 0.5, 0.6, 0.6)})
    warnings = parse_boundaries(collection(shapes), tree).warnings
    assert any(
        "WC-A-1-01 与 WC-A-1-02" in w and "占 WC-A-1-02 面积的 100.0%" in w for w in warnings
    )


def test_child_outside_its_parent_warns(tree):
    shapes = dict(SHAPES, **{"WC-A-1-01-X": box(0.9, 0.2, 1.1, 0.4)})
    warnings = parse_boundaries(collection(shapes), tree).warnings
    assert "网格 WC-A-1-01-X 有 50.0% 的面积在上级 WC-A-1-01 的边界之外" in warnings


def test_leaf_grids_without_polygons_are_listed(tree):
    shapes = {k: v for k, v in SHAPES.items() if k not in ("WC-A-1-02", "WC-A-1-01-X")}
    warnings = parse_boundaries(collection(shapes), tree).warnings
    assert warnings == [
        ("2 个末级网格没有边界（WC-A-1-01-X、WC-A-1-02），其范围内的位置只能定位到上级网格")
    ]


def test_polygons_outside_the_district_bbox_warn(tree):
    warnings = parse_boundaries(collection(SHAPES), tree, bbox=(0, 0, 2.5, 2.5)).warnings
    assert warnings == [
        (
            "4 个网格的边界完全在辖区范围 bbox 之外（WC-B、WC-B-1、WC-B-1-P、"
            "WC-B-1-P-01），请检查坐标（GeoJSON 坐标顺序为 [经度, 纬度]）"
        )
    ]


def test_a_code_given_twice_is_merged(tree):
    data = collection(SHAPES)
    data["features"].append(feature("WC-A-2", square(2, 0, 2.5, 2)))
    result = parse_boundaries(data, tree)
    assert math.isclose(result.shapes["WC-A-2"].area, 2 - HOLE.area + 1)
    assert any("WC-A-2）的网格编码重复出现，已与前面的边界合并" in w for w in result.warnings)
    assert all(p.severity in (ERROR, WARNING) for p in result.problems)


# --- locating points ----------------------------------------------------------------------


def test_deepest_grid_wins(locator):
    assert locator.locate(0.5, 0.5) == "WC-A-1-01"
    assert locator.locate(0.3, 0.3) == "WC-A-1-01-X"  # micro-grid inside the grid
    assert locator.locate(1.5, 0.5) == "WC-A-1-02"
    assert locator.locate(0.5, 1.5) == "WC-A-2"
    assert locator.locate(0.5, 3.5) == "WC-B-1-P-01"  # through the optional 片 level


def test_latitude_comes_first(locator):
    assert locator.locate(lat=0.5, lon=3.5) == "WC-B-1-P-01"
    assert locator.locate(lat=3.5, lon=0.5) is None


def test_outside_every_grid_is_none(locator):
    for lat, lon in [(0.5, -0.1), (2.01, 0.5), (0.5, 4.5), (-1, -1), (28.4, 112.8)]:
        assert locator.locate(lat, lon) is None
    assert locator.locate(math.nan, 0.5) is None
    assert locator.locate(0.5, math.inf) is None


def test_shared_edges_and_vertices_go_to_the_lowest_code(locator):
    assert locator.locate(1.0, 0.5) == "WC-A-1-01"  # edge between WC-A-1-01 and WC-A-1-02
    assert locator.locate(1.0, 1.0) == "WC-A-1-01"  # vertex shared by both grids and WC-A-2
    assert locator.locate(1.5, 1.0) == "WC-A-1-02"  # edge of a grid and a community: deeper
    assert locator.locate(0.0, 0.0) == "WC-A-1-01"  # outer corner of the district
    assert locator.locate(0.2, 0.3) == "WC-A-1-01-X"  # the micro-grid's own edge


def test_holes(locator):
    assert locator.locate(1.5, 1.5) == "WC-A"  # inside WC-A-2's hole: its parent still covers it
    assert locator.locate(1.4, 1.5) == "WC-A-2"  # on the hole's edge: still WC-A-2
    assert locator.locate(1.3, 1.5) == "WC-A-2"


def test_multipolygon_parts(locator):
    assert locator.locate(0.5, 5.5) == "WC-B-1"  # second part: no 片 there
    assert locator.locate(0.5, 4.5) is None  # between the parts
    assert len(locator) == 12  # every part of every polygon indexed


def test_empty_locator(tree):
    assert GridLocator(tree, {}).locate(0.5, 0.5) is None


def test_overlapping_cousins_deepest_then_lowest_code(tree):
    shapes = {
        "WC-A-1": box(0, 0, 2, 2),
        "WC-B-1-P-01": box(1, 1, 3, 3),
        "WC-B-1-P": box(0, 0, 3, 3),
        "WC-A-1-02": box(1.5, 1.5, 2.5, 2.5),
    }
    locator = GridLocator(tree, shapes)
    assert locator.locate(1.2, 1.2) == "WC-B-1-P-01"  # grid beats community and 片
    assert locator.locate(1.7, 1.7) == "WC-A-1-02"  # two grids: lower code
    assert locator.locate(0.5, 2.5) == "WC-B-1-P"


# --- place names --------------------------------------------------------------------------


@pytest.fixture
def matcher(tree) -> PlaceMatcher:
    return PlaceMatcher.from_tree(tree)


def test_longest_place_wins(matcher):
    assert matcher.match("银星村森林海小区3栋门口垃圾没人清") == ("WC-A-1-01", "森林海小区")
    assert matcher.match("银星村路灯坏了") == ("WC-A-1", "银星村")
    assert matcher.match("银星村第一网格的网格员不接电话") == ("WC-A-1-01", "银星村第一网格")
    assert matcher.match("梅园路上有个坑，月亮岛街道也管不了") == ("WC-A", "月亮岛街道")


def test_no_place_is_none(matcher, tree):
    assert matcher.match("家门口的路灯坏了三天") is None
    assert matcher.match("") is None
    assert PlaceMatcher([], tree.depth).match("银星村") is None


def test_normalisation_of_width_case_and_spaces(tree):
    records = RECORDS + [rec("WC-A-1-03", "grid", "WC-A-1", places=["Ａ区１栋", "abc花园"])]
    matcher = PlaceMatcher.from_tree(GridTree(records))
    assert matcher.match("森林 海小区") == ("WC-A-1-01", "森林海小区")
    assert matcher.match("森林\u3000海\n小区") == ("WC-A-1-01", "森林海小区")
    assert matcher.match("住在A区1栋") == ("WC-A-1-03", "Ａ区１栋")
    assert matcher.match("ＡＢＣ花园的电梯") == ("WC-A-1-03", "abc花园")
    assert normalise(" Ａ区　１栋 ") == "a区1栋"


def test_ties_go_to_the_deepest_then_the_lowest_code(tree):
    pairs = [
        ("梅园", "WC-A-1"),
        ("菜场", "WC-A-1-02"),
        ("新村", "WC-A-1-01"),
        ("和园", "WC-A-1-02"),
        ("和园", "WC-A-1-01"),
        ("和园", "WC-A"),
    ]
    matcher = PlaceMatcher(pairs, tree.depth)
    assert matcher.match("梅园菜场") == ("WC-A-1-02", "菜场")  # same length: deeper
    assert matcher.match("新村菜场") == ("WC-A-1-01", "新村")  # same depth: lower code
    assert matcher.match("和园") == ("WC-A-1-01", "和园")  # one name, three grids
    assert matcher.shared == {"和园": ("WC-A", "WC-A-1-01", "WC-A-1-02")}


def test_single_characters_are_not_places(tree):
    matcher = PlaceMatcher([("村", "WC-A-1"), ("Ａ", "WC-A-1"), ("　路 ", "WC-A")], tree.depth)
    assert len(matcher) == 0
    assert matcher.match("村里的路") is None


# --- the demo district --------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_tree() -> GridTree:
    return GridTree(load_gazetteer(DEMO / "grids.csv"))


@pytest.fixture(scope="module")
def demo_shapes(demo_tree):
    result = load_boundaries(DEMO / "boundaries.geojson", demo_tree, bbox=DEMO_BBOX)
    assert result.problems == []
    return result.shapes


def test_demo_hierarchy(demo_tree):
    levels = [r.level for r in demo_tree]
    assert levels.count("street") >= 2 and levels.count("community") >= 6
    assert levels.count("grid") >= 30 and levels.count("micro") >= 3
    assert levels.count("area") >= 1
    for code, name in [
        ("WC-YLD", "月亮岛街道"),
        ("WC-GTL", "高塘岭街道"),
        ("WC-YLD-YX", "银星村"),
        ("WC-YLD-YX-01", "银星村第一网格"),
        ("WC-YLD-YX-01-A", "汉王陵片区微网格"),
        ("WC-GTL-XC", "新城社区"),
        ("WC-GTL-XC-01", "新城社区第一网格"),
    ]:
        assert demo_tree.record(code).name == name
    assert demo_tree.path_names("WC-YLD-YX-01") == "月亮岛街道 › 银星村 › 银星村第一网格"


def test_demo_boundaries_cover_every_grid(demo_tree, demo_shapes):
    assert demo_shapes.keys() == {r.code for r in demo_tree}
    assert all(g.is_valid for g in demo_shapes.values())
    assert shapely.box(*DEMO_BBOX).contains(demo_shapes["WC"])
    assert (DEMO / "boundaries.geojson").stat().st_size < 1_000_000
    vertices = [
        shapely.get_num_coordinates(demo_shapes[r.code]) for r in demo_tree if r.level == "grid"
    ]
    assert 20 <= min(vertices) and max(vertices) <= 80


def test_demo_children_inside_parents_and_siblings_apart(demo_tree, demo_shapes):
    for r in demo_tree:
        if r.parent:
            assert demo_shapes[r.code].difference(demo_shapes[r.parent]).area < 1e-12, r.code
        kids = demo_tree.children(r.code)
        for i, a in enumerate(kids):
            for b in kids[i + 1 :]:
                assert demo_shapes[a].intersection(demo_shapes[b]).area < 1e-12, (a, b)
    streets = [demo_shapes[c] for c in demo_tree.children("WC")]
    assert math.isclose(sum(s.area for s in streets), demo_shapes["WC"].area)


def test_demo_locates_every_leaf_and_agrees_with_brute_force(demo_tree, demo_shapes):
    locator = GridLocator(demo_tree, demo_shapes)
    for r in demo_tree:
        if not demo_tree.children(r.code):
            p = demo_shapes[r.code].point_on_surface()
            assert locator.locate(p.y, p.x) == r.code
    rng = random.Random(7)
    x0, y0, x1, y1 = DEMO_BBOX
    for _ in range(300):
        lon, lat = rng.uniform(x0, x1), rng.uniform(y0, y1)
        covering = [c for c, g in demo_shapes.items() if shapely.intersects_xy(g, lon, lat)]
        expected = min(covering, key=lambda c: (-demo_tree.depth(c), c)) if covering else None
        assert locator.locate(lat, lon) == expected


def test_demo_places(demo_tree):
    matcher = PlaceMatcher.from_tree(demo_tree)
    assert matcher.shared == {}
    assert matcher.match("森林海小区门口的井盖丢了") == ("WC-YLD-YX-01", "森林海小区")
    assert matcher.match("梅园路夜间施工噪音") == ("WC-GTL-MY-01", "梅园路")
    assert matcher.match("汉王陵公园的厕所坏了") == ("WC-YLD-YX-01-A", "汉王陵公园")
    for r in demo_tree:
        for place in r.places:
            assert matcher.match(f"我家在{place}附近") == (r.code, place)


def test_make_demo_reproduces_the_shipped_files(tmp_path):
    make_demo.main(tmp_path)
    for name in ("grids.csv", "boundaries.geojson"):
        assert (tmp_path / name).read_bytes() == (DEMO / name).read_bytes(), name
