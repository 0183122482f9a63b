"""吹哨报到 in the grid: who in the grid has a case, and the grid's moves on it.

小事不出网格、大事不出街镇: a grid matter goes to the staff of the deepest grid that has any,
walking up micro-grid → grid → 片 → community → street (nobody anywhere: it stays with triage).
They sign it, resolve it, or blow the whistle (吹哨) up to the street's staff or straight to a
district department, whose 签收 is its 报到. A department's 办结 of a case in a grid may wait
for the grid's staff to verify it on site (核查). Every move goes through
models.cases.transition (the lifecycle table); functions never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.cases import Actor, active_department, get_case, resolution_details, transition
from models.deadlines import Rules
from models.lifecycle import DEPARTMENT_LEVEL, GRID_LEVEL, STREET_LEVEL, CaseError
from models.permissions import GRID_ROLES
from models.tables import Case, Grid, Staff
from models.validation import clean_text

STREET = "street"
MAX_WALK = 12  # grid levels walked up at most (a parent loop in the data never hangs)


@dataclass(frozen=True)
class Handler:
    """The grid whose staff get a case, its level, and its staff's Telegram ids."""

    grid_code: str
    level: str
    staff: tuple[int, ...]


async def staff_of_grid(session: AsyncSession, grid_code: str) -> tuple[int, ...]:
    """The active grid/street staff of exactly this grid, by Telegram id."""
    stmt = (
        select(Staff.telegram_id)
        .where(
            col(Staff.grid_code) == grid_code,
            col(Staff.role).in_(GRID_ROLES),
            col(Staff.active).is_(True),
        )
        .order_by(col(Staff.telegram_id))
    )
    return tuple((await session.exec(stmt)).all())


async def handler_for(
    session: AsyncSession, grid_code: str | None, *, up_to_street: bool = True
) -> Handler | None:
    """The deepest grid at or above `grid_code` that has staff, up to its street; None when
    nobody there has staff (or no grid). `up_to_street` False stops below the street."""
    code = grid_code
    for _ in range(MAX_WALK):
        grid = await session.get(Grid, code) if code else None
        if grid is None or grid.level == "district":
            return None
        if grid.level == STREET and not up_to_street:
            return None
        staff = await staff_of_grid(session, grid.code)
        if staff:
            return Handler(grid.code, grid.level, staff)
        if grid.level == STREET:
            return None
        code = grid.parent_code
    return None


async def street_handler(session: AsyncSession, grid_code: str | None) -> Handler | None:
    """The street (街镇) above `grid_code` if it has staff: where a grid whistles up to."""
    code = grid_code
    for _ in range(MAX_WALK):
        grid = await session.get(Grid, code) if code else None
        if grid is None:
            return None
        if grid.level == STREET:
            staff = await staff_of_grid(session, grid.code)
            return Handler(grid.code, grid.level, staff) if staff else None
        code = grid.parent_code
    return None


def _level_resolved(level: str) -> str:
    return STREET_LEVEL if level == STREET else GRID_LEVEL


async def _handling_level(session: AsyncSession, case: Case) -> str:
    grid = await session.get(Grid, case.handling_grid_code) if case.handling_grid_code else None
    return grid.level if grid else GRID_LEVEL


async def to_grid(
    session: AsyncSession,
    case_id: int,
    actor: Actor,
    now: datetime,
    *,
    rules: Rules,
    expected_version: int | None = None,
    current: Case | None = None,
) -> tuple[Case, Handler]:
    """交网格办理: the case goes to the staff of the deepest grid that has any.

    Raises CaseError("grid_no_staff") when its grid has nobody up to the street (or it has
    no grid): the case stays where it is, with triage.
    """
    case = (
        current
        if current is not None and current.id == case_id
        else await get_case(session, case_id)
    )
    if case.grid_code is None:
        raise CaseError("grid_unknown")
    handler = await handler_for(session, case.grid_code)
    if handler is None:
        raise CaseError("grid_no_staff")
    case = await transition(
        session,
        case_id,
        "to_grid",
        actor,
        now,
        rules=rules,
        permission="to_grid",
        expected_version=expected_version,
        current=current,
        handling_grid_code=handler.grid_code,
        started_in_grid=True,
        department_code=None,
        details={"grid": handler.grid_code, "level": handler.level},
    )
    return case, handler


