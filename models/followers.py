"""Duplicate reports (重复件, #16), store side: reporters who follow a case instead of
reporting it again (关注该案件), what the duplicate index reads, and what a merge carries over.

A follower gets the case's progress notices like its reporter (models/followup.status_notices
lists them); the case counts its reporter plus its followers.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.people import get_or_create_reporter
from models.tables import (
    BASIC,
    ENTERPRISE,
    OPEN_STATUSES,
    RESIDENT,
    SATISFIED,
    UNSATISFIED,
    Case,
    CaseFollower,
    Reporter,
)
from models.validation import InvalidInput

RATINGS = (SATISFIED, BASIC, UNSATISFIED)
MAX_PHOTOS = 10  # a kept case carries at most this many photos after merges (Telegram album)


async def follow(
    session: AsyncSession, case_id: int, telegram_id: int, now: datetime, *, display_name: str = ""
) -> tuple[Case, bool]:
    """The reporter follows an open case: (case, newly followed). Following one's own case, or
    one already followed, changes nothing; a case no longer open is a polite InvalidInput."""
    case = await session.get(Case, case_id)
    if case is None or case.status not in OPEN_STATUSES:
        raise InvalidInput("follow_closed", ref=case.ref if case else "")
    reporter = await get_or_create_reporter(session, telegram_id, display_name, now=now)
    if reporter.id == case.reporter_id or await _following(session, case_id, reporter.id):
        return case, False
    session.add(CaseFollower(case_id=case_id, reporter_id=reporter.id, at=now))
    await session.flush()
    return case, True


async def _following(session: AsyncSession, case_id: int, reporter_id: int) -> bool:
    return (
        await session.exec(
            select(CaseFollower.id).where(
                CaseFollower.case_id == case_id, CaseFollower.reporter_id == reporter_id
            )
        )
    ).first() is not None


async def followed_cases(session: AsyncSession, telegram_id: int, limit: int = 10) -> list[Case]:
    """The cases this person follows (关注), the latest followed first."""
    stmt = (
        select(Case)
        .join(CaseFollower, col(CaseFollower.case_id) == col(Case.id))
        .join(Reporter, col(Reporter.id) == col(CaseFollower.reporter_id))
        .where(Reporter.telegram_id == telegram_id)
        .order_by(col(CaseFollower.at).desc(), col(CaseFollower.id).desc())
        .limit(limit)
    )
    return list((await session.exec(stmt)).all())


async def follows(session: AsyncSession, case_id: int, telegram_id: int) -> bool:
    """Whether this person follows the case."""
    stmt = (
        select(CaseFollower.id)
        .join(Reporter, col(Reporter.id) == col(CaseFollower.reporter_id))
        .where(CaseFollower.case_id == case_id, Reporter.telegram_id == telegram_id)
    )
    return (await session.exec(stmt)).first() is not None


async def reporters_count(session: AsyncSession, case_id: int) -> int:
    """How many people reported the case: its reporter and its followers."""
    followers = (
        await session.exec(
            select(func.count()).select_from(CaseFollower).where(CaseFollower.case_id == case_id)
        )
    ).one()
    return 1 + followers


class OpenCase(NamedTuple):
    """What the duplicate question and triage's hint show of a likely duplicate."""

    id: int
    ref: str
    status: str
    reporters: int  # its reporter and its followers


async def open_cases_with_counts(
    session: AsyncSession,
    case_ids: list[int],
    *,
    not_of: int | None = None,
    offered_to: tuple[int, str] | None = None,
) -> dict[int, OpenCase]:
    """The open cases among case_ids, each with how many people reported it: one read of a
    few columns (no whole cases) for what the duplicate question and triage's hint show.
    not_of (a Telegram id): cases that person reported or follows are left out.
    offered_to (a Telegram id, the kind of their report): only the cases that person may be
    offered to follow: a resident, residents' cases; an enterprise, its own demands (an
    enterprise's demand and its progress are its own business)."""
    if not case_ids:
        return {}
    counts = (
        select(CaseFollower.case_id, func.count().label("n"))
        .where(col(CaseFollower.case_id).in_(case_ids))
        .group_by(col(CaseFollower.case_id))
        .subquery()
    )
    query = (
        select(Case.id, Case.ref, Case.status, counts.c.n)
        .outerjoin(counts, counts.c.case_id == col(Case.id))
        .where(col(Case.id).in_(case_ids), col(Case.status).in_(OPEN_STATUSES))
    )
    if not_of is not None:
        # NOT IN, not !=: a person the store has never seen (an empty subquery) excludes nothing.
        person = select(Reporter.id).where(Reporter.telegram_id == not_of)
        followed = select(CaseFollower.case_id).where(col(CaseFollower.reporter_id).in_(person))
        query = query.where(col(Case.reporter_id).not_in(person), col(Case.id).not_in(followed))
    if offered_to is not None:
        query = query.where(_may_be_offered(*offered_to))
    rows = (await session.exec(query)).all()
    return {
        case_id: OpenCase(case_id, ref, status, 1 + (n or 0)) for case_id, ref, status, n in rows
    }


