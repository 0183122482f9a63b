"""Cases: creating them, the one transition function that runs the lifecycle table, the
convenience moves built on it, and reading cases and their audit trail.

Every status change goes through `transition()`: it checks the move against
models.lifecycle.TRANSITIONS, applies the move's effects (times, deadlines, reminders) with a
compare-and-set UPDATE on the case's version, and writes the CaseEvent in the same
transaction. Functions never commit; the caller's `models.engine.session_scope` does. Each
validates its input before writing anything, so a caller that catches a CaseError and carries
on never commits half an operation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, insert, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import followers, lifecycle
from models.deadlines import Rules
from models.lifecycle import (
    NOT_ACCEPTED_OTHER,
    NOT_ACCEPTED_REASONS,
    PART_DONE_STATUSES,
    TRANSITIONS,
    AlreadyDone,
    CaseNotFound,
    IllegalTransition,
    NotPermitted,
    StaleVersion,
    target_status,
)
from models.people import get_or_create_reporter, get_staff, reporter_by_telegram_id
from models.permissions import can, can_on_part
from models.reference import get_department
from models.statements import prebuilt
from models.tables import (
    BASIC,
    DISPATCHED,
    ENTERPRISE,
    NORMAL,
    RESIDENT,
    SATISFIED,
    TELEGRAM,
    UNRATED,
    UNSATISFIED,
    URGENT,
    Case,
    CaseCounter,
    CaseEvent,
    CasePart,
    Department,
    ExtensionRequest,
    Grid,
    LabelCorrection,
    Reporter,
    Staff,
)
from models.validation import InvalidInput, clean_text

PRIORITIES = (NORMAL, URGENT)
RATINGS = (SATISFIED, BASIC, UNSATISFIED)

# Columns `transition(**changes)` may not set: the lifecycle owns them.
_PROTECTED = frozenset({"id", "status", "version", "ref", "created_at", "reporter_id"})
_CASE_COLUMNS = frozenset(Case.__table__.columns.keys())
# Reminders already sent for a deadline are forgotten when the deadline moves.
_FRESH_ALERTS = {"yellow_notified_at": None, "red_notified_at": None, "escalated_at": None}
# A lost compare-and-set is retried (e.g. several progress notes at once); every loss means
# another mover committed, so this bounds how many concurrent movers one call outlasts.
_CAS_ATTEMPTS = 10


# ---------------------------------------------------------------- actors and rules


@dataclass(frozen=True)
class Actor:
    """Who does something: a reporter, a staff member (by Telegram id) or the system."""

    kind: str  # "reporter" | "staff" | "system"
    telegram_id: int | None = None
    SYSTEM: ClassVar[Actor]

    @classmethod
    def staff(cls, telegram_id: int) -> Actor:
        return cls("staff", telegram_id)

    @classmethod
    def reporter(cls, telegram_id: int) -> Actor:
        return cls("reporter", telegram_id)


Actor.SYSTEM = Actor("system")


def _jsonable(value: Any) -> Any:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else value


def _event_row(
    case_id: int,
    actor: Actor,
    action: str,
    now: datetime,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    details: dict | None = None,
) -> dict:
    return {
        "case_id": case_id,
        "at": now,
        "actor_kind": actor.kind,
        "actor_id": actor.telegram_id,
        "action": action,
        "from_status": from_status,
        "to_status": to_status,
        "details": details or {},
    }


_INSERT_EVENTS = insert(CaseEvent.__table__)


async def _add_events(session: AsyncSession, *rows: dict) -> None:
    """Append events with one plain INSERT: nobody needs them back as objects, and skipping
    the ORM flush saves a round trip per event inside the case's transaction."""
    await session.exec(_INSERT_EVENTS, params=list(rows))


async def add_event(
    session: AsyncSession,
    case_id: int,
    actor: Actor,
    action: str,
    now: datetime,
    *,
    details: dict | None = None,
) -> None:
    """Append one event to a case's trail that is not a move of the case's own lifecycle (e.g.
    a 攻坚哨 part's, models.parts)."""
    await _add_event(session, case_id, actor, action, now, details=details)


async def _add_event(
    session: AsyncSession,
    case_id: int,
    actor: Actor,
    action: str,
    now: datetime,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    details: dict | None = None,
) -> None:
    await _add_events(
        session,
        _event_row(
            case_id,
            actor,
            action,
            now,
            from_status=from_status,
            to_status=to_status,
            details=details,
        ),
    )