async def grid_sign(
    session: AsyncSession,
    case_id: int,
    actor: Actor,
    now: datetime,
    *,
    rules: Rules,
    expected_version: int | None = None,
) -> Case:
    """The grid's (or the street's) 签收."""
    return await transition(
        session,
        case_id,
        "grid_sign",
        actor,
        now,
        rules=rules,
        permission="grid_sign",
        expected_version=expected_version,
        details={"grid": (await get_case(session, case_id)).handling_grid_code},
    )


async def grid_resolve(
    session: AsyncSession,
    case_id: int,
    actor: Actor,
    result: str,
    now: datetime,
    *,
    rules: Rules,
    photo: str | None = None,
    expected_version: int | None = None,
) -> Case:
    """办结 in the grid (小事不出网格) or at the street (大事不出街镇), with result and photo."""
    result = clean_text(result, field="resolution", min_len=2, max_len=2000)
    case = await get_case(session, case_id)
    level = _level_resolved(await _handling_level(session, case))
    return await transition(
        session,
        case_id,
        "grid_resolve",
        actor,
        now,
        rules=rules,
        permission="grid_resolve",
        expected_version=expected_version,
        resolution=result,
        resolution_photo=photo,
        resolved_level=level,
        details=resolution_details(result, photo, level=level),
    )


async def whistle(
    session: AsyncSession,
    case_id: int,
    actor: Actor,
    target: str,
    reason: str,
    now: datetime,
    *,
    rules: Rules,
    expected_version: int | None = None,
) -> tuple[Case, Handler | None]:
    """吹哨 with a reason: `target` "street" (the street's staff take it over) or a
    department's code (it reports for duty by 签收). Returns the case and, for the street,
    who has it now."""
    reason = clean_text(reason, field="whistle_reason", min_len=2, max_len=500)
    case = await get_case(session, case_id)
    level = await _handling_level(session, case)
    record = {"whistled_by": actor.telegram_id, "whistle_level": level}
    if target == STREET:
        if level == STREET:
            raise CaseError("whistle_already_street")
        street = await street_handler(session, case.handling_grid_code)
        if street is None:
            raise CaseError("street_no_staff")
        case = await transition(
            session,
            case_id,
            "whistle_street",
            actor,
            now,
            rules=rules,
            permission="whistle",
            expected_version=expected_version,
            handling_grid_code=street.grid_code,
            **record,
            details={"to": STREET, "grid": street.grid_code, "from_level": level, "reason": reason},
        )
        return case, street
    await active_department(session, target)
    case = await transition(
        session,
        case_id,
        "whistle_department",
        actor,
        now,
        rules=rules,
        permission="whistle",
        expected_version=expected_version,
        department_code=target,
        **record,
        details={"to": target, "department": target, "from_level": level, "reason": reason},
    )
    return case, None


async def verifier_for(session: AsyncSession, case: Case) -> Handler | None:
    """Who verifies (核查) a department's work on this case: the staff of the deepest grid with
    any below the street (the street does not walk the site); None: nobody, no 核查."""
    return await handler_for(session, case.grid_code, up_to_street=False)


async def verify(
    session: AsyncSession,
    case_id: int,
    actor: Actor,
    passed: bool,
    now: datetime,
    *,
    rules: Rules,
    reason: str | None = None,
    expected_version: int | None = None,
) -> Case:
    """核查通过 (resolved by the department: the 回访 follows) or 核查不通过 with a reason
    (back to the department, which resolves it again)."""
    if passed:
        case = await get_case(session, case_id)
        return await transition(
            session,
            case_id,
            "verify_pass",
            actor,
            now,
            rules=rules,
            permission="verify",
            expected_version=expected_version,
            resolved_level=DEPARTMENT_LEVEL,
            details={"result": case.resolution, "photo": bool(case.resolution_photo)},
        )
    reason = clean_text(reason, field="verify_reason", min_len=2, max_len=500)
    return await transition(
        session,
        case_id,
        "verify_fail",
        actor,
        now,
        rules=rules,
        permission="verify",
        expected_version=expected_version,
        details={"reason": reason},
    )
