"""Who may do what to a case: the one place the rule lives.

Actions are the store's verbs: view, dispatch, redispatch, set_priority, set_grid, decide_extension,
merge, not_accept (不予受理), sign, return, progress_note, resolve, request_extension, and for
攻坚哨 mark_hard (share a case out to several departments) and override_parts (a leader lets the
lead resolve without waiting for the parts still open).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select
from sqlalchemy import select as sql_select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from models.tables import Case, CasePart, Grid, Staff

TRIAGE_ACTIONS = frozenset(
    {
        "view",
        "dispatch",
        "redispatch",
        "set_priority",
        "decide_extension",
        "merge",
        "not_accept",
        "set_grid",
        "mark_hard",
        "to_grid",
    }
)
DEPARTMENT_ACTIONS = frozenset(
    {"view", "sign", "return", "progress_note", "resolve", "request_extension"}
)
LEADER_ACTIONS = frozenset({"view", "set_priority", "mark_hard", "override_parts"})
# 吹哨报到: what grid (and street) staff do with the cases their grid handles.
HANDLING_ACTIONS = frozenset({"grid_sign", "grid_resolve", "whistle", "verify"})
GRID_ACTIONS = frozenset({"view", "progress_note"}) | HANDLING_ACTIONS

# Every staff role and what it may do; ROLES is the one list of roles (config, /staff_add).
ROLE_ACTIONS = {
    "triage": TRIAGE_ACTIONS,
    "department": DEPARTMENT_ACTIONS,
    "grid": GRID_ACTIONS,  # 网格员, 片长, 组长, 邻长: by the level of their grid
    "street": GRID_ACTIONS,  # 街镇: a grid code of level street
    "leader": LEADER_ACTIONS,
    "admin": TRIAGE_ACTIONS,
}
ROLES = tuple(ROLE_ACTIONS)
GRID_ROLES = ("grid", "street")  # staff who belong to a grid, and get its cases


# ---------------------------------------------------------------- inside a grid
# "In this grid" means the grid or any grid below it by the Grid table's parent links, never by
# the codes' spelling: real districts' 统计用区划代码 (street 430112001000, community
# 430112001001) do not nest by prefix. The two forms below walk the same links: upwards for one
# case in Python, downwards for scans in SQL. UNION (not UNION ALL) stops a broken cycle.


async def grid_lineage(session: AsyncSession, code: str | None) -> frozenset[str]:
    """The grid `code` and every grid above it (empty when there is no such grid)."""
    if not code:
        return frozenset()
    up = sql_select(Grid.code, Grid.parent_code).where(col(Grid.code) == code)
    up = up.cte("lineage", recursive=True)
    up = up.union(sql_select(Grid.code, Grid.parent_code).where(col(Grid.code) == up.c.parent_code))
    return frozenset((await session.exec(sql_select(up.c.code))).scalars())


def subtree_codes(grid: str) -> Select:
    """SELECT of the grid's code and every code below it, for `column IN (…)`."""
    down = sql_select(Grid.code).where(col(Grid.code) == grid).cte("subtree", recursive=True)
    down = down.union(sql_select(Grid.code).where(col(Grid.parent_code) == down.c.code))
    return sql_select(down.c.code)


def in_grid_sql(column, grid: str) -> ColumnElement[bool]:
    """SQL: `column` (a grid code) is `grid` or lies below it."""
    return column.in_(subtree_codes(grid))


async def in_grid(session: AsyncSession, grid_code: str | None, staff_grid: str | None) -> bool:
    """True if grid_code is staff_grid or below it."""
    if not grid_code or not staff_grid:
        return False
    return grid_code == staff_grid or staff_grid in await grid_lineage(session, grid_code)


async def can(session: AsyncSession, staff: Staff | None, action: str, case: Case) -> bool:
    """May this (active) staff member do `action` to `case`? (Grid staff's answer reads the
    grid tree: see in_grid.)"""
    if staff is None or not staff.active:
        return False
    if action not in ROLE_ACTIONS.get(staff.role, frozenset()):
        return False
    if staff.role == "department":
        return bool(staff.department_code) and case.department_code == staff.department_code
    if staff.role in GRID_ROLES:
        # Acting needs the case to be with their grid (or one below it); seeing it, only
        # that it lies there.
        where = case.handling_grid_code if action in HANDLING_ACTIONS else case.grid_code
        return await in_grid(session, where, staff.grid_code)
    return True


def can_on_part(staff: Staff | None, action: str, part: CasePart) -> bool:
    """May this staff member do `action` to a 攻坚哨 part? A department acts on its own part
    only; the other roles as on any case (grid staff not at all: parts are departments')."""
    if staff is None or not staff.active:
        return False
    if action not in ROLE_ACTIONS.get(staff.role, frozenset()):
        return False
    if staff.role == "department":
        return bool(staff.department_code) and part.department_code == staff.department_code
    return staff.role != "grid"