# ---------------------------------------------------------------- creating cases


async def _next_ref(session: AsyncSession, now: datetime, prefix: str, timezone: str) -> str:
    """WC-20261124-0007: the district-local day and that day's sequence number."""
    day = now.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone)).strftime("%Y%m%d")
    seq = (await session.exec(_count_case(session), params={"day": day, "last": 1})).scalar_one()
    return f"{prefix}-{day}-{seq:04d}"


@prebuilt
def _count_case(insert_):
    last = CaseCounter.__table__.c["last"]
    return (
        insert_(CaseCounter)
        .on_conflict_do_update(index_elements=["day"], set_={"last": last + 1})
        .returning(last)
    )


# ON CONFLICT DO NOTHING: of two concurrent creates with one key, the second waits for the
# first and then finds its case instead of failing.
@prebuilt
def _insert_case(insert_):
    return (
        insert_(Case)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(Case)
        .execution_options(populate_existing=True)
    )


async def _case_by_key(session: AsyncSession, key: str) -> Case | None:
    return (await session.exec(select(Case).where(Case.idempotency_key == key))).first()


async def create_case(
    session: AsyncSession,
    *,
    reporter_telegram_id: int,
    text: str,
    now: datetime,
    kind: str = RESIDENT,
    photos: Sequence[str] = (),
    latitude: float | None = None,
    longitude: float | None = None,
    address: str | None = None,
    out_of_area: bool = False,
    grid_code: str | None = None,
    located_by: str | None = None,
    out_of_grid: bool = False,
    suggestions: Sequence[tuple[str, float]] = (),
    model_version: str | None = None,
    idempotency_key: str | None = None,
    display_name: str = "",
    ref_prefix: str = "WC",
    timezone: str = "Asia/Shanghai",
    max_text_chars: int = 5000,
    origin: dict | None = None,
    channel: str | None = None,
) -> Case:
    """A new case in status "submitted" with events "created" and "classified".

    The same idempotency_key twice returns the first case, so a double-tapped 确认提交 or a
    redelivered update never makes two cases. `origin` sets where a case came from other than
    the bot (channel, api_client_id, external_id, caller: models/open311.py).
    """
    if idempotency_key and (existing := await _case_by_key(session, idempotency_key)):
        return existing
    text = clean_text(text, field="case_text", min_len=1, max_len=max_text_chars)
    if kind not in (RESIDENT, ENTERPRISE):
        raise InvalidInput("unknown_case_kind", kind=kind)
    if grid_code is not None and await session.get(Grid, grid_code) is None:
        raise InvalidInput("unknown_grid", grid=grid_code)
    ranked = sorted(((str(c), float(p)) for c, p in suggestions), key=lambda s: -s[1])
    reporter = await get_or_create_reporter(session, reporter_telegram_id, display_name, now=now)
    if kind == ENTERPRISE and reporter.enterprise_id is None:
        raise InvalidInput("enterprise_required")

    ref = await _next_ref(session, now, ref_prefix, timezone)
    draft = Case(
        ref=ref,
        idempotency_key=idempotency_key,
        kind=kind,
        reporter_id=reporter.id,
        enterprise_id=reporter.enterprise_id if kind == ENTERPRISE else None,
        text=text,
        photos=list(photos),
        latitude=latitude,
        longitude=longitude,
        address=(address or None) and address[:300],
        out_of_area=out_of_area,
        grid_code=grid_code,
        located_by=located_by if grid_code else None,
        out_of_grid=out_of_grid,
        suggested_department=ranked[0][0] if ranked else None,
        suggested_confidence=ranked[0][1] if ranked else None,
        suggestions=[list(s) for s in ranked],
        model_version=model_version,
        created_at=now,
        **{"channel": channel or TELEGRAM, **(origin or {})},
    )
    case = (
        (await session.exec(_insert_case(session), params=draft.model_dump(exclude={"id"})))
        .scalars()
        .one_or_none()
    )
    if case is None:
        return await _case_by_key(session, idempotency_key)

    events = [
        _event_row(
            case.id,
            Actor.reporter(reporter_telegram_id),
            "created",
            now,
            to_status=case.status,
            details={
                "ref": ref,
                "kind": kind,
                "photos": len(case.photos),
                "grid": case.grid_code,
                "located_by": case.located_by,
                "out_of_grid": case.out_of_grid,
                **({"channel": channel} if channel else {}),
            },
        )
    ]
    if ranked or model_version:
        events.append(
            _event_row(
                case.id,
                Actor.SYSTEM,
                "classified",
                now,
                details={"suggestions": case.suggestions, "model_version": model_version},
            )
        )
    await _add_events(session, *events)
    return case


