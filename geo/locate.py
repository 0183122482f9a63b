"""Point → grid: the deepest grid whose polygon covers a location."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geo.grids import GridTree


class GridLocator:
    """An STRtree over every polygon part of every grid that has a boundary.

    A point on an edge or vertex belongs to each polygon that touches it (a point inside a
    hole does not); among the grids covering a point the deepest wins, then the lowest code,
    so a point on a shared edge always lands in the same grid.
    """

    def __init__(self, tree: GridTree, shapes: Mapping[str, BaseGeometry]):
        parts, owners = [], []
        for code, geom in shapes.items():
            for part in shapely.get_parts(geom):
                parts.append(part)
                owners.append(code)
        # Priority order: deeper first, then lower code; the first covering part is the answer.
        rank = sorted(range(len(owners)), key=lambda i: (-tree.depth(owners[i]), owners[i]))
        priority = np.empty(len(owners), dtype=np.int64)
        priority[rank] = np.arange(len(owners))
        self._parts = np.array(parts, dtype=object)
        self._owners = owners
        self._priority = priority
        shapely.prepare(self._parts)  # point-in-polygon in O(log n) instead of O(n)
        self._index = shapely.STRtree(self._parts)

    def __len__(self) -> int:
        """Number of polygon parts indexed."""
        return len(self._owners)

    def locate(self, lat: float, lon: float) -> str | None:
        """The grid code at (lat, lon), or None outside every grid (the caller sends it to triage)."""
        if not (math.isfinite(lat) and math.isfinite(lon)):
            return None
        candidates = self._index.query(shapely.Point(lon, lat))  # GeoJSON order: lon, lat
        if len(candidates) == 0:
            return None
        candidates = candidates[np.argsort(self._priority[candidates])]
        hits = shapely.intersects_xy(self._parts[candidates], lon, lat)
        first = int(np.argmax(hits))
        return self._owners[candidates[first]] if hits[first] else None
