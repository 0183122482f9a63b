"""Grid boundaries from a GeoJSON FeatureCollection, checked against the grid tree.

Problems come back as a list (never raised) so the caller can print them all at start or in
`whistle check`: an "error" feature is left out, a "warning" feature is kept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import shapely
from shapely.errors import ShapelyError
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity, make_valid

from geo.grids import GridTree

ERROR = "error"
WARNING = "warning"
# Shares below this are rounding noise (coordinates are kept to ~0.1 m), not real overlaps.
OVERLAP_TOLERANCE = 0.001
MAX_LISTED = 5  # codes named in one summary message


class Problem(NamedTuple):
    severity: str  # ERROR or WARNING
    message: str


@dataclass
class Boundaries:
    shapes: dict[str, Polygon | MultiPolygon] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [p.message for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[str]:
        return [p.message for p in self.problems if p.severity == WARNING]


def load_boundaries(
    path: str | Path, tree: GridTree, bbox: Sequence[float] | None = None
) -> Boundaries:
    """Read and check a GeoJSON file; bbox (lon_min, lat_min, lon_max, lat_max) is optional."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return Boundaries(problems=[Problem(ERROR, f"边界文件不存在: {path}")])
    except UnicodeDecodeError:
        return Boundaries(problems=[Problem(ERROR, f"边界文件 {path} 不是 UTF-8 编码")])
    except OSError as exc:
        return Boundaries(problems=[Problem(ERROR, f"无法读取边界文件 {path}: {exc.strerror}")])
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        where = f"第 {exc.lineno} 行第 {exc.colno} 列" if hasattr(exc, "lineno") else ""
        return Boundaries(problems=[Problem(ERROR, f"边界文件 {path} 不是有效的 JSON（{where}）")])
    return parse_boundaries(data, tree, source=f"边界文件 {path.name}", bbox=bbox)


def parse_boundaries(
    data: object, tree: GridTree, source: str = "边界数据", bbox: Sequence[float] | None = None
) -> Boundaries:
    """Check already-decoded GeoJSON; see load_boundaries."""
    result = Boundaries()
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        result.problems.append(Problem(ERROR, f"{source} 应为 GeoJSON FeatureCollection"))
        return result
    features = data.get("features")
    if not isinstance(features, list):
        result.problems.append(Problem(ERROR, f"{source} 缺少 features 列表"))
        return result
    for number, feature in enumerate(features, start=1):
        _add_feature(result, tree, feature, f"{source} 第 {number} 个要素")
    result.problems += _overlap_problems(tree, result.shapes)
    result.problems += _outside_parent_problems(tree, result.shapes)
    result.problems += _missing_problems(tree, result.shapes)
    if bbox is not None:
        result.problems += _outside_bbox_problems(result.shapes, bbox)
    return result


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _add_feature(result: Boundaries, tree: GridTree, feature: object, label: str) -> None:
    def error(message: str) -> None:
        result.problems.append(Problem(ERROR, f"{label}{message}，已忽略"))

    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return error("不是 GeoJSON Feature")
    props = feature.get("properties")
    code = props.get("code") if isinstance(props, dict) else None
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)  # statistical area codes are often stored as numbers
    if not isinstance(code, str) or not code.strip():
        return error("缺少 properties.code（网格编码）")
    code = code.strip()
    label = f"{label}（{code}）"
    if code not in tree:
        return error(f"的网格编码 {code} 不在网格表中")
    code = tree.record(code).code  # the tree's own string: the parsed JSON can then be freed
    geom, message = _polygonal(feature.get("geometry"))
    if geom is None:
        return error(message)
    if message:
        result.problems.append(Problem(WARNING, f"{label}{message}"))
    if code in result.shapes:
        result.problems.append(Problem(WARNING, f"{label}的网格编码重复出现，已与前面的边界合并"))
        geom = _polygon_parts(shapely.union(result.shapes[code], geom))
    result.shapes[code] = geom


def _polygonal(raw: object) -> tuple[Polygon | MultiPolygon | None, str]:
    """(geometry, "") when usable, (repaired geometry, note) when fixed, (None, why) when not."""
    if not isinstance(raw, dict) or raw.get("type") not in ("Polygon", "MultiPolygon"):
        kind = raw.get("type") if isinstance(raw, dict) else None
        return None, f"的几何类型应为 Polygon 或 MultiPolygon（实际为 {kind}）"
    try:
        geom = shapely.force_2d(_geometry(raw))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, ShapelyError):
        return None, "的坐标格式错误（每个环应为 [经度, 纬度] 点的列表，至少 4 个点）"
    if geom.is_empty or not all(math.isfinite(v) for v in geom.bounds):
        return None, "的边界为空"
    lon_min, lat_min, lon_max, lat_max = geom.bounds
    if lon_min < -180 or lon_max > 180 or lat_min < -90 or lat_max > 90:
        return None, "的坐标超出经纬度范围（GeoJSON 坐标顺序为 [经度, 纬度]）"
    if geom.is_valid:
        return (geom, "") if geom.area > 0 else (None, "的面积为零")
    reason = explain_validity(geom)
    fixed = _polygon_parts(make_valid(geom))
    if fixed.is_empty or fixed.area == 0:
        return None, f"的边界无效且无法修复（{reason}）"
    return fixed, f"的边界无效（{reason}），已自动修复，请核对"