# ---------------------------------------------------------------- the one transition function


async def _fresh_case(session: AsyncSession, case_id: int) -> Case:
    case = await session.get(Case, case_id, populate_existing=True)
    if case is None:
        raise CaseNotFound("case_not_found")
    return case


async def _permit(
    session: AsyncSession, actor: Actor, staff: Staff | None, permission: str, case: Case
) -> None:
    """Raise NotPermitted unless the actor may do `permission` to `case` (system always may)."""
    if actor.kind == "system":
        return
    if actor.kind == "staff" and await can(session, staff, permission, case):
        return
    raise NotPermitted("not_permitted")


async def authorize(session: AsyncSession, actor: Actor, permission: str, case: Case) -> None:
    """Raise NotPermitted unless the actor may do `permission` to `case` (models.permissions)."""
    await _authorize(session, actor, permission, case)


async def _authorize(session: AsyncSession, actor: Actor, permission: str, case: Case) -> None:
    staff = None
    if actor.kind == "staff" and actor.telegram_id is not None:
        staff = await get_staff(session, actor.telegram_id)
    await _permit(session, actor, staff, permission, case)


async def _case_and_staff(
    session: AsyncSession, case_id: int, actor: Actor, current: Case | None = None
) -> tuple[Case, Staff | None]:
    """The fresh case and the acting staff member (if any) in one round trip."""
    if actor.kind != "staff" or actor.telegram_id is None:
        if current is not None and current.id == case_id:
            return current, None
        return await _fresh_case(session, case_id), None
    stmt = (
        select(Case, Staff)
        .outerjoin(
            Staff, and_(col(Staff.telegram_id) == actor.telegram_id, col(Staff.active).is_(True))
        )
        .where(col(Case.id) == case_id)
        .execution_options(populate_existing=True)
    )
    row = (await session.exec(stmt)).first()
    if row is None:
        raise CaseNotFound("case_not_found")
    return row[0], row[1]


async def _start_deadlines(session, case, now, rules, values) -> dict:
    dept = await get_department(session, values.get("department_code", case.department_code))
    sign_by, resolve_by = rules.deadlines(dept, values.get("priority", case.priority), now)
    return {"dispatched_at": now, "signed_at": None, "sign_by": sign_by, "resolve_by": resolve_by}


async def _recount_deadlines(session, case, now, rules, values) -> dict:
    if case.dispatched_at is None:
        return {}  # not dispatched yet: the priority counts from the dispatch
    dept = await get_department(session, case.department_code)
    sign_by, resolve_by = rules.deadlines(dept, values["priority"], case.dispatched_at)
    recounted = {"resolve_by": resolve_by, **_FRESH_ALERTS}
    if case.status == DISPATCHED:
        recounted["sign_by"] = sign_by
    return recounted


def _fixed(columns: dict) -> Callable:
    async def effect(session, case, now, rules, values) -> dict:
        return {k: (now if v is _NOW else v) for k, v in columns.items()}

    return effect


async def _start_grid_deadlines(session, case, now, rules, values) -> dict:
    sign_by, resolve_by = rules.grid_deadlines(now)
    return {"dispatched_at": now, "signed_at": None, "sign_by": sign_by, "resolve_by": resolve_by}


async def _start_verify(session, case, now, rules, values) -> dict:
    return {"verify_by": rules.verify_deadline(now)}


async def _count_reopen(session, case, now, rules, values) -> dict:
    return {"reopen_count": case.reopen_count + 1}


