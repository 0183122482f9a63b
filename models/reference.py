"""Reference data: departments, grids and the staff listed in config.toml, synced into the
store at start; and reading departments.
"""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.deadlines import (
    DEFAULT_LIMITS,
    parse_limit,
)
from models.people import upsert_staff
from models.tables import (
    Department,
    Grid,
)
from whistle.config import ConfigError

# ---------------------------------------------------------------- reference data


def _department_limits(settings, dept_limits: dict[str, str]) -> dict[str, str]:
    limits = {**DEFAULT_LIMITS, **dict(settings.limits), **dict(dept_limits)}
    for key, value in limits.items():
        try:
            parse_limit(value)
        except ValueError as exc:
            raise ConfigError(f"时限 {key} 配置有误: {exc}") from exc
    return limits


def _grids_parents_first(grids) -> list:
    """Grids ordered so every parent comes before its children (foreign keys need it)."""
    by_code = {g.code: g for g in grids}

    def depth(g) -> int:
        d, seen = 0, set()
        while g.parent in by_code and g.code not in seen:
            seen.add(g.code)
            g, d = by_code[g.parent], d + 1
        return d

    return sorted(grids, key=depth)


def _configured_grids(settings) -> list:
    """[[grids]] plus the gazetteer file (models/gridmap.py), whose codes cases refer to."""
    from models.gridmap import grid_records  # the geo stack is loaded only where grids are synced

    try:
        return grid_records(settings)
    except ValueError as exc:  # geo.GridError: [[grids]] itself is broken
        raise ConfigError(str(exc)) from exc


async def sync_reference_data(session: AsyncSession, settings) -> None:
    """Upsert departments, grids and staff from config.toml.

    Departments no longer in the config become inactive (never deleted: cases refer to them).
    Staff added by admins in the store are left alone.
    """
    seen = set()
    for d in settings.departments:
        limits = _department_limits(settings, d.limits)
        dept = await session.get(Department, d.code) or Department(code=d.code, name=d.name)
        dept.name, dept.description, dept.chat_id = d.name, d.description, d.chat_id
        dept.sign_limit_normal, dept.sign_limit_urgent = (
            limits["sign_normal"],
            limits["sign_urgent"],
        )
        dept.resolve_limit_normal = limits["resolve_normal"]
        dept.resolve_limit_urgent = limits["resolve_urgent"]
        dept.active = True
        session.add(dept)
        seen.add(d.code)
    for dept in (await session.exec(select(Department))).all():
        if dept.code not in seen and dept.active:
            dept.active = False
            session.add(dept)
    await session.flush()

    grids = _configured_grids(settings)
    codes = {g.code for g in grids}
    for g in _grids_parents_first(grids):
        if g.parent and g.parent not in codes and await session.get(Grid, g.parent) is None:
            raise ConfigError(f"网格 {g.code} 的上级 {g.parent} 不存在")
        grid = await session.get(Grid, g.code) or Grid(code=g.code, name=g.name, level=g.level)
        grid.name, grid.level, grid.parent_code = g.name, g.level, g.parent
        session.add(grid)
        await session.flush()

    levels = {g.code: g.level for g in grids}
    for s in settings.staff:
        if s.grid and s.grid not in codes and await session.get(Grid, s.grid) is None:
            raise ConfigError(f"工作人员 {s.telegram_id} 的网格 {s.grid} 不存在")
        if s.role == "street" and levels.get(s.grid or "") != "street":
            # 街镇 staff take what the grids below whistle up: they belong to a street.
            raise ConfigError(
                f"街镇工作人员 {s.telegram_id} 的 grid 应为街道（镇）级网格编码，"
                f"而不是 {s.grid or '（未设置）'}"
            )
        await upsert_staff(
            session, s.telegram_id, s.name, s.role, department_code=s.department, grid_code=s.grid
        )
    await session.flush()


async def departments(session: AsyncSession, active_only: bool = True) -> list[Department]:
    stmt = select(Department)
    if active_only:
        stmt = stmt.where(col(Department.active).is_(True))
    return list((await session.exec(stmt.order_by(col(Department.code)))).all())


async def get_department(session: AsyncSession, code: str | None) -> Department | None:
    """The department with this code (active or not), or None (also for no code)."""
    return await session.get(Department, code) if code else None
