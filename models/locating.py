"""Which grid a case lies in, decided once when the case is created (and by staff after that).

Precedence: the reporter's GPS point (the deepest grid covering it), else the longest place
name in the text or address, else the 小区/村 the reporter told the bot once (/home). A point
outside every grid is flagged (`out_of_grid`) for triage and never dropped; a place named in
the text may still say where it is, but the reporter's home does not: a report made away from
home is about where they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import cases, people
from models.cases import Actor
from models.deadlines import Rules
from models.gridmap import GridMap
from models.tables import Case, Grid, Reporter
from models.validation import InvalidInput

GPS, PLACE, HOME, STAFF = "gps", "place", "home", "staff"
LOCATED_BY = (GPS, PLACE, HOME, STAFF)


@dataclass(frozen=True)
class Location:
    grid_code: str | None = None
    located_by: str | None = None  # one of LOCATED_BY, None when no grid was found
    out_of_grid: bool = False
    place: str | None = None  # the place name that decided it (PLACE)


NOWHERE = Location()


def locate_case(
    gridmap: GridMap,
    *,
    latitude: float | None = None,
    longitude: float | None = None,
    text: str = "",
    address: str | None = None,
    home_grid_code: str | None = None,
) -> Location:
    """The grid of a new case from what the reporter gave (pure: no database)."""
    out_of_grid = False
    if latitude is not None and longitude is not None and gridmap.locator is not None:
        code = gridmap.locate(latitude, longitude)
        if code is not None:
            return Location(code, GPS)
        out_of_grid = True
    # The address is what the reporter typed for "where": it names the place more surely than
    # a street mentioned in passing in the description, so it is searched first.
    for source in (address, text):
        hit = gridmap.match_place(source)
        if hit is not None:
            return Location(hit[0], PLACE, out_of_grid, hit[1])
    if not out_of_grid and home_grid_code is not None and home_grid_code in gridmap:
        return Location(home_grid_code, HOME)
    return Location(out_of_grid=out_of_grid)


async def home_grid_of(session: AsyncSession, telegram_id: int) -> str | None:
    """The grid of the reporter's home (None for a new reporter or one who never said)."""
    stmt = select(Reporter.home_grid_code).where(Reporter.telegram_id == telegram_id)
    return (await session.exec(stmt)).first()


async def locate_new_case(
    session: AsyncSession,
    gridmap: GridMap,
    *,
    telegram_id: int,
    latitude: float | None,
    longitude: float | None,
    text: str,
    address: str | None,
) -> Location:
    """locate_case with the reporter's home read from the store (the create path's one call)."""
    if gridmap.tree is None:
        return NOWHERE
    where = locate_case(gridmap, latitude=latitude, longitude=longitude, text=text, address=address)
    if where.grid_code is not None or where.out_of_grid:
        return where  # the home would not be used: spare the report's transaction a query
    home = await home_grid_of(session, telegram_id)
    return locate_case(gridmap, text="", home_grid_code=home) if home else where


async def set_home(
    session: AsyncSession,
    telegram_id: int,
    grid_code: str,
    place: str,
    *,
    now: datetime,
    display_name: str = "",
) -> Reporter:
    """Remember the reporter's 小区/村 (the grid of the place they named, and the name)."""
    if await session.get(Grid, grid_code) is None:
        raise InvalidInput("unknown_grid", grid=grid_code)
    reporter = await people.get_or_create_reporter(session, telegram_id, display_name, now=now)
    reporter.home_grid_code, reporter.home_place = grid_code, place.strip()[:100]
    session.add(reporter)
    await session.flush()
    return reporter


async def set_grid(
    session: AsyncSession,
    case_id: int,
    grid_code: str,
    actor: Actor,
    now: datetime,
    *,
    rules: Rules,
    expected_version: int | None = None,
) -> Case:
    """修改网格: staff place the case in another grid (an event in the audit trail)."""
    if await session.get(Grid, grid_code) is None:
        raise InvalidInput("unknown_grid", grid=grid_code)
    case = await cases.get_case(session, case_id)
    return await cases.transition(
        session,
        case_id,
        "set_grid",
        actor,
        now,
        rules=rules,
        permission="set_grid",
        expected_version=expected_version,
        grid_code=grid_code,
        located_by=STAFF,
        details={"from": case.grid_code, "to": grid_code, "located_by": case.located_by},
    )