_NOW = object()  # stands for the transition's time in a _fixed effect
# What each effect named in models.lifecycle.TRANSITIONS sets: column values computed from
# (session, case, now, rules, values so far).
_EFFECTS: dict[str, Callable] = {
    lifecycle.START_DEADLINES: _start_deadlines,
    lifecycle.RECOUNT_DEADLINES: _recount_deadlines,
    lifecycle.CLEAR_DEADLINES: _fixed(
        {
            "department_code": None,
            "dispatched_at": None,
            "signed_at": None,
            "sign_by": None,
            "resolve_by": None,
        }
    ),
    lifecycle.FRESH_ALERTS: _fixed(_FRESH_ALERTS),
    lifecycle.STAMP_SIGNED: _fixed({"signed_at": _NOW}),
    lifecycle.STAMP_RESOLVED: _fixed({"resolved_at": _NOW}),
    lifecycle.STAMP_CLOSED: _fixed({"closed_at": _NOW}),
    lifecycle.RESET_OUTCOME: _fixed(
        {
            "resolved_at": None,
            "closed_at": None,
            "resolved_level": None,
            "survey_sent_at": None,
            "survey_reminded_at": None,
        }
    ),
    lifecycle.COUNT_REOPEN: _count_reopen,
    lifecycle.START_GRID_DEADLINES: _start_grid_deadlines,
    lifecycle.STAMP_WHISTLED: _fixed({"whistled_at": _NOW}),
    lifecycle.START_VERIFY: _start_verify,
}


async def effect_values(
    session: AsyncSession,
    move: lifecycle.Transition,
    subject: Any,
    now: datetime,
    rules: Rules,
    changes: dict,
) -> dict:
    """Column values a move sets besides status and version: the caller's changes, then each
    effect the lifecycle table lists for it. `subject` is the Case (or a 攻坚哨 CasePart,
    whose times and alert columns have the case's names)."""
    values = dict(changes)
    for effect in move.effects:
        values.update(await _EFFECTS[effect](session, subject, now, rules, values))
    return values


async def _parts_done(session: AsyncSession, case: Case) -> None:
    """攻坚哨: the lead resolves the whole case only when every co-department's part is done."""
    if not case.is_hard:
        return
    waiting = await open_parts(session, case.id)
    if waiting:
        raise IllegalTransition(
            "parts_open", departments="、".join(name for name, _status in waiting)
        )


# What each guard named in models.lifecycle.TRANSITIONS checks (raising a CaseError).
_GUARDS: dict[str, Callable] = {lifecycle.PARTS_DONE: _parts_done}


async def check_guards(session: AsyncSession, action: str, case: Case) -> None:
    """Raise the CaseError of the first guard of `action` that `case` does not pass."""
    for guard in TRANSITIONS[action].guards:
        await _GUARDS[guard](session, case)


def _auto_details(case: Case, values: dict) -> dict:
    """What the audit trail records of a change without being told: department and deadlines."""
    details = {}
    if "department_code" in values and values["department_code"] != case.department_code:
        details["department"] = values["department_code"]
        if case.department_code:
            details["from_department"] = case.department_code
    for key in ("priority", "sign_by", "resolve_by"):
        if key in values and values[key] is not None and values[key] != getattr(case, key):
            details[key] = _jsonable(values[key])
    return details


