"""Figures grid by grid (网格): the league table per level, the map's colours and red points,
the counts per channel (雷锋哨 / 热线哨 / …) and each department's 报到 time.

The rules are models/stats.py's (Tally, period_aggregates, light_sql): a case counts in the
grid it lies in and in every grid above it, so a street's figures are the sum of its
communities' plus the cases placed on the street itself. Cases without a grid, or on a grid
code no longer in the Grid table, count for the district as a whole only (未关联网格).
Two queries (cases created in the period, open cases now) grouped by grid_code, whatever the
number of grids; the roll-up along the tree adds one numpy matrix up a level at a time
(4,411 grids and a million cases: see bench/grid_dashboard_bench.py).

小事不出网格率 and 大事不出街镇率 (#13 §3) are counted over the cases that started in a grid
(Case.started_in_grid) and are done (办结: resolved or closed): the share resolved in the grid
(Case.resolved_level == grid), and the share resolved in the grid or at the street. They roll
up like every other count: a street's rate covers all the grid-started cases in its grids.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import and_, case, func, or_
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.deadlines import Rules
from models.engine import session_scope
from models.lifecycle import GRID_LEVEL, RESOLVED_IN_GRID, running_deadline_sql
from models.permissions import in_grid_sql
from models.stats import (
    DONE_STATUSES,
    LIT_STATUSES,
    NO_GRID,
    PERIOD_FIELDS,
    Tally,
    _count_if,
    _dialect,
    _millis,
    _rate,
    department_light,
    department_names,
    light_sql,
    month_bounds,
    period_aggregates,
    worst_first,
)
from models.tables import (
    API,
    ENTERPRISE,
    GRID_REPORT,
    HOTLINE,
    MERGED,
    OPEN_STATUSES,
    RESIDENT,
    Case,
    Grid,
)

# Chinese names of the levels as the league table's headings use them.
LEVEL_TITLES = {
    "district": "区",
    "street": "街道（镇）",
    "community": "社区（村）",
    "area": "片区",
    "grid": "网格",
    "micro": "微网格",
}
RED_POINTS_LIMIT = 1000  # the map shows at most this many red cases (most overdue first)

# Channels (哨) as the seed reports them: each case counts in exactly one, the first of this
# order it belongs to (see _channel_key), so the counts add up to the cases received. A 攻坚哨
# is named by what it became (a hard case handled jointly), whatever its intake; a case a grid
# whistled up, or a grid's own report from the field, is a 雷锋哨 even if the hotline brought it.
CHANNEL_NAMES = {
    "hard": "攻坚哨",
    "leifeng": "雷锋哨",
    "hotline": "热线哨",
    "api": "其他平台",
    "enterprise": "企业吹哨",
    "resident": "随手拍",
}


# ---------------------------------------------------------------- the grid tree


@dataclass
class GridIndex:
    """The Grid table as a tree: names, levels, parents and children (in code order)."""

    names: dict[str, str] = field(default_factory=dict)
    levels: dict[str, str] = field(default_factory=dict)
    parents: dict[str, str | None] = field(default_factory=dict)
    children: dict[str | None, list[str]] = field(default_factory=lambda: defaultdict(list))
    order: list[str] = field(default_factory=list)  # top down (see _number_rows)
    row_of: dict[str, int] = field(default_factory=dict)
    parent_row: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    rows_by_depth: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def from_rows(cls, rows) -> GridIndex:
        index = cls()
        for code, name, level, parent in sorted(rows):
            index.names[code], index.levels[code] = name, level
            index.parents[code] = parent
        for code, parent in index.parents.items():
            # A parent that is not a grid (a broken row) makes its child a root, not an orphan.
            index.children[parent if parent in index.names else None].append(code)
        index._number_rows()
        return index

    def _number_rows(self) -> None:
        """Rows for roll_up's matrix, top down, with each row's parent row and depth."""
        self.order = self.top_down()
        self.row_of = {code: i for i, code in enumerate(self.order)}
        parents = [self.row_of.get(self.parents[c], -1) for c in self.order]
        depth = np.zeros(len(self.order), dtype=np.int64)
        for i, parent in enumerate(parents):  # a parent's row always comes first
            depth[i] = depth[parent] + 1 if parent >= 0 else 0
        self.parent_row = np.array(parents, dtype=np.int64)
        self.rows_by_depth = [
            np.flatnonzero(depth == d) for d in range(int(depth.max(initial=0)) + 1)
        ]

    def __contains__(self, code: object) -> bool:
        return code in self.names

    def lineage(self, code: str) -> list[str]:
        """The code and every grid above it, up to its root."""
        out, seen = [], set()
        while code in self.names and code not in seen:  # `seen`: a cycle cannot hang us
            out.append(code)
            seen.add(code)
            code = self.parents[code]
        return out

    def top(self) -> tuple[str | None, list[str]]:
        """(the district's code or None, the codes of the first league table: its streets)."""
        roots = self.children[None]
        if len(roots) == 1 and self.levels[roots[0]] == "district":
            return roots[0], list(self.children[roots[0]])
        return None, list(roots)

    def path(self, code: str | None) -> list[dict[str, str]]:
        """[{code, name}] from below the district down to `code`: the drill-down breadcrumb."""
        if code is None or code not in self:
            return []
        chain = reversed(self.lineage(code))
        return [{"code": c, "name": self.names[c]} for c in chain if self.levels[c] != "district"]

    def top_down(self) -> list[str]:
        """Every grid reachable from a root, each after the grid above it."""
        order = list(self.children.get(None, ()))
        for code in order:  # the list grows as it is walked: breadth first
            order.extend(self.children.get(code, ()))
        return order

    def subtree(self, code: str) -> set[str]:
        out, stack = set(), [code]
        while stack:
            current = stack.pop()
            out.add(current)
            stack.extend(self.children.get(current, ()))
        return out


async def grid_index(session: AsyncSession) -> GridIndex:
    return GridIndex.from_rows(
        (await session.exec(select(Grid.code, Grid.name, Grid.level, Grid.parent_code))).all()
    )


# ---------------------------------------------------------------- tallies per grid

# A grid's counts travel as a plain vector in Tally's field order (by_status left out: no grid
# figure uses it); the roll-up adds them up the tree as one matrix, a level at a time, and only
# the rows shown become Tally objects.
TALLY_COUNTS = tuple(f.name for f in fields(Tally) if f.name != "by_status")
# Behind 小事不出网格率 / 大事不出街镇率, after Tally's counts in the same vector: cases that
# started in a grid and are done, and of those the ones resolved in the grid, and in the grid
# or at the street.
GRID_COUNTS = ("grid_done", "in_grid", "in_street")
COUNTS = TALLY_COUNTS + GRID_COUNTS
_AT = {name: i for i, name in enumerate(COUNTS)}
_ZERO = (0,) * len(COUNTS)
# What the grid league shows needs only these of period_aggregates(): the handling time and
# the classifier's acceptance (their Tally fields stay 0, and rows leave them out) would cost
# a third more time on every scan.
GRID_FIELDS = ("dispatched", "timed", "on_time", "rated", "content")
HIDDEN = (
    "by_status",
    "handled",
    "handling_hours",
    "avg_handling_hours",
    "suggested",
    "accepted",
    "acceptance_rate",
)


def as_tally(vector) -> Tally:
    """Tally's part of a COUNTS vector (the grid counts: see grid_rates)."""
    return Tally(
        **{
            name: float(v) if name == "handling_hours" else round(float(v))
            for name, v in zip(TALLY_COUNTS, vector, strict=False)
        }
    )


def grid_rates(vector) -> dict[str, Any]:
    """小事不出网格率 (in_grid_rate) and 大事不出街镇率 (in_street_rate) of a COUNTS vector,
    with the grid-started cases done that both are counted over (None: no such case)."""
    done, in_grid, in_street = (round(float(vector[_AT[name]])) for name in GRID_COUNTS)
    return {
        "grid_done": done,
        "in_grid": in_grid,
        "in_street": in_street,
        "in_grid_rate": _rate(in_grid, done),
        "in_street_rate": _rate(in_street, done),
    }


def _grid_aggregates() -> list:
    """The SQL sums behind GRID_COUNTS, in their order."""
    grid_done = and_(Case.started_in_grid.is_(True), Case.status.in_(DONE_STATUSES))
    return [
        _count_if(grid_done),
        _count_if(and_(grid_done, Case.resolved_level == GRID_LEVEL)),
        _count_if(and_(grid_done, Case.resolved_level.in_(sorted(RESOLVED_IN_GRID)))),
    ]


def _in_area(area: str | None) -> list:
    """Only the cases in this grid or below it (None: all cases, with a grid or not)."""
    return [] if area is None else [in_grid_sql(Case.grid_code, area)]


async def _period_by_grid(
    session: AsyncSession, start: datetime, end: datetime, area: str | None = None
) -> dict[str | None, list]:
    """Cases created in [start, end), per the grid_code they carry (None = no grid)."""
    done = _count_if(Case.status.in_(DONE_STATUSES))  # Tally.done: 办结 (see stats)
    aggregates = dict(zip(PERIOD_FIELDS, period_aggregates(_dialect(session)), strict=True))
    stmt = (
        select(
            Case.grid_code,
            func.count(),
            done,
            *(aggregates[f] for f in GRID_FIELDS),
            *_grid_aggregates(),
        )
        .where(
            Case.created_at >= start, Case.created_at < end, Case.status != MERGED, *_in_area(area)
        )
        .group_by(Case.grid_code)
    )
    slots = [
        _AT["created"],
        _AT["done"],
        *(_AT[name] for name in GRID_FIELDS),
        *(_AT[name] for name in GRID_COUNTS),
    ]
    out = {}
    for code, *values in await session.exec(stmt):
        vector = list(_ZERO)
        for slot, value in zip(slots, values, strict=True):
            vector[slot] = value or 0
        out[code] = vector
    return out


async def _open_by_grid(
    session: AsyncSession, now: datetime, yellow_ratio: float, area: str | None = None
) -> dict[str | None, list]:
    """Open cases now with their yellow and red counts, per grid_code."""
    is_red, is_yellow = light_sql(now, yellow_ratio, _dialect(session))
    stmt = (
        select(Case.grid_code, func.count(), _count_if(is_yellow), _count_if(is_red))
        .where(Case.status.in_(OPEN_STATUSES), *_in_area(area))
        .group_by(Case.grid_code)
    )
    out = {}
    for code, n, yellow, red in await session.exec(stmt):
        vector = list(_ZERO)
        vector[_AT["open"]], vector[_AT["yellow"]], vector[_AT["red"]] = n, yellow or 0, red or 0
        out[code] = vector
    return out


def roll_up(
    index: GridIndex, *own: dict[str | None, list]
) -> tuple[dict[str | None, np.ndarray], Tally, Tally]:
    """(counts per grid including everything below it, the whole district, the unplaced
    cases) from counts per grid_code (several dicts are added together). A code that is not
    in the tree counts for the district only. The first result's None key holds the
    whole district's vector too (its grid counts are not in a Tally)."""
    matrix = np.zeros((len(index.order), len(COUNTS)))
    total, unplaced = np.zeros(len(COUNTS)), np.zeros(len(COUNTS))
    for by_code in own:
        if not by_code:
            continue
        codes = list(by_code)
        values = np.array([by_code[c] for c in codes], dtype=float)
        rows = np.array([index.row_of.get(c, -1) for c in codes], dtype=np.int64)
        known = rows >= 0
        np.add.at(matrix, rows[known], values[known])
        total += values.sum(axis=0)
        unplaced += values[~known].sum(axis=0)
    for rows in reversed(index.rows_by_depth[1:]):  # the deepest level first, up to the roots
        np.add.at(matrix, index.parent_row[rows], matrix[rows])
    rolled: dict[str | None, np.ndarray] = {code: matrix[i] for code, i in index.row_of.items()}
    rolled[None] = total
    return rolled, as_tally(total), as_tally(unplaced)


# ---------------------------------------------------------------- red points for the map


async def red_points(
    session: AsyncSession, *, now: datetime, rules: Rules, limit: int = RED_POINTS_LIMIT
) -> list[dict[str, Any]]:
    """Red cases that have a location, most overdue first: where the map puts its red dots."""
    is_red, _ = light_sql(now, rules.yellow_ratio, _dialect(session))
    # The running deadline's SQL twin (models/lifecycle.py).
    deadline = running_deadline_sql()
    stmt = (
        select(
            Case.ref, Case.grid_code, Case.latitude, Case.longitude, Case.department_code, deadline
        )
        .where(
            Case.status.in_(LIT_STATUSES),
            is_red,
            Case.latitude.is_not(None),
            Case.longitude.is_not(None),
        )
        .order_by(deadline)
        .limit(limit)
    )
    names = await department_names(session)
    return [
        {
            "ref": ref,
            "grid_code": code,
            "lat": round(lat, 6),
            "lon": round(lon, 6),
            "department": names.get(dept, dept or ""),
            "hours_overdue": round((now - due).total_seconds() / 3600, 1),
        }
        for ref, code, lat, lon, dept, due in await session.exec(stmt)
    ]


# ---------------------------------------------------------------- channels and 报到


def _channel_key():
    """The SQL expression naming a case's channel (CHANNEL_NAMES, in its order)."""
    return case(
        (Case.is_hard.is_(True), "hard"),
        (or_(Case.whistled_at.is_not(None), Case.channel == GRID_REPORT), "leifeng"),
        (Case.channel == HOTLINE, "hotline"),
        (Case.channel == API, "api"),
        (Case.kind == ENTERPRISE, "enterprise"),
        else_=RESIDENT,
    )


def _called_at():
    """When the department was called to 报到: the whistle for a case a grid (or street)
    whistled up, else the dispatch (派单). A later dispatch (a reopen, or a redispatch after
    退回) is a new call and wins: the department signs for that one."""
    return case(
        (
            and_(
                Case.whistled_at.is_not(None),
                or_(Case.dispatched_at.is_(None), Case.whistled_at >= Case.dispatched_at),
            ),
            Case.whistled_at,
        ),
        else_=Case.dispatched_at,
    )


async def channels_and_report_times(
    session: AsyncSession, *, start: datetime, end: datetime
) -> dict[str, list[dict[str, Any]]]:
    """Cases created in [start, end), in one scan: the count per channel (哨, most first;
    only channels that received cases) and 报到 per department — how long from being called
    (a grid's 吹哨, else 派单) to 签收 over the cases it signed for: how many (and how many
    of them were whistled up), the mean hours and the share within the sign-for limit
    (signed_at ≤ sign_by), slowest first."""
    dialect = _dialect(session)
    key, called = _channel_key(), _called_at()
    # A grid's own 签收 stamps signed_at too, but only while no department has the case: a
    # department's dispatch or whistle clears it (models/cases.py), so what is left is its 报到.
    signed = and_(
        Case.signed_at.is_not(None), called.is_not(None), Case.department_code.is_not(None)
    )
    hours = (_millis(Case.signed_at, dialect) - _millis(called, dialect)) / 3600000.0
    stmt = (
        select(
            key,
            Case.department_code,
            func.count(),
            _count_if(signed),
            func.sum(case((signed, hours), else_=0.0)),
            _count_if(and_(signed, Case.signed_at <= Case.sign_by)),
            _count_if(and_(signed, Case.sign_by.is_not(None))),
            _count_if(and_(signed, Case.whistled_at.is_not(None))),
        )
        .where(Case.created_at >= start, Case.created_at < end, Case.status != MERGED)
        .group_by(key, Case.department_code)
    )
    counts: dict[str, int] = defaultdict(int)
    reports: dict[str, list] = {}
    for channel, dept, n, reported, *sums_of_group in await session.exec(stmt):
        counts[channel] += n
        if reported:
            sums = reports.setdefault(dept, [0, 0.0, 0, 0, 0])
            for i, value in enumerate((reported, *sums_of_group)):
                sums[i] += value or 0
    names = await department_names(session)
    channels = [
        {"channel": k, "name": name, "count": counts[k]}
        for k, name in CHANNEL_NAMES.items()
        if counts.get(k)
    ]
    report_rows = [
        {
            "code": code,
            "name": names.get(code, code),
            "reported": n,
            "whistled": int(whistled),
            "avg_report_hours": round(float(total) / n, 2),
            "report_on_time_rate": _rate(int(on_time), int(limited)),
        }
        for code, (n, total, on_time, limited, whistled) in reports.items()
    ]
    # Most first; a tie keeps CHANNEL_NAMES' order (sorted is stable).
    return {
        "channels": sorted(channels, key=lambda r: -r["count"]),
        "report_times": sorted(report_rows, key=lambda r: (-r["avg_report_hours"], r["code"])),
    }


# ---------------------------------------------------------------- the league, grid by grid


@dataclass
class GridLeague:
    """Figures of every grid (rolled up), with the tree to walk them level by level."""

    index: GridIndex
    rolled: dict[str | None, np.ndarray]  # COUNTS vectors; None = the whole district
    total: Tally
    unplaced: Tally
    reds: list[dict[str, Any]] = field(default_factory=list)

    def row(self, code: str) -> dict[str, Any]:
        vector = self.rolled.get(code, _ZERO)
        tally = as_tally(vector)
        row = tally.figures() | grid_rates(vector)
        for name in HIDDEN:
            del row[name]
        row.update(
            code=code,
            name=self.index.names[code],
            level=self.index.levels[code],
            light=department_light(tally.red, tally.yellow),
            has_children=bool(self.index.children.get(code)),
        )
        return row

    def view(self, code: str | None = None) -> dict[str, Any]:
        """One drill-down step: the grid `code` (None = the district), its path, and the
        league table of the grids right below it, worst first. Raises KeyError for an
        unknown code."""
        district, top = self.index.top()
        if code is not None and code != district and code not in self.index:
            raise KeyError(code)
        at_top = code is None or code == district
        below = top if at_top else list(self.index.children.get(code, ()))
        rows = sorted((self.row(c) for c in below), key=worst_first)
        if at_top:
            node = self.total.figures() | grid_rates(self.rolled.get(None, _ZERO))
            node.update(
                code=district,
                name=self.index.names.get(district, ""),
                level="district",
                unplaced={
                    "name": NO_GRID,
                    "received": self.unplaced.created,
                    "open": self.unplaced.open,
                },
            )
            area = None
        else:
            node, area = self.row(code), self.index.subtree(code)
        for name in HIDDEN:
            node.pop(name, None)
        levels = {r["level"] for r in rows}
        return {
            "node": node,
            "path": self.index.path(None if at_top else code),
            "level": levels.pop() if len(levels) == 1 else None,
            "level_title": "、".join(
                sorted({LEVEL_TITLES.get(r["level"], r["level"]) for r in rows})
            ),
            "rows": rows,
            "red_points": [p for p in self.reds if area is None or p["grid_code"] in area],
        }


async def grid_league(
    engine: AsyncEngine,
    *,
    now: datetime,
    rules: Rules,
    start: datetime | None = None,
    end: datetime | None = None,
    index: GridIndex | None = None,
) -> GridLeague:
    """Every grid's figures for cases created in [start, end) (this month by default) plus
    open/yellow/red now, and the red cases to put on the map. Queries run side by side;
    `index` is the grid table when the caller keeps it (it changes only with the config)."""
    if start is None or end is None:
        start, end = month_bounds(now, rules.calendar)

    async def read(query, *args, **kwargs):
        async with session_scope(engine) as session:
            return await query(session, *args, **kwargs)

    async def kept_index() -> GridIndex:
        return index

    index, period, current, reds = await asyncio.gather(
        kept_index() if index is not None else read(grid_index),
        read(_period_by_grid, start, end),
        read(_open_by_grid, now, rules.yellow_ratio),
        read(red_points, now=now, rules=rules),
    )
    rolled, total, unplaced = roll_up(index, period, current)
    return GridLeague(index=index, rolled=rolled, total=total, unplaced=unplaced, reds=reds)


async def area_view(
    session: AsyncSession,
    code: str,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    rules: Rules,
) -> dict[str, Any] | None:
    """GridLeague.view(code) counting only the cases in that grid and below it (what grid
    staff's /stats shows); None when the grid is not in the Grid table (any more)."""
    index = await grid_index(session)
    if code not in index:
        return None
    period = await _period_by_grid(session, start, end, code)
    current = await _open_by_grid(session, now, rules.yellow_ratio, code)
    rolled, total, unplaced = roll_up(index, period, current)
    return GridLeague(index=index, rolled=rolled, total=total, unplaced=unplaced).view(code)


async def grid_extras(engine: AsyncEngine, *, now: datetime, rules: Rules) -> dict[str, Any]:
    """This month's counts per channel and 报到 time per department, for the dashboard."""
    start, end = month_bounds(now, rules.calendar)
    async with session_scope(engine) as session:
        return await channels_and_report_times(session, start=start, end=end)