def _may_be_offered(telegram_id: int, kind: str):
    """The cases a person reporting a case of `kind` may be offered to follow (SQL)."""
    if kind == ENTERPRISE:
        theirs = select(Reporter.enterprise_id).where(Reporter.telegram_id == telegram_id)
        return (col(Case.kind) == ENTERPRISE) & col(Case.enterprise_id).in_(theirs)
    return col(Case.kind) == RESIDENT


async def absorb(session: AsyncSession, merged: Case, kept: Case, now: datetime) -> None:
    """合并: the merged case's reporter and followers follow the kept case from now on (its
    notices and 回访 reach them), and its photos join the kept case's."""
    people = {merged.reporter_id} | set(
        (
            await session.exec(
                select(CaseFollower.reporter_id).where(CaseFollower.case_id == merged.id)
            )
        ).all()
    )
    already = {kept.reporter_id} | set(
        (
            await session.exec(
                select(CaseFollower.reporter_id).where(CaseFollower.case_id == kept.id)
            )
        ).all()
    )
    for reporter_id in sorted(people - already):
        session.add(
            CaseFollower(case_id=kept.id, reporter_id=reporter_id, at=now, merged_from_id=merged.id)
        )
    extra = [p for p in merged.photos if p not in kept.photos]
    if extra and len(kept.photos) < MAX_PHOTOS:
        kept.photos = [*kept.photos, *extra][:MAX_PHOTOS]
        session.add(kept)
    await session.flush()


# ---------------------------------------------------------------- the duplicate index


async def open_cases_after(session: AsyncSession, after_id: int = 0) -> list[tuple]:
    """(id, text, created_at, grid_code, latitude, longitude) of open cases with id > after_id:
    what classifier.similar.DuplicateFinder indexes."""
    return list(
        (
            await session.exec(
                select(
                    Case.id,
                    Case.text,
                    Case.created_at,
                    Case.grid_code,
                    Case.latitude,
                    Case.longitude,
                )
                .where(col(Case.id) > after_id, col(Case.status).in_(OPEN_STATUSES))
                .order_by(col(Case.id))
            )
        ).all()
    )


async def open_case_ids(session: AsyncSession) -> set[int]:
    """Every open case's id (read whole: an IN list of the index's ids would outgrow
    SQLite's limit on parameters)."""
    return set(
        (await session.exec(select(Case.id).where(col(Case.status).in_(OPEN_STATUSES)))).all()
    )


# ---------------------------------------------------------------- 回访 for followers


async def follower_chats(session: AsyncSession, case_id: int) -> list[int]:
    """The private chats of the case's followers who can be reached."""
    return list(
        (
            await session.exec(
                select(Reporter.telegram_id)
                .join(CaseFollower, col(CaseFollower.reporter_id) == col(Reporter.id))
                .where(CaseFollower.case_id == case_id, col(Reporter.reachable).is_(True))
                .order_by(col(CaseFollower.id))
            )
        ).all()
    )


async def rate(
    session: AsyncSession, case_id: int, telegram_id: int, rating: str, now: datetime
) -> Case:
    """A follower's 回访 answer, once; it is heard (the dashboard, /case) but the reporter's
    own answer decides whether the case closes or goes back to the department."""
    if rating not in RATINGS:
        raise InvalidInput("unknown_rating")
    row = (
        await session.exec(
            select(CaseFollower)
            .join(Reporter, col(Reporter.id) == col(CaseFollower.reporter_id))
            .where(CaseFollower.case_id == case_id, Reporter.telegram_id == telegram_id)
        )
    ).first()
    if row is None:
        raise InvalidInput("not_a_follower")
    if row.satisfaction is not None:
        raise InvalidInput("follower_already_rated")
    row.satisfaction, row.rated_at = rating, now
    session.add(row)
    await session.flush()
    return await session.get(Case, case_id)