async def transition(
    session: AsyncSession,
    case_id: int,
    action: str,
    actor: Actor,
    now: datetime,
    *,
    rules: Rules,
    details: dict | None = None,
    expected_version: int | None = None,
    permission: str | None = None,
    current: Case | None = None,
    **changes: Any,
) -> Case:
    """Move a case by `action`; the one function every status change goes through.

    Checks TRANSITIONS (IllegalTransition / AlreadyDone), optionally the actor's permission and
    the version the caller saw (StaleVersion), then sets status, times and deadlines with
    UPDATE ... WHERE version = seen, so of two concurrent movers only one wins; the loser
    re-reads and gets AlreadyDone ("已被签收") or tries again if the move is still allowed.
    `current` is the case as this transaction last wrote it (saves re-reading it when a
    system move follows at once, e.g. dispatch right after create_case).
    """
    if action not in TRANSITIONS:
        raise IllegalTransition("unknown_action", action=action)
    unknown = set(changes) - _CASE_COLUMNS
    if unknown or set(changes) & _PROTECTED:
        raise ValueError(f"transition() cannot set {sorted(set(changes) & _PROTECTED | unknown)}")
    for _ in range(_CAS_ATTEMPTS):
        case, staff = await _case_and_staff(session, case_id, actor, current)
        current = None  # a retry must read the row again
        to = target_status(action, case.status)
        if permission:
            await _permit(session, actor, staff, permission, case)
        if expected_version is not None and case.version != expected_version:
            raise StaleVersion("stale_version")
        await check_guards(session, action, case)
        values = await effect_values(session, TRANSITIONS[action], case, now, rules, changes)
        event_details = {**_auto_details(case, values), **(details or {})}
        from_status, seen_version = case.status, case.version
        stmt = (
            update(Case)
            .where(col(Case.id) == case_id, col(Case.version) == seen_version)
            .values(status=to, version=seen_version + 1, **values)
            .returning(Case)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        updated = (await session.exec(stmt)).scalars().one_or_none()
        if updated is None:
            if expected_version is not None:
                raise StaleVersion("stale_version")
            continue  # someone else moved the case first: look again
        await _add_event(
            session,
            case_id,
            actor,
            TRANSITIONS[action].event,
            now,
            from_status=from_status,
            to_status=to,
            details=event_details,
        )
        return updated
    raise IllegalTransition("busy")


# ---------------------------------------------------------------- convenience moves


async def active_department(session: AsyncSession, code: str) -> Department:
    """The department, or InvalidInput when it is unknown or no longer active."""
    dept = await get_department(session, code)
    if dept is None or not dept.active:
        raise InvalidInput("department_inactive", department=code)
    return dept


def _check_priority(priority: str) -> str:
    if priority not in PRIORITIES:
        raise InvalidInput("unknown_priority")
    return priority


async def _record_label(
    session: AsyncSession,
    case: Case,
    label: str,
    actor: Actor,
    now: datetime,
    *,
    previous: str | None,
) -> None:
    """Audit a staff choice of department; one that differs from the model's is training data."""
    if actor.kind != "staff":
        return
    if label == previous:
        await _add_event(session, case.id, actor, "confirmed", now, details={"department": label})
        return
    await _add_event(
        session, case.id, actor, "relabelled", now, details={"from": previous, "to": label}
    )
    if label != case.suggested_department:
        session.add(
            LabelCorrection(
                case_id=case.id,
                text=case.text,
                suggested_label=case.suggested_department,
                corrected_label=label,
                staff_telegram_id=actor.telegram_id,
                model_version=case.model_version,
                at=now,
            )
        )
        await session.flush()


async def send_to_triage(
    session: AsyncSession, case_id: int, now: datetime, *, rules: Rules, current: Case | None = None
) -> Case:
    """Low confidence: the case waits for a person in triage (分拨)."""
    return await transition(
        session, case_id, "to_triage", Actor.SYSTEM, now, rules=rules, current=current
    )


async def dispatch(
    session: AsyncSession,
    case_id: int,
    department_code: str,
    actor: Actor,
    now: datetime,
    *,
    rules: Rules,
    priority: str | None = None,
    expected_version: int | None = None,
    current: Case | None = None,
) -> Case:
    """派单 from submitted/triage: sets the department, dispatched_at, sign_by and resolve_by."""
    await active_department(session, department_code)
    changes: dict[str, Any] = {"department_code": department_code}
    if priority is not None:
        changes["priority"] = _check_priority(priority)
    case = await transition(
        session,
        case_id,
        "dispatch",
        actor,
        now,
        rules=rules,
        permission="dispatch",
        expected_version=expected_version,
        current=current,
        **changes,
    )
    await _record_label(
        session, case, department_code, actor, now, previous=case.suggested_department
    )
    return case


async def redispatch(
    session: AsyncSession,
    case_id: int,
    department_code: str,
    actor: Actor,
    now: datetime,
    *,
    rules: Rules,
    expected_version: int | None = None,
) -> Case:
    """重新分派 by triage of a dispatched or signed case to another department."""
    await active_department(session, department_code)
    previous = (await get_case(session, case_id)).department_code
    if previous == department_code:
        raise InvalidInput("same_department")
    case = await transition(
        session,
        case_id,
        "redispatch",
        actor,
        now,
        rules=rules,
        permission="redispatch",
        expected_version=expected_version,
        department_code=department_code,
    )
    await _record_label(session, case, department_code, actor, now, previous=previous)
    return case


async def sign_for(
    session: AsyncSession,
    case_id: int,
    actor: Actor,
    now: datetime,
    *,
    rules: Rules,
    expected_version: int | None = None,
) -> Case:
    """签收 by staff of the case's department; a second signer gets AlreadyDone."""
    return await transition(
        session,
        case_id,
        "sign",
        actor,
        now,
        rules=rules,
        permission="sign",
        expected_version=expected_version,
    )


async def return_case(
    session: AsyncSession,
    case_id: int,
    actor: Actor,
    reason: str,
    now: datetime,
    *,
    rules: Rules,
    expected_version: int | None = None,
) -> Case:
    """退回: not this department's business; the case goes back to triage with the reason."""
    reason = clean_text(reason, field="return_reason", min_len=2, max_len=500)
    return await transition(
        session,
        case_id,
        "return",
        actor,
        now,
        rules=rules,
        permission="return",
        expected_version=expected_version,
        details={"reason": reason},
    )


async def add_progress_note(
    session: AsyncSession, case_id: int, actor: Actor, note: str, now: datetime, *, rules: Rules
) -> Case:
    note = clean_text(note, field="progress_note", min_len=1, max_len=1000)
    return await transition(
        session,
        case_id,
        "progress_note",
        actor,
        now,
        rules=rules,
        permission="progress_note",
        details={"note": note},
    )


async def resolve(
    session: AsyncSession,
    case_id: int,
    actor: Actor,
    result: str,
    now: datetime,
    *,
    rules: Rules,
    photo: str | None = None,
    expected_version: int | None = None,
    verify_grid: str | None = None,
) -> Case:
    """办结 with the result told to the reporter (and an optional photo file id); with
    `verify_grid` the grid's staff verify it first (核查, models/gridwork.py)."""
    result = clean_text(result, field="resolution", min_len=2, max_len=2000)
    if verify_grid is not None:
        return await transition(
            session,
            case_id,
            "to_verify",
            actor,
            now,
            rules=rules,
            permission="resolve",
            expected_version=expected_version,
            resolution=result,
            resolution_photo=photo,
            handling_grid_code=verify_grid,
            details=resolution_details(result, photo, grid=verify_grid),
        )
    return await transition(
        session,
        case_id,
        "resolve",
        actor,
        now,
        rules=rules,
        permission="resolve",
        expected_version=expected_version,
        resolution=result,
        resolution_photo=photo,
        resolved_level=lifecycle.DEPARTMENT_LEVEL,
        details=resolution_details(result, photo),
    )


def resolution_details(result: str, photo: str | None, **more: object) -> dict:
    """What a 办结 event records, wherever the case was resolved (department, grid, street):
    each 办结's photo stays in /case after a reopening."""
    return {
        "result": result,
        "photo": bool(photo),
        **more,
        **({"photo_file": photo} if photo else {}),
    }


async def request_extension(
    session: AsyncSession,
    case_id: int,
    actor: Actor,
    reason: str,
    new_resolve_by: datetime,
    now: datetime,
) -> ExtensionRequest:
    """申请延期 by the department; triage approves or rejects it with decide_extension."""
    reason = clean_text(reason, field="extension_reason", min_len=2, max_len=500)
    case = await get_case(session, case_id)
    if case.status not in TRANSITIONS["extend"].from_statuses:
        raise IllegalTransition("extension_not_open")
    await _authorize(session, actor, "request_extension", case)
    if case.resolve_by is not None and new_resolve_by <= case.resolve_by:
        raise InvalidInput("extension_not_later")
    pending = await session.exec(
        select(ExtensionRequest).where(
            ExtensionRequest.case_id == case_id, ExtensionRequest.status == "pending"
        )
    )
    if pending.first() is not None:
        raise AlreadyDone("extension_pending")
    request = ExtensionRequest(
        case_id=case_id,
        requested_by=actor.telegram_id or 0,
        reason=reason,
        new_resolve_by=new_resolve_by,
        created_at=now,
    )
    session.add(request)
    await session.flush()
    await _add_event(
        session,
        case_id,
        actor,
        "extension_requested",
        now,
        details={
            "request_id": request.id,
            "reason": reason,
            "new_resolve_by": _jsonable(new_resolve_by),
        },
    )
    return request


async def decide_extension(
    session: AsyncSession,
    request_id: int,
    actor: Actor,
    approve: bool,
    now: datetime,
    *,
    rules: Rules,
) -> Case:
    """Approve (resolve_by moves, reminders start afresh) or reject a pending extension."""
    request = await session.get(ExtensionRequest, request_id, populate_existing=True)
    if request is None:
        raise CaseNotFound("extension_not_found")
    case = await get_case(session, request.case_id)
    await _authorize(session, actor, "decide_extension", case)
    if request.status != "pending":
        raise AlreadyDone("extension_decided")
    if approve:
        target_status("extend", case.status)  # refuse before writing anything
    # Compare-and-set on the request first: of two triage staff deciding at once, only one
    # gets past here, so a request is never applied twice.
    decided = await session.exec(
        update(ExtensionRequest)
        .where(col(ExtensionRequest.id) == request_id, col(ExtensionRequest.status) == "pending")
        .values(
            status="approved" if approve else "rejected",
            decided_by=actor.telegram_id,
            decided_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if decided.rowcount != 1:
        raise AlreadyDone("extension_decided")
    if approve:
        case = await transition(
            session,
            case.id,
            "extend",
            actor,
            now,
            rules=rules,
            permission="decide_extension",
            resolve_by=request.new_resolve_by,
            details={
                "request_id": request.id,
                "reason": request.reason,
                "old_resolve_by": _jsonable(case.resolve_by),
            },
        )
    else:
        await _add_event(
            session, case.id, actor, "extension_rejected", now, details={"request_id": request.id}
        )
    await session.refresh(request)
    return case


async def set_priority(
    session: AsyncSession,
    case_id: int,
    priority: str,
    actor: Actor,
    now: datetime,
    *,
    rules: Rules,
    expected_version: int | None = None,
) -> Case:
    """Change priority; a dispatched case's deadlines are recounted from its dispatch."""
    _check_priority(priority)
    return await transition(
        session,
        case_id,
        "set_priority",
        actor,
        now,
        rules=rules,
        permission="set_priority",
        expected_version=expected_version,
        priority=priority,
    )


async def _require_reporter(session: AsyncSession, actor: Actor, case: Case) -> None:
    reporter = await session.get(Reporter, case.reporter_id)
    if actor.kind != "reporter" or reporter is None or reporter.telegram_id != actor.telegram_id:
        raise NotPermitted("rate_reporter_only")


async def rate(
    session: AsyncSession,
    case_id: int,
    actor: Actor,
    rating: str,
    comment: str | None,
    now: datetime,
    *,
    rules: Rules,
    expected_version: int | None = None,
) -> Case:
    """回访 answer by the reporter: satisfied/basic close the case, unsatisfied reopens it."""
    if rating not in RATINGS:
        raise InvalidInput("unknown_rating")
    comment = (comment or "").strip()[:1000] or None
    case = await get_case(session, case_id)
    await _require_reporter(session, actor, case)
    case = await transition(
        session,
        case_id,
        "rate",
        actor,
        now,
        rules=rules,
        expected_version=expected_version,
        satisfaction=rating,
        satisfaction_comment=comment,
        details={"rating": rating, "comment": comment},
    )
    if rating == UNSATISFIED:
        back_to_grid = (
            case.resolved_level in lifecycle.RESOLVED_IN_GRID
            and case.handling_grid_code is not None
        )
        return await transition(
            session,
            case_id,
            "reopen_grid" if back_to_grid else "reopen",
            actor,
            now,
            rules=rules,
            details={"comment": comment},
        )
    return await transition(session, case_id, "close", actor, now, rules=rules)


async def close_unrated(
    session: AsyncSession, case_id: int, now: datetime, *, rules: Rules
) -> Case:
    """No answer to 回访 in time: closed as 未评价."""
    return await transition(
        session,
        case_id,
        "close",
        Actor.SYSTEM,
        now,
        rules=rules,
        satisfaction=UNRATED,
        details={"rating": UNRATED},
    )


async def merge(
    session: AsyncSession,
    case_id: int,
    into_case_id: int,
    actor: Actor,
    now: datetime,
    *,
    rules: Rules,
    expected_version: int | None = None,
) -> Case:
    """合并 a duplicate into another open case, which carries on for both."""
    if case_id == into_case_id:
        raise InvalidInput("merge_into_itself")
    target = await get_case(session, into_case_id)
    if target.status not in TRANSITIONS["merge"].from_statuses:
        # The target is what the caller chose (e.g. a typed reference): a bad input.
        raise InvalidInput("merge_target_closed", ref=target.ref, status=target.status)
    merged = await transition(
        session,
        case_id,
        "merge",
        actor,
        now,
        rules=rules,
        permission="merge",
        expected_version=expected_version,
        merged_into_id=into_case_id,
        details={"into": target.ref},
    )
    await followers.absorb(session, merged, target, now)  # its people follow the kept case
    return merged


async def not_accept(
    session: AsyncSession,
    case_id: int,
    actor: Actor,
    now: datetime,
    *,
    rules: Rules,
    category: str,
    note: str | None = None,
    expected_version: int | None = None,
) -> Case:
    """不予受理 by triage: the case ends with the reason the reporter is told.

    `category` is a key of NOT_ACCEPTED_REASONS; "other" needs the reason in `note`. The event
    keeps both: details["reason"] is the words shown to people, details["category"] the key.
    """
    if category not in NOT_ACCEPTED_REASONS:
        raise InvalidInput("unknown_not_accepted_reason")
    if category == NOT_ACCEPTED_OTHER or note:
        reason = clean_text(note, field="not_accepted_reason", min_len=2, max_len=500)
    else:
        reason = NOT_ACCEPTED_REASONS[category]
    return await transition(
        session,
        case_id,
        "not_accept",
        actor,
        now,
        rules=rules,
        permission="not_accept",
        expected_version=expected_version,
        details={"category": category, "reason": reason},
    )


# ---------------------------------------------------------------- reading


async def open_parts(session: AsyncSession, case_id: int) -> list[tuple[str, str]]:
    """(department name, status) of the 攻坚哨 parts of a case that are not done yet."""
    stmt = (
        select(Department.name, CasePart.status)
        .join(Department, col(Department.code) == col(CasePart.department_code))
        .where(col(CasePart.case_id) == case_id, col(CasePart.status).not_in(PART_DONE_STATUSES))
        .order_by(col(CasePart.id))
    )
    return [(name, status) for name, status in (await session.exec(stmt)).all()]


async def get_case(session: AsyncSession, case_id: int) -> Case:
    """The case (fresh from the database); raises CaseNotFound."""
    return await _fresh_case(session, case_id)


def normalize_ref(ref: str) -> str:
    return (ref or "").strip().upper()


async def get_case_by_ref(session: AsyncSession, ref: str) -> Case | None:
    result = await session.exec(select(Case).where(Case.ref == normalize_ref(ref)))
    return result.first()


async def case_for_viewer(session: AsyncSession, ref: str, viewer_telegram_id: int) -> Case | None:
    """The case only if the viewer reported it (or is linked to its enterprise) or is staff
    allowed to view it (models.permissions); otherwise None, as if it did not exist."""
    case = await get_case_by_ref(session, ref)
    if case is None:
        return None
    viewer = await reporter_by_telegram_id(session, viewer_telegram_id)
    if viewer is not None and (
        viewer.id == case.reporter_id
        or (case.enterprise_id is not None and viewer.enterprise_id == case.enterprise_id)
    ):
        return case
    staff = await get_staff(session, viewer_telegram_id)
    if await can(session, staff, "view", case):
        return case
    if (
        case.is_hard
        and staff is not None
        and staff.department_code
        and any(can_on_part(staff, "view", part) for part in await parts_of(session, case.id))
    ):
        return case  # a 攻坚哨's co-department sees the case it has a part of
    return None


async def parts_of(session: AsyncSession, case_id: int) -> list[CasePart]:
    """The 攻坚哨 parts of a case, in the order they were made."""
    stmt = select(CasePart).where(col(CasePart.case_id) == case_id).order_by(col(CasePart.id))
    return list((await session.exec(stmt)).all())


async def cases_of_reporter(
    session: AsyncSession, telegram_id: int, limit: int = 10, kind: str | None = None
) -> list[Case]:
    """The reporter's own cases, newest first."""
    stmt = (
        select(Case)
        .join(Reporter, col(Reporter.id) == col(Case.reporter_id))
        .where(Reporter.telegram_id == telegram_id)
    )
    if kind is not None:
        stmt = stmt.where(Case.kind == kind)
    stmt = stmt.order_by(col(Case.created_at).desc(), col(Case.id).desc()).limit(limit)
    return list((await session.exec(stmt)).all())


async def case_events(session: AsyncSession, case_id: int) -> list[CaseEvent]:
    """The audit trail, oldest first."""
    stmt = (
        select(CaseEvent)
        .where(CaseEvent.case_id == case_id)
        .order_by(col(CaseEvent.at), col(CaseEvent.id))
    )
    return list((await session.exec(stmt)).all())


async def corrections_for_training(session: AsyncSession) -> list[tuple[str, str]]:
    """(text, corrected label) per corrected case, the latest correction winning."""
    stmt = select(
        LabelCorrection.case_id, LabelCorrection.text, LabelCorrection.corrected_label
    ).order_by(col(LabelCorrection.id))
    latest: dict[int, tuple[str, str]] = {}
    for case_id, text, label in (await session.exec(stmt)).all():
        latest[case_id] = (text, label)
    return list(latest.values())


async def count_cases(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(Case))).one()
