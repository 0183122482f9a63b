"""People: reporters (residents and enterprise contacts), enterprises and staff.

Functions never commit; the caller's `models.engine.session_scope` does.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.credit_code import validate_credit_code
from models.permissions import ROLES
from models.statements import dialect_insert, prebuilt
from models.tables import (
    ENTERPRISE,
    RESIDENT,
    Department,
    Enterprise,
    Grid,
    Reporter,
    Staff,
)
from models.validation import InvalidInput, clean_text, normalize_phone


async def reporter_by_telegram_id(session: AsyncSession, telegram_id: int) -> Reporter | None:
    """The reporter with this Telegram id, or None (never creates one)."""
    result = await session.exec(select(Reporter).where(Reporter.telegram_id == telegram_id))
    return result.first()


async def upsert_staff(
    session: AsyncSession,
    telegram_id: int,
    name: str,
    role: str,
    *,
    department_code: str | None = None,
    grid_code: str | None = None,
    active: bool = True,
) -> Staff:
    """Add or update a staff member (config sync, or an admin adding someone)."""
    if role not in ROLES:
        raise InvalidInput("unknown_role", role=role)
    if role == "department" and (
        not department_code or await session.get(Department, department_code) is None
    ):
        raise InvalidInput("unknown_department", department=department_code)
    if grid_code and await session.get(Grid, grid_code) is None:
        raise InvalidInput("unknown_grid", grid=grid_code)
    result = await session.exec(select(Staff).where(Staff.telegram_id == telegram_id))
    staff = result.first() or Staff(telegram_id=telegram_id, role=role)
    staff.name, staff.role, staff.active = name, role, active
    staff.department_code, staff.grid_code = department_code, grid_code
    session.add(staff)
    await session.flush()
    return staff


# ---------------------------------------------------------------- reporters and enterprises


async def get_or_create_reporter(
    session: AsyncSession,
    telegram_id: int,
    display_name: str = "",
    kind: str = RESIDENT,
    *,
    now: datetime,
) -> Reporter:
    """The reporter with this Telegram id, created on first contact (safe under concurrency).

    One upsert: a known reporter keeps everything but a newly given display name, and is
    reachable again (they are talking to the bot, so they have not blocked it).
    """
    params = {
        "telegram_id": telegram_id,
        "kind": kind,
        "display_name": display_name[:200],
        "phone_consent": False,
        "reachable": True,
        "created_at": now,
    }
    return (await session.exec(_upsert_reporter(session), params=params)).scalars().one()


@prebuilt
def _upsert_reporter(insert_):
    stmt = insert_(Reporter)
    keep_old_name = func.coalesce(
        func.nullif(stmt.excluded.display_name, ""), Reporter.__table__.c.display_name
    )
    return (
        stmt.on_conflict_do_update(
            index_elements=["telegram_id"], set_={"display_name": keep_old_name, "reachable": True}
        )
        .returning(Reporter)
        .execution_options(populate_existing=True)
    )


async def _existing_reporter(session: AsyncSession, telegram_id: int) -> Reporter:
    reporter = await reporter_by_telegram_id(session, telegram_id)
    if reporter is None:
        raise InvalidInput("reporter_unknown")
    return reporter


async def set_reporter_reachable(session: AsyncSession, telegram_id: int, reachable: bool) -> None:
    """Record that Telegram can (not) reach this user; unknown ids are ignored."""
    await session.exec(
        update(Reporter).where(col(Reporter.telegram_id) == telegram_id).values(reachable=reachable)
    )


async def set_reporter_phone(
    session: AsyncSession, telegram_id: int, phone: str | None, consent: bool
) -> Reporter:
    """Keep a validated phone number only with the reporter's consent; otherwise forget it."""
    reporter = await _existing_reporter(session, telegram_id)
    normalized = normalize_phone(phone) if (consent and phone) else None
    reporter.phone = normalized
    reporter.phone_consent = bool(consent and normalized)
    session.add(reporter)
    await session.flush()
    return reporter


async def register_enterprise(
    session: AsyncSession,
    reporter_telegram_id: int,
    name: str,
    credit_code: str,
    industry: str | None = None,
    park: str | None = None,
    *,
    now: datetime,
) -> Enterprise:
    """Link the reporter to the enterprise with this 统一社会信用代码, registering it if new."""
    name = clean_text(name, field="enterprise_name", min_len=2, max_len=100)
    code = validate_credit_code(credit_code)
    industry = (industry or "").strip()[:100] or None
    park = (park or "").strip()[:100] or None
    reporter = await get_or_create_reporter(session, reporter_telegram_id, now=now)
    await session.exec(
        dialect_insert(session)(Enterprise)
        .values(
            name=name,
            credit_code=code,
            industry=industry,
            park=park,
            news_subscribed=True,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["credit_code"])
    )
    enterprise = (
        await session.exec(select(Enterprise).where(Enterprise.credit_code == code))
    ).one()
    # A second person of the same enterprise fills in what the first left blank.
    if enterprise.industry is None and industry:
        enterprise.industry = industry
    if enterprise.park is None and park:
        enterprise.park = park
    session.add(enterprise)
    reporter.kind, reporter.enterprise_id = ENTERPRISE, enterprise.id
    session.add(reporter)
    await session.flush()
    return enterprise


async def enterprise_by_credit_code(session: AsyncSession, credit_code: str) -> Enterprise | None:
    """The registered enterprise with this (validated) 统一社会信用代码, or None."""
    stmt = select(Enterprise).where(Enterprise.credit_code == credit_code)
    return (await session.exec(stmt)).first()


async def enterprise_of(session: AsyncSession, reporter_telegram_id: int) -> Enterprise | None:
    reporter = await reporter_by_telegram_id(session, reporter_telegram_id)
    if reporter is None or reporter.enterprise_id is None:
        return None
    return await session.get(Enterprise, reporter.enterprise_id)


async def set_news_subscription(
    session: AsyncSession, reporter_telegram_id: int, subscribed: bool
) -> None:
    """Turn 惠企政策 pushes on or off for the reporter's enterprise."""
    enterprise = await enterprise_of(session, reporter_telegram_id)
    if enterprise is None:
        raise InvalidInput("enterprise_not_registered")
    enterprise.news_subscribed = subscribed
    session.add(enterprise)
    await session.flush()


async def get_staff(session: AsyncSession, telegram_id: int) -> Staff | None:
    """The active staff member with this Telegram id, or None."""
    result = await session.exec(
        select(Staff).where(Staff.telegram_id == telegram_id, col(Staff.active).is_(True))
    )
    return result.first()


async def staff_of_department(session: AsyncSession, code: str) -> list[Staff]:
    stmt = (
        select(Staff)
        .where(
            Staff.department_code == code, Staff.role == "department", col(Staff.active).is_(True)
        )
        .order_by(col(Staff.id))
    )
    return list((await session.exec(stmt)).all())
