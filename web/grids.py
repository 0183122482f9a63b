"""The dashboard's grid view (网格): the league table per level with drill-down and the map.

Routes (added to web/app.py's): GET /api/grids?code=CODE (one drill-down step: the grid, its
path, the league of the grids right below it, red cases to put on the map, the month's counts
per channel and 报到 times) and GET /api/grid_shapes?code=CODE (the boundaries of the grids
right below CODE as GeoJSON, for the map). No code = the district. Both need a login.

The boundaries come from `[district] grid_boundaries`, read once on first use; a grid without
a polygon of its own is drawn as the union of its children's. Problems in the file were
reported at start (models/gridmap.py); here what cannot be drawn is simply left out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from geo import GridError, GridTree, load_boundaries
from models.deadlines import Rules
from models.engine import session_scope
from models.gridmap import grid_records
from models.gridstats import GridIndex, GridLeague, grid_extras, grid_index, grid_league

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store"}
LOGIN_FIRST = "请先登录指挥大屏"
UNKNOWN_GRID = "没有编码为 {code} 的网格，请返回上一级重新选择。"
NO_BOUNDARIES = "未配置网格边界（config.toml 的 [district] grid_boundaries），地图暂不可用。"
# ~1 m: plenty for a wall screen, and a street's outline stays small on the wire.
SIMPLIFY_DEGREES = 0.00001
INDEX_SECONDS = 300


class GridShapes:
    """The grids' boundaries as GeoJSON, level by level; loaded on first use, then cached."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self._tree: GridTree | None = None
        self._shapes: dict[str, BaseGeometry] = {}
        self._message: str | None = None
        self._loaded = False
        self._lock = asyncio.Lock()
        self._answers: dict[str | None, str] = {}

    def _load(self) -> None:
        path = self.settings.district.grid_boundaries
        try:
            self._tree = GridTree(grid_records(self.settings))
        except GridError:
            self._tree = None
        if self._tree is None or not len(self._tree) or not path:
            self._message = NO_BOUNDARIES
            return
        boundaries = load_boundaries(
            self.settings.path(path), self._tree, bbox=self.settings.district.bbox or None
        )
        self._shapes = dict(boundaries.shapes)
        if not self._shapes:
            self._message = NO_BOUNDARIES

    def _shape(self, code: str) -> BaseGeometry | None:
        """The grid's own polygon, else the union of its children's (kept for next time)."""
        if code not in self._shapes:
            parts = [s for c in self._tree.children(code) if (s := self._shape(c)) is not None]
            self._shapes[code] = unary_union(parts) if parts else None
        return self._shapes[code]

    def _below(self, code: str | None) -> list[str]:
        if code is None:
            roots = list(self._tree.roots)
            if len(roots) == 1 and self._tree.level_of(roots[0]) == "district":
                return list(self._tree.children(roots[0]))
            return roots
        return list(self._tree.children(code))

    def _collection(self, code: str | None) -> str:
        features = []
        for child in self._below(code):
            shape = self._shape(child)
            if shape is None or shape.is_empty:
                continue
            record = self._tree.record(child)
            props = {
                "code": child,
                "name": record.name,
                "level": record.level,
                "has_children": bool(self._tree.children(child)),
            }
            geometry = shapely.to_geojson(shape.simplify(SIMPLIFY_DEGREES))
            features.append(
                f'{{"type":"Feature","properties":{json.dumps(props)},"geometry":{geometry}}}'
            )
        message = json.dumps(self._message if not features else None)
        return (
            f'{{"type":"FeatureCollection","message":{message},"features":[{",".join(features)}]}}'
        )

    async def geojson(self, code: str | None) -> str | None:
        """The FeatureCollection of the grids right below `code`; None for an unknown code."""
        async with self._lock:  # one load and one union per grid, however many screens ask
            if not self._loaded:
                await asyncio.to_thread(self._load)
                self._loaded = True
            if self._tree is None or (code is not None and code not in self._tree):
                return None if code is not None else self._empty()
            if code not in self._answers:
                self._answers[code] = await asyncio.to_thread(self._collection, code)
            return self._answers[code]

    def _empty(self) -> str:
        return json.dumps({"type": "FeatureCollection", "message": NO_BOUNDARIES, "features": []})


class GridView:
    """What the grid routes share (app.state.grids): figures cached like the main data."""

    def __init__(
        self, settings, engine: AsyncEngine, rules: Rules, clock: Callable[[], datetime], cache
    ) -> None:
        self.engine, self.rules, self.clock, self.cache = engine, rules, clock, cache
        self.shapes = GridShapes(settings)
        self._index: GridIndex | None = None
        self._index_until = 0.0

    async def index(self) -> GridIndex:
        """The grid table, read again every INDEX_SECONDS (it changes only when the
        configuration is synced at start; thousands of rows are not worth reading each time)."""
        if self._index is None or time.monotonic() >= self._index_until:
            async with session_scope(self.engine) as session:
                self._index = await grid_index(session)
            self._index_until = time.monotonic() + INDEX_SECONDS
        return self._index

    async def figures(self) -> dict[str, Any]:
        now = self.clock()
        league, extras = await asyncio.gather(
            grid_league(self.engine, now=now, rules=self.rules, index=await self.index()),
            grid_extras(self.engine, now=now, rules=self.rules),
        )
        return {"now": now, "league": league, **extras}


def _code(request: Request) -> str | None:
    return request.query_params.get("code") or None


async def grids_data(request: Request) -> Response:
    dash, view = request.app.state.dashboard, request.app.state.grids
    if await dash.viewer(request) is None:
        return JSONResponse({"error": LOGIN_FIRST}, status_code=401, headers=NO_STORE)
    figures = await view.cache.get(view.figures)
    league: GridLeague = figures["league"]
    code = _code(request)
    try:
        step = league.view(code)
    except KeyError:
        return JSONResponse(
            {"error": UNKNOWN_GRID.format(code=code)}, status_code=404, headers=NO_STORE
        )
    body = {
        "step": step,
        "channels": figures["channels"],
        "report_times": figures["report_times"],
        "updated_at": dash.rules.calendar.to_local(figures["now"]).strftime("%H:%M:%S"),
    }
    return JSONResponse(body, headers=NO_STORE)


async def grid_shapes(request: Request) -> Response:
    dash, view = request.app.state.dashboard, request.app.state.grids
    if await dash.viewer(request) is None:
        return JSONResponse({"error": LOGIN_FIRST}, status_code=401, headers=NO_STORE)
    code = _code(request)
    body = await view.shapes.geojson(code)
    if body is None:
        return JSONResponse(
            {"error": UNKNOWN_GRID.format(code=code)}, status_code=404, headers=NO_STORE
        )
    # Boundaries change only with the configuration: a screen may keep them for a while.
    return Response(
        body, media_type="application/geo+json", headers={"Cache-Control": "private, max-age=300"}
    )


def grid_routes() -> list[Route]:
    return [Route("/api/grids", grids_data), Route("/api/grid_shapes", grid_shapes)]