def _geometry(raw: dict) -> Polygon | MultiPolygon:
    """GeoJSON coordinates straight into shapely's array constructors (faster than shape())."""
    if raw["type"] == "Polygon":
        return _polygon(raw["coordinates"])
    return shapely.multipolygons([_polygon(rings) for rings in raw["coordinates"]])


def _polygon(rings: list) -> Polygon:
    holes = [np.asarray(ring, dtype=float) for ring in rings[1:]]
    return shapely.polygons(np.asarray(rings[0], dtype=float), holes=holes or None)


def _polygon_parts(geom: BaseGeometry) -> Polygon | MultiPolygon:
    """Only the areal parts: make_valid and union may leave stray lines or points."""
    if isinstance(geom, Polygon | MultiPolygon):
        return geom
    polygons = [g for g in shapely.get_parts(geom) if isinstance(g, Polygon | MultiPolygon)]
    parts = [p for g in polygons for p in shapely.get_parts(g)]
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _overlap_problems(tree: GridTree, shapes: dict[str, BaseGeometry]) -> list[Problem]:
    """Siblings whose polygons overlap: the locator then picks the lower code in the overlap."""
    codes = sorted(shapes)
    geoms = np.array([shapes[c] for c in codes], dtype=object)
    parents = np.array([tree.record(c).parent or "" for c in codes])
    left, right = shapely.STRtree(geoms).query(geoms)  # envelopes only: cheap
    siblings = (left < right) & (parents[left] == parents[right])
    left, right = left[siblings], right[siblings]
    # Interiors meet (DE-9IM): neighbours that only share an edge are not overlaps.
    overlapping = shapely.relate_pattern(geoms[left], geoms[right], "T********")
    problems = []
    for i, j in zip(left[overlapping], right[overlapping], strict=True):
        smaller = codes[i] if geoms[i].area <= geoms[j].area else codes[j]
        share = shapely.intersection(geoms[i], geoms[j]).area / shapes[smaller].area
        if share > OVERLAP_TOLERANCE:
            problems.append(
                Problem(
                    WARNING,
                    f"网格 {codes[i]} 与 {codes[j]} 的边界重叠，重叠部分占 {smaller} 面积的 "
                    f"{share:.1%}；重叠处的位置归入编码较小的 {codes[i]}",
                )
            )
    return problems


def _outside_parent_problems(tree: GridTree, shapes: dict[str, BaseGeometry]) -> list[Problem]:
    problems = []
    for code in sorted(shapes):
        parent = tree.record(code).parent
        if parent not in shapes:
            continue
        shapely.prepare(shapes[parent])
        if shapely.covers(shapes[parent], shapes[code]):
            continue
        share = shapely.difference(shapes[code], shapes[parent]).area / shapes[code].area
        if share > OVERLAP_TOLERANCE:
            problems.append(
                Problem(WARNING, f"网格 {code} 有 {share:.1%} 的面积在上级 {parent} 的边界之外")
            )
    return problems


def _missing_problems(tree: GridTree, shapes: dict[str, BaseGeometry]) -> list[Problem]:
    """Leaf grids without a polygon can only be reached by place name."""
    missing = sorted(r.code for r in tree if not tree.children(r.code) and r.code not in shapes)
    if not missing:
        return []
    listed = "、".join(missing[:MAX_LISTED]) + ("等" if len(missing) > MAX_LISTED else "")
    return [
        Problem(
            WARNING,
            f"{len(missing)} 个末级网格没有边界（{listed}），其范围内的位置只能定位到上级网格",
        )
    ]


def _outside_bbox_problems(shapes: dict[str, BaseGeometry], bbox: Sequence[float]) -> list[Problem]:
    box = shapely.box(*bbox)
    outside = sorted(code for code, geom in shapes.items() if not geom.intersects(box))
    if not outside:
        return []
    listed = "、".join(outside[:MAX_LISTED]) + ("等" if len(outside) > MAX_LISTED else "")
    return [
        Problem(
            WARNING,
            f"{len(outside)} 个网格的边界完全在辖区范围 bbox 之外（{listed}），"
            "请检查坐标（GeoJSON 坐标顺序为 [经度, 纬度]）",
        )
    ]
