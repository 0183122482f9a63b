"""攻坚哨: hard cases handled by several departments together.

Triage or a leader marks a case 攻坚 (mark_hard): the lead department (牵头) keeps the case
and its own lifecycle; each co-department (协同) gets a CasePart with a lifecycle of its own
(models.lifecycle.PART_TRANSITIONS), run by part_transition() as cases.transition() runs the
case's: the same effects, deadlines and traffic-light rule. The case's 办结 waits for every
part (the lifecycle's PARTS_DONE guard) unless a leader waives the parts still open, with a
reason (waive_open_parts). Functions never commit (the caller's session_scope does).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import cases
from models.cases import Actor
from models.deadlines import Rules
from models.lifecycle import (
    LIT_STATUSES,
    PART_DONE_STATUSES,
    PART_TRANSITIONS,
    AlreadyDone,
    CaseNotFound,
    IllegalTransition,
    NotPermitted,
    StaleVersion,
    target_status,
)
from models.people import get_staff
from models.permissions import can_on_part
from models.reference import get_department
from models.tables import OPEN_STATUSES, SUBMITTED, TRIAGE, Case, CasePart
from models.validation import InvalidInput, clean_text

DECISION_MIN, DECISION_MAX = 4, 2000
_CAS_ATTEMPTS = 10


async def mark_hard(
    session: AsyncSession,
    case_id: int,
    *,
    lead: str,
    co_departments: Sequence[str],
    decision: str,
    actor: Actor,
    now: datetime,
    rules: Rules,
    expected_version: int | None = None,
) -> tuple[Case, list[CasePart]]:
    """列为攻坚哨: the lead department gets the case (dispatched to it if it waits in triage or
    another department has it), each co-department a part with deadlines from now, and the
    专题会议's decision is kept on the case. Everything is checked before anything is written.
    """
    decision = clean_text(
        decision, field="hard_decision", min_len=DECISION_MIN, max_len=DECISION_MAX
    )
    co = list(dict.fromkeys(co_departments))
    if not co:
        raise InvalidInput("hard_needs_co")
    if lead in co:
        raise InvalidInput("hard_lead_is_co")
    for code in (lead, *co):
        await cases.active_department(session, code)
    case = await cases.get_case(session, case_id)
    await cases.authorize(session, actor, "mark_hard", case)
    check_markable(case)
    if expected_version is not None and case.version != expected_version:
        raise StaleVersion("stale_version")
    # The lead takes the case by the lifecycle's own moves, authorised above as mark_hard (a
    # leader may share a case out without being allowed to dispatch ordinary ones).
    if case.status in (SUBMITTED, TRIAGE):
        case = await cases.transition(
            session, case.id, "dispatch", actor, now, rules=rules, department_code=lead
        )
    elif case.department_code != lead:
        case = await cases.transition(
            session, case.id, "redispatch", actor, now, rules=rules, department_code=lead
        )
    case = await cases.transition(
        session,
        case.id,
        "mark_hard",
        actor,
        now,
        rules=rules,
        is_hard=True,
        hard_decision=decision,
        hard_at=now,
        details={"lead": lead, "co": co, "decision": decision},
    )
    parts = []
    for code in co:
        sign_by, resolve_by = rules.deadlines(
            await get_department(session, code), case.priority, now
        )
        parts.append(
            CasePart(
                case_id=case.id,
                department_code=code,
                dispatched_at=now,
                sign_by=sign_by,
                resolve_by=resolve_by,
            )
        )
    session.add_all(parts)
    await session.flush()
    return case, parts


def check_markable(case: Case) -> None:
    """Raise the polite refusal unless the case can still become a 攻坚哨: not one already,
    and open (waiting in triage, or with a department)."""
    if case.is_hard:
        raise AlreadyDone("already_hard")
    if case.status not in (SUBMITTED, TRIAGE):
        target_status("mark_hard", case.status)


async def get_part(session: AsyncSession, part_id: int) -> CasePart:
    """The part (fresh from the database); raises CaseNotFound."""
    part = await session.get(CasePart, part_id, populate_existing=True)
    if part is None:
        raise CaseNotFound("part_not_found")
    return part


async def _permit(session: AsyncSession, actor: Actor, permission: str, part: CasePart) -> None:
    if actor.kind == "system":
        return
    staff = await get_staff(session, actor.telegram_id) if actor.kind == "staff" else None
    if not can_on_part(staff, permission, part):
        raise NotPermitted("not_permitted")


async def part_transition(
    session: AsyncSession,
    part_id: int,
    action: str,
    actor: Actor,
    now: datetime,
    *,
    rules: Rules,
    permission: str | None = None,
    expected_version: int | None = None,
    details: dict | None = None,
    **changes: Any,
) -> tuple[Case, CasePart]:
    """Move a part by `action` (PART_TRANSITIONS): the one function every part change goes
    through, a compare-and-set on the part's version like cases.transition(); the event goes
    into the case's trail. The case must still be open (not resolved, merged, refused)."""
    if action not in PART_TRANSITIONS:
        raise IllegalTransition("unknown_action", action=action)
    move = PART_TRANSITIONS[action]
    for _ in range(_CAS_ATTEMPTS):
        part = await get_part(session, part_id)
        to = target_status(action, part.status, PART_TRANSITIONS)
        case = await cases.get_case(session, part.case_id)
        if case.status not in OPEN_STATUSES:
            raise IllegalTransition("illegal_in_status", status=case.status)
        if permission:
            await _permit(session, actor, permission, part)
        if expected_version is not None and part.version != expected_version:
            raise StaleVersion("stale_version")
        values = await cases.effect_values(session, move, part, now, rules, changes)
        stmt = (
            update(CasePart)
            .where(col(CasePart.id) == part_id, col(CasePart.version) == part.version)
            .values(status=to, version=part.version + 1, **values)
            .returning(CasePart)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        updated = (await session.exec(stmt)).scalars().one_or_none()
        if updated is None:
            if expected_version is not None:
                raise StaleVersion("stale_version")
            continue  # another mover won: look again (AlreadyDone if it did the same)
        await cases.add_event(
            session,
            case.id,
            actor,
            move.event,
            now,
            details={
                "department": part.department_code,
                "part": part.id,
                "from": part.status,
                "to": to,
                **(details or {}),
            },
        )
        return case, updated
    raise IllegalTransition("busy")


async def sign_part(
    session: AsyncSession,
    part_id: int,
    actor: Actor,
    now: datetime,
    *,
    rules: Rules,
    expected_version: int | None = None,
) -> tuple[Case, CasePart]:
    """A co-department's 签收 of its part: its resolve deadline runs from here."""
    return await part_transition(
        session,
        part_id,
        "sign",
        actor,
        now,
        rules=rules,
        permission="sign",
        expected_version=expected_version,
    )


async def resolve_part(
    session: AsyncSession,
    part_id: int,
    actor: Actor,
    result: str,
    now: datetime,
    *,
    rules: Rules,
    expected_version: int | None = None,
) -> tuple[Case, CasePart]:
    """A co-department's 办结 of its part, with what it did."""
    result = clean_text(result, field="part_result", min_len=2, max_len=2000)
    return await part_transition(
        session,
        part_id,
        "resolve",
        actor,
        now,
        rules=rules,
        permission="resolve",
        expected_version=expected_version,
        result=result,
        details={"result": result},
    )


async def waive_open_parts(
    session: AsyncSession, case_id: int, actor: Actor, reason: str, now: datetime, *, rules: Rules
) -> tuple[Case, list[CasePart]]:
    """A leader's override: the case no longer waits for its open parts (each one waived with
    the reason), so the lead department can resolve it."""
    reason = clean_text(reason, field="override_reason", min_len=2, max_len=500)
    case = await cases.get_case(session, case_id)
    await cases.authorize(session, actor, "override_parts", case)
    if not case.is_hard:
        raise InvalidInput("not_hard", ref=case.ref)
    waiting = [
        p for p in await cases.parts_of(session, case_id) if p.status not in PART_DONE_STATUSES
    ]
    if not waiting:
        raise AlreadyDone("no_open_parts", ref=case.ref)
    waived = []
    for part in waiting:
        case, part = await part_transition(
            session,
            part.id,
            "waive",
            actor,
            now,
            rules=rules,
            result=reason,
            details={"reason": reason},
        )
        waived.append(part)
    return case, waived


async def open_hard_cases(
    session: AsyncSession, limit: int = 50
) -> list[tuple[Case, list[CasePart]]]:
    """Open 攻坚哨 with their parts, oldest first (few: a district has dozens a year)."""
    stmt = (
        select(Case)
        .where(col(Case.is_hard).is_(True), col(Case.status).in_(OPEN_STATUSES))
        .order_by(col(Case.hard_at), col(Case.id))
        .limit(limit)
    )
    found = list((await session.exec(stmt)).all())
    if not found:
        return []
    by_case: dict[int, list[CasePart]] = {c.id: [] for c in found}
    parts = await session.exec(
        select(CasePart).where(col(CasePart.case_id).in_(list(by_case))).order_by(col(CasePart.id))
    )
    for part in parts.all():
        by_case[part.case_id].append(part)
    return [(c, by_case[c.id]) for c in found]


async def lit_parts(session: AsyncSession) -> list[tuple[CasePart, Case]]:
    """Every part whose deadline runs (waiting to be signed or being handled), with its case.

    A plain scan, not the cases' indexed prefilter: parts exist only for 攻坚哨, a few dozen a
    year, so the follow-up engine reads them all on each pass.
    """
    stmt = (
        select(CasePart, Case)
        .join(Case, col(Case.id) == col(CasePart.case_id))
        .where(col(CasePart.status).in_(LIT_STATUSES), col(Case.status).in_(OPEN_STATUSES))
        .order_by(col(CasePart.id))
    )
    return [(part, case) for part, case in (await session.exec(stmt)).all()]
