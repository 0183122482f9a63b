"""The district's grids as configured: tree, point locator and place matcher, built once at start.

Sources, all optional: `[district] gazetteer = "PATH.csv"` (the whole hierarchy with places),
`[[grids]]` tables (added to the gazetteer, or the only source; their `places` lists add names)
and `[district] grid_boundaries = "PATH.geojson"`. A broken file never stops Whistle: what
cannot be used is left out, and every problem is one line in `problems` for the start-up log
and `whistle check`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from geo import (
    ERROR,
    WARNING,
    GridError,
    GridLocator,
    GridRecord,
    GridTree,
    PlaceMatcher,
    Problem,
    load_boundaries,
    load_gazetteer,
    records_from_config,
)
from whistle.config import Settings

log = logging.getLogger(__name__)

GAZETTEER_KEY = "gazetteer"
BOUNDARIES_KEY = "grid_boundaries"


@dataclass
class GridMap:
    """Where a case is: `locate` for a point, `match_place` for text. Either may be off (None)."""

    tree: GridTree | None = None
    locator: GridLocator | None = None
    places: PlaceMatcher | None = None
    problems: list[Problem] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings) -> GridMap:
        problems: list[Problem] = []
        tree = _tree(settings, problems)
        if tree is None:
            return cls(problems=problems)
        locator = _locator(settings, tree, problems)
        places = PlaceMatcher.from_tree(tree)
        for place, codes in sorted(places.shared.items()):
            problems.append(
                Problem(
                    WARNING,
                    f"地名 {place} 属于多个网格（{'、'.join(codes)}），按最深、编码最小的网格归属",
                )
            )
        return cls(tree=tree, locator=locator, places=places, problems=problems)

    def __contains__(self, code: object) -> bool:
        return self.tree is not None and code in self.tree

    def locate(self, lat: float, lon: float) -> str | None:
        """The deepest grid at the point; None outside every grid or without boundaries."""
        return self.locator.locate(lat, lon) if self.locator is not None else None

    def match_place(self, text: str | None) -> tuple[str, str] | None:
        """(code, place) of the longest known place named in the text, or None."""
        return self.places.match(text) if self.places is not None and text else None

    def path_names(self, code: str | None) -> str | None:
        """月亮岛街道 › 银星村 › 银星村第一网格, or None for an unknown code."""
        if code is None or code not in self:
            return None
        return self.tree.path_names(code)

    def name(self, code: str | None) -> str | None:
        return self.tree.record(code).name if code is not None and code in self else None

    def children(self, code: str | None) -> list[GridRecord]:
        """The grids directly below `code` (the streets for None), for choosing one by buttons."""
        if self.tree is None:
            return []
        codes = self.tree.children(code) if code else _below_district(self.tree)
        return [self.tree.record(c) for c in codes]

    def records(self) -> list[GridRecord]:
        return list(self.tree) if self.tree is not None else []


def _below_district(tree: GridTree) -> tuple[str, ...]:
    """The streets: the roots' children when the root is the district itself."""
    out: list[str] = []
    for root in tree.roots:
        out += tree.children(root) if tree.level_of(root) == "district" else [root]
    return tuple(out)


def _merge(base: Iterable[GridRecord], extra: Iterable[GridRecord]) -> list[GridRecord]:
    """The gazetteer's records, with [[grids]] entries overriding them and adding places."""
    merged = {r.code: r for r in base}
    for r in extra:
        old = merged.get(r.code)
        places = tuple(dict.fromkeys((*(old.places if old else ()), *r.places)))
        merged[r.code] = replace(r, places=places)
    return list(merged.values())


def _config_records(settings: Settings) -> list[GridRecord]:
    return records_from_config(
        {
            "code": g.code,
            "name": g.name,
            "level": g.level,
            "parent": g.parent,
            "places": list(g.places),
        }
        for g in settings.grids
    )


def grid_records(settings: Settings) -> list[GridRecord]:
    """Every configured grid (gazetteer + [[grids]]), for syncing the store's Grid table.

    Raises GridError when [[grids]] itself is broken; a broken gazetteer is left out."""
    problems: list[Problem] = []
    records = _config_records(settings)
    gazetteer = _gazetteer(settings, problems)
    return _merge(gazetteer, records)


def _gazetteer(settings: Settings, problems: list[Problem]) -> list[GridRecord]:
    path = settings.district.gazetteer or None
    if not path:
        return []
    try:
        return load_gazetteer(settings.path(path))
    except GridError as exc:
        problems += [
            Problem(ERROR, f"[district] {GAZETTEER_KEY}: {p}；网格表未启用") for p in exc.problems
        ]
        return []


def _tree(settings: Settings, problems: list[Problem]) -> GridTree | None:
    try:
        config = _config_records(settings)
    except GridError as exc:
        problems += [Problem(ERROR, f"[[grids]]: {p}") for p in exc.problems]
        config = []
    gazetteer = _gazetteer(settings, problems)
    records = _merge(gazetteer, config)
    if not records:
        return None
    try:
        return GridTree(records)
    except GridError as exc:
        problems += [Problem(ERROR, p) for p in exc.problems]
        problems.append(Problem(ERROR, "网格数据有误：按定位和地名归网格均未启用"))
        return None


def _locator(settings: Settings, tree: GridTree, problems: list[Problem]) -> GridLocator | None:
    path = settings.district.grid_boundaries or None
    if not path:
        return None
    bbox = settings.district.bbox
    boundaries = load_boundaries(settings.path(path), tree, bbox=bbox or None)
    problems += boundaries.problems
    if not boundaries.shapes:
        problems.append(
            Problem(
                ERROR,
                f"[district] {BOUNDARIES_KEY} 没有可用的网格边界："
                f"按定位归网格未启用，仍按地名归网格",
            )
        )
        return None
    return GridLocator(tree, boundaries.shapes)


def log_problems(gridmap: GridMap) -> None:
    """Each problem once at start: errors as errors (a feature is off), warnings as warnings."""
    for severity, message in gridmap.problems:
        (log.error if severity == ERROR else log.warning)("网格: %s", message)
