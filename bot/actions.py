"""The action service: what happens in the store when staff (and reporters) act.

Each function is one short transaction: it checks who is acting, changes the case through
models.cases, and enqueues the pushes the change causes (models.outbox) — the triage and
department group posts and the reporter's progress notices — so a change and its pushes are
committed together or not at all. Handlers call these and then kick the outbox sender.

Every push and its outbox key is built by bot/notices.py (one key per change and chat), so a
retried transaction or a redelivered update never queues a push twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import callbacks as cb
from bot import duplicates, notices, posts, texts
from bot.common import department_name, local_time
from bot.services import Services
from models import cases, drafts, gridwork, locating, outbox, parts, people, reference
from models import followup as fq
from models.cases import Actor
from models.lifecycle import CaseError, CaseNotFound, NotPermitted, StaleVersion
from models.permissions import DEPARTMENT_ACTIONS, GRID_ROLES, can, can_on_part
from models.tables import (
    GRID_REPORT,
    SUBMITTED,
    TRIAGE,
    URGENT,
    Case,
    CasePart,
    ExtensionRequest,
    Grid,
    Staff,
)
from models.validation import InvalidInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportDraft:
    """What a reporter filled in, ready to become a case."""

    nonce: int  # identifies the draft: the same draft submitted twice is one case
    text: str
    kind: str = "resident"
    photos: list[str] = field(default_factory=list)
    latitude: float | None = None
    longitude: float | None = None
    address: str | None = None
    out_of_area: bool = False
    # A case from another system (Open311): its Case columns and idempotency key.
    origin: dict = field(default_factory=dict)
    idempotency_key: str | None = None
    # A department the sender chose itself (an Open311 service_code): routed as if the
    # classifier were sure of it.
    department: str | None = None


@dataclass(frozen=True)
class Acted:
    """The result of a staff action: the case as it is now, who acted, and its enterprise;
    for a 攻坚哨 the part acted on (its post is redrawn) and the case's parts."""

    case: Case
    staff: Staff
    enterprise: str | None = None
    part: CasePart | None = None
    parts: tuple[CasePart, ...] = ()


# ---------------------------------------------------------------- pushes


async def _enterprise_name(session: AsyncSession, case: Case) -> str | None:
    enterprise = await drafts.enterprise_of_case(session, case)
    return enterprise.name if enterprise else None


def _triage_chat(services: Services) -> int | None:
    chat = services.settings.telegram.triage_chat_id
    return int(chat) if chat else None


async def _department_chat(session: AsyncSession, code: str | None) -> int | None:
    dept = await reference.get_department(session, code) if code else None
    return dept.chat_id if dept else None


async def _queue(session: AsyncSession, *rows: dict | None) -> None:
    """Queue the pushes of one change with one statement."""
    await outbox.enqueue_many(session, [row for row in rows if row is not None])


async def _push(
    session: AsyncSession,
    case: Case,
    event: str,
    chat_id: int | None,
    text: str,
    kind: str,
    now: datetime,
    *,
    markup=None,
    photo: str | None = None,
) -> None:
    await _queue(
        session, notices.push_row(case, event, chat_id, text, kind, now, markup=markup, photo=photo)
    )


def _triage_post(
    services: Services,
    case: Case,
    now: datetime,
    *,
    enterprise: str | None,
    headline: str | None = None,
    auto_dispatched: bool = False,
) -> dict | None:
    text = posts.triage_text(
        case, services, enterprise=enterprise, headline=headline, auto_dispatched=auto_dispatched
    )
    return notices.push_row(
        case,
        "triage",
        _triage_chat(services),
        text,
        "triage",
        now,
        markup=posts.triage_keyboard(case, services),
        photo=case.photos[0] if case.photos else None,
    )


async def _department_post(
    session: AsyncSession,
    services: Services,
    case: Case,
    now: datetime,
    *,
    enterprise: str | None,
    case_parts: Sequence[CasePart] = (),
) -> dict | None:
    text = posts.department_text(case, services, enterprise=enterprise, parts=case_parts)
    return notices.push_row(
        case,
        "dispatched",
        await _department_chat(session, case.department_code),
        text,
        "department",
        now,
        markup=posts.department_keyboard(case),
        photo=case.photos[0] if case.photos else None,
    )


# ---------------------------------------------------------------- intake


def suggest(services: Services, text: str):
    """The classifier's suggestion for a text (about a millisecond)."""
    return services.suggester.suggest(text)


async def submit_report(
    services: Services,
    *,
    telegram_id: int,
    display_name: str,
    draft: ReportDraft,
    confirmation: Callable[[Case, datetime], dict] | None = None,
) -> tuple[Case, bool]:
    """Store a report and route it in one transaction; returns (case, newly stored).

    Confident enough → dispatched at once (the triage group still sees it, with 重新分派);
    otherwise → triage. Submitting the same draft again returns the first case unchanged.
    `confirmation(case, now)`: the outbox row telling the reporter the reference, queued in
    the same transaction so that it arrives whatever happens after the commit.
    """
    suggestion = suggest(services, draft.text)
    now = services.clock()
    settings = services.settings
    async with services.session() as session:
        where = await locating.locate_new_case(
            session,
            services.gridmap,
            telegram_id=telegram_id,
            latitude=draft.latitude,
            longitude=draft.longitude,
            text=draft.text,
            address=draft.address,
        )
        case = await cases.create_case(
            session,
            reporter_telegram_id=telegram_id,
            text=draft.text,
            now=now,
            kind=draft.kind,
            photos=draft.photos,
            latitude=draft.latitude,
            longitude=draft.longitude,
            address=draft.address,
            out_of_area=draft.out_of_area,
            grid_code=where.grid_code,
            located_by=where.located_by,
            out_of_grid=where.out_of_grid,
            suggestions=list(suggestion.top),
            model_version=suggestion.model_version,
            idempotency_key=draft.idempotency_key or drafts.draft_key(telegram_id, draft.nonce),
            display_name=display_name,
            origin=draft.origin or None,
            ref_prefix=settings.district.case_prefix,
            timezone=settings.district.timezone,
            max_text_chars=settings.conversation.max_text_chars,
        )
        if case.status != SUBMITTED:
            return case, False  # this draft was submitted and routed before
        if confirmation is not None:
            await _queue(session, confirmation(case, now))
        case = await _route_new_case(session, services, case, suggestion, draft, telegram_id, now)
        await duplicates.queue_hint(session, services, case)
    duplicates.note_new_case(services, case)
    return case, True


async def _route_new_case(
    session: AsyncSession,
    services: Services,
    case: Case,
    suggestion,
    draft: ReportDraft,
    telegram_id: int,
    now: datetime,
) -> Case:
    """A case just stored goes to its grid, its department or triage, with its posts."""
    enterprise = await _enterprise_name(session, case)
    # A location outside the district, or outside every grid, is for a person to judge
    # (不属于本区职责? which grid?), however sure the classifier is of the department.
    in_grid = await _start_in_grid(session, services, case, suggestion, now)
    if in_grid is not None:
        return in_grid
    auto = suggestion.auto_dispatch and not (case.out_of_area or case.out_of_grid)
    target = draft.department or (suggestion.label if auto else None)
    dept = await reference.get_department(session, target) if target else None
    if dept is not None and dept.active:
        case = await cases.dispatch(
            session, case.id, dept.code, Actor.SYSTEM, now, rules=services.rules, current=case
        )
        await _queue(
            session,
            await _department_post(session, services, case, now, enterprise=enterprise),
            None
            if draft.origin
            else await notices.reporter_notice(
                session,
                services,
                case,
                notices.DISPATCHED,
                now,
                chat_id=telegram_id,
                new_case=True,
            ),
            _triage_post(services, case, now, enterprise=enterprise, auto_dispatched=True),
        )
    else:
        case = await cases.send_to_triage(session, case.id, now, rules=services.rules, current=case)
        await _queue(session, _triage_post(services, case, now, enterprise=enterprise))
    return case


def _grid_first(services: Services, case: Case, suggestion) -> bool:
    """[routing] grid_first: a confident kind of case that starts with its grid's staff."""
    return (
        suggestion.confident
        and suggestion.label in services.settings.routing.grid_first
        and case.grid_code is not None
        and not (case.out_of_area or case.out_of_grid)
    )


async def _start_in_grid(
    session: AsyncSession, services: Services, case: Case, suggestion, now: datetime
) -> Case | None:
    """小事不出网格: hand a grid matter to its grid's staff at intake; the case as it is then
    (None: nobody there, or not a grid matter; it is routed as any other case)."""
    if not _grid_first(services, case, suggestion):
        return None
    try:
        moved, handler = await gridwork.to_grid(
            session, case.id, Actor.SYSTEM, now, rules=services.rules, current=case
        )
    except CaseError:
        return None  # no grid staff up to the street: triage or the department decides
    enterprise = await _enterprise_name(session, moved)
    headline = texts.POST_GRID_FIRST.format(grid=_grid_name(services, handler.grid_code))
    reporter = await fq.reporter_chat(session, moved)
    await _queue(
        session,
        *_grid_posts(services, moved, "to_grid", handler.staff, now, enterprise=enterprise),
        await notices.reporter_notice(
            session,
            services,
            moved,
            "to_grid",
            now,
            chat_id=reporter,
            new_case=True,
            details={"grid": handler.grid_code},
        ),
        _triage_post(services, moved, now, enterprise=enterprise, headline=headline),
    )
    return moved


# ---------------------------------------------------------------- staff buttons


def permission_for(verb: str, case: Case) -> str:
    """The models.permissions action a button verb needs on this case."""
    if verb in (cb.CONFIRM, cb.PICK, cb.BACK, cb.TO):
        return "dispatch" if case.status in (SUBMITTED, TRIAGE) else "redispatch"
    if verb in cb.HARD_VERBS:
        return "mark_hard"
    return {
        cb.PART_SIGN: "sign",
        cb.PART_RESOLVE: "resolve",
        cb.URGENT: "set_priority",
        cb.GRID: "set_grid",
        cb.SET_GRID: "set_grid",
        cb.TO_GRID: "to_grid",
        cb.GRID_SIGN: "grid_sign",
        cb.GRID_RESOLVE: "grid_resolve",
        cb.WHISTLE: "whistle",
        cb.WHISTLE_TO: "whistle",
        cb.GRID_BACK: "view",
        cb.VERIFY_OK: "verify",
        cb.VERIFY_FAIL: "verify",
        cb.NOT_ACCEPT: "not_accept",
        cb.NOT_ACCEPT_AS: "not_accept",
        cb.NOT_ACCEPT_OTHER: "not_accept",
        cb.DUPLICATE: "merge",
        cb.MERGE: "merge",
        cb.SIGN: "sign",
        cb.RETURN: "return",
        cb.RESOLVE: "resolve",
        cb.EXTEND: "request_extension",
        cb.APPROVE_EXT: "decide_extension",
        cb.REJECT_EXT: "decide_extension",
    }[verb]


async def _authorize(
    session: AsyncSession, user_id: int, button: cb.Callback, *, check_version: bool = True
) -> tuple[Staff, Case]:
    """The acting staff member and the case, or a polite CaseError saying why not.

    Order matters for the message: not staff → not yours → stale button.
    """
    staff = await people.get_staff(session, user_id)
    if staff is None:
        raise NotPermitted("not_staff")
    case = await cases.get_case(session, button.case_id)
    permission = permission_for(button.verb, case)
    if not await can(session, staff, permission, case):
        # A department's member pressing another department's button is told exactly that.
        wrong_department = staff.role == "department" and permission in DEPARTMENT_ACTIONS
        raise NotPermitted("not_your_department" if wrong_department else "no_permission")
    if check_version and case.version != button.version:
        raise StaleVersion("stale_version")
    return staff, case


async def _authorize_part(
    session: AsyncSession, user_id: int, button: cb.Callback
) -> tuple[Staff, Case, CasePart]:
    """The acting staff member, the case and the 攻坚哨 part a part button is about, or a
    polite CaseError: a button naming a part of another case is a forged one."""
    staff = await people.get_staff(session, user_id)
    if staff is None:
        raise NotPermitted("not_staff")
    if not (button.arg or "").isdigit():
        raise CaseError("button_invalid")
    part = await parts.get_part(session, int(button.arg))
    if part.case_id != button.case_id:
        raise CaseError("button_invalid")
    if not can_on_part(staff, permission_for(button.verb, None), part):
        raise NotPermitted("not_your_department" if staff.role == "department" else "no_permission")
    if part.version != button.version:
        raise StaleVersion("stale_version")
    return staff, await cases.get_case(session, part.case_id), part


async def check_button(services: Services, user_id: int, button: cb.Callback) -> Acted:
    """Read-only check that this user may press this (current) button now; 办结 of a
    攻坚哨 whose parts are still open is refused here, before the result is asked for."""
    async with services.session() as session:
        if button.verb in cb.PART_VERBS:
            staff, case, part = await _authorize_part(session, user_id, button)
            return Acted(case, staff, part=part)
        staff, case = await _authorize(session, user_id, button)
        if button.verb == cb.RESOLVE:
            await cases.check_guards(session, "resolve", case)
        return Acted(case, staff, await _enterprise_name(session, case))


async def current_part(services: Services, part_id: int) -> Acted:
    """A 攻坚哨 part and its case as they are now (to redraw a post whose button went stale)."""
    async with services.session() as session:
        part = await parts.get_part(session, part_id)
        return Acted(await cases.get_case(session, part.case_id), None, part=part)


async def current_case(services: Services, case_id: int) -> tuple[Case, str | None]:
    """The case as it is now (to redraw a post whose button went stale)."""
    async with services.session() as session:
        case = await cases.get_case(session, case_id)
        return case, await _enterprise_name(session, case)


async def choose_department(
    services: Services, user_id: int, button: cb.Callback, department_code: str | None = None
) -> Acted:
    """Triage 确认 (department_code None: the suggested one) / 改派 / 重新分派."""
    now = services.clock()
    actor = Actor.staff(user_id)
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button)
        department_code = department_code or case.suggested_department
        if not department_code:
            raise CaseError("no_suggestion")
        if case.status in (SUBMITTED, TRIAGE):
            case = await cases.dispatch(
                session,
                case.id,
                department_code,
                actor,
                now,
                rules=services.rules,
                expected_version=button.version,
            )
        else:
            old_chat = await _department_chat(session, case.department_code)
            case = await cases.redispatch(
                session,
                case.id,
                department_code,
                actor,
                now,
                rules=services.rules,
                expected_version=button.version,
            )
            moved = texts.NOTICE_MOVED_AWAY.format(
                ref=case.ref, department=department_name(services, department_code)
            )
            await _push(session, case, "moved_away", old_chat, moved, "department", now)
        enterprise = await _enterprise_name(session, case)
        await _queue(
            session,
            await _department_post(session, services, case, now, enterprise=enterprise),
            await notices.reporter_notice(session, services, case, notices.DISPATCHED, now),
        )
        return Acted(case, staff, enterprise)


async def mark_urgent(services: Services, user_id: int, button: cb.Callback) -> Acted:
    """Triage 标记紧急: urgent deadlines; a department already on it is told."""
    now = services.clock()
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button)
        case = await cases.set_priority(
            session,
            case.id,
            URGENT,
            Actor.staff(user_id),
            now,
            rules=services.rules,
            expected_version=button.version,
        )
        if case.department_code:
            notice = texts.NOTICE_URGENT_DEPT.format(
                ref=case.ref,
                sign_by=local_time(services, case.sign_by),
                resolve_by=local_time(services, case.resolve_by),
            )
            await _push(
                session,
                case,
                "urgent",
                await _department_chat(session, case.department_code),
                notice,
                "department",
                now,
                markup=posts.department_keyboard(case),
            )
        return Acted(case, staff, await _enterprise_name(session, case))


async def set_grid(services: Services, user_id: int, button: cb.Callback) -> Acted:
    """Triage 修改网格 → ✅ 定为 <arg>: the case is placed in that grid by staff."""
    if button.arg not in services.gridmap:
        raise CaseError("grid_no_longer_configured")
    now = services.clock()
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button)
        case = await locating.set_grid(
            session,
            case.id,
            button.arg,
            Actor.staff(user_id),
            now,
            rules=services.rules,
            expected_version=button.version,
        )
        return Acted(case, staff, await _enterprise_name(session, case))


def _released(case: Case, event: str, chat_id: int | None, text: str, now: datetime) -> dict | None:
    """Tell the department that had the case that it need not act (none had it: nothing)."""
    return notices.push_row(case, event, chat_id, text, "department", now) if chat_id else None


async def not_accept(
    services: Services, user_id: int, button: cb.Callback, category: str, note: str | None = None
) -> Acted:
    """Triage 不予受理: the case ends; the reporter is told why and where to turn instead, and a
    department that already had it is told it need not act."""
    now = services.clock()
    note = note.strip() if note else None
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button)
        old_chat = await _department_chat(session, case.department_code)
        case = await cases.not_accept(
            session,
            case.id,
            Actor.staff(user_id),
            now,
            rules=services.rules,
            category=category,
            note=note,
            expected_version=button.version,
        )
        await _queue(
            session,
            await notices.reporter_notice(
                session,
                services,
                case,
                "not_accepted",
                now,
                details={"category": category, "note": note},
            ),
            _released(
                case,
                "not_accepted",
                old_chat,
                texts.NOTICE_NOT_ACCEPTED_DEPT.format(ref=case.ref),
                now,
            ),
        )
        return Acted(case, staff, await _enterprise_name(session, case))


async def merge_duplicate(services: Services, user_id: int, button: cb.Callback, ref: str) -> Acted:
    """Triage 重复反映: the case is merged into the open case `ref` (cases.merge); the reporter
    and a department that already had it are told."""
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button)
        target = await cases.get_case_by_ref(session, ref)
        if target is None:
            raise InvalidInput("duplicate_not_found", ref=texts.snippet(ref, 40))
        return await _merge(session, services, staff, case, target, user_id, button.version)


async def merge_into_similar(services: Services, user_id: int, button: cb.Callback) -> Acted:
    """合并 under triage's duplicate hint: the case is merged into case <arg>. The hint is not
    the case's card, so a change to the case since (marked urgent, say) does not stale it."""
    if not (button.arg or "").isdigit():
        raise CaseError("button_invalid")
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button, check_version=False)
        target = await cases.get_case(session, int(button.arg))
        return await _merge(session, services, staff, case, target, user_id, None)


async def _merge(
    session: AsyncSession,
    services: Services,
    staff: Staff,
    case: Case,
    target: Case,
    user_id: int,
    expected_version: int | None,
) -> Acted:
    """The merge and its pushes: the reporter is told, and a department that had the case."""
    now = services.clock()
    old_chat = await _department_chat(session, case.department_code)
    case = await cases.merge(
        session,
        case.id,
        target.id,
        Actor.staff(user_id),
        now,
        rules=services.rules,
        expected_version=expected_version,
    )
    await _queue(
        session,
        await notices.reporter_notice(
            session, services, case, "merged", now, details={"into": target.ref}
        ),
        _released(
            case,
            "merged",
            old_chat,
            texts.NOTICE_MERGED_DEPT.format(ref=case.ref, into=target.ref),
            now,
        ),
    )
    return Acted(case, staff, await _enterprise_name(session, case))


# A store step a button makes with nothing but the case: (session, case id, actor, now, *,
# rules, expected_version) -> the case after it.
Step = Callable[..., Awaitable[Case]]
# The pushes a step queues in the same transaction: (session, case after it, now) -> rows.
Pushes = Callable[[AsyncSession, Case, datetime], Awaitable[Sequence[dict | None]]]


async def _step(
    services: Services, user_id: int, button: cb.Callback, step: Step, pushes: Pushes | None = None
) -> Acted:
    """A button's store step in one transaction: the presser checked, the step made at the
    button's version, then what it tells others queued with it."""
    now = services.clock()
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button)
        case = await step(
            session,
            case.id,
            Actor.staff(user_id),
            now,
            rules=services.rules,
            expected_version=button.version,
        )
        if pushes is not None:
            await _queue(session, *await pushes(session, case, now))
        return Acted(case, staff, await _enterprise_name(session, case))


async def sign(services: Services, user_id: int, button: cb.Callback) -> Acted:
    """Department 签收; the reporter is told."""

    async def pushes(session: AsyncSession, case: Case, now: datetime) -> list[dict | None]:
        return [
            await notices.reporter_notice(session, services, case, "signed", now),
            _reported(services, case, now),
        ]

    return await _step(services, user_id, button, cases.sign_for, pushes)


async def return_to_triage(
    services: Services, user_id: int, button: cb.Callback, reason: str
) -> Acted:
    """Department 退回 with a reason: the case goes back to the triage group."""
    now = services.clock()
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button)
        department = department_name(services, case.department_code)
        case = await cases.return_case(
            session,
            case.id,
            Actor.staff(user_id),
            reason,
            now,
            rules=services.rules,
            expected_version=button.version,
        )
        if (chat_id := await fq.reporter_chat(session, case)) is not None:
            # The department a waiting 派单 notice names no longer has the case.
            await notices.drop_waiting_dispatch(session, case, chat_id, now)
        enterprise = await _enterprise_name(session, case)
        headline = texts.POST_RETURNED.format(
            department=department, ref=case.ref, reason=reason.strip()
        )
        await _queue(
            session, _triage_post(services, case, now, enterprise=enterprise, headline=headline)
        )
        return Acted(case, staff, enterprise)


async def resolve_case(
    services: Services, user_id: int, button: cb.Callback, result: str, photo: str | None
) -> Acted:
    """Department 办结 with the result (and a photo); the reporter is told the result."""
    now = services.clock()
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button)
        verifier = await _verifier(session, services, case)
        case = await cases.resolve(
            session,
            case.id,
            Actor.staff(user_id),
            result,
            now,
            rules=services.rules,
            photo=photo,
            expected_version=button.version,
            verify_grid=verifier.grid_code if verifier else None,
        )
        enterprise = await _enterprise_name(session, case)
        if verifier is not None:  # 核查 first; the reporter hears of the 办结 once it passes
            await _queue(
                session,
                *_grid_posts(
                    services, case, "to_verify", verifier.staff, now, enterprise=enterprise
                ),
            )
        else:
            await _queue(
                session,
                await notices.reporter_notice(
                    session, services, case, "resolved", now, details={"photo_file": photo}
                ),
            )
        return Acted(case, staff, enterprise)


async def ask_extension(
    services: Services, user_id: int, button: cb.Callback, reason: str, new_resolve_by: datetime
) -> tuple[Acted, ExtensionRequest]:
    """Department 申请延期: the request goes to the triage group to approve or reject."""
    now = services.clock()
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button)
        request = await cases.request_extension(
            session, case.id, Actor.staff(user_id), reason, new_resolve_by, now
        )
        text = texts.POST_EXTENSION_REQUEST.format(
            department=department_name(services, case.department_code),
            ref=case.ref,
            reason=request.reason,
            date=local_time(services, new_resolve_by),
        )
        await _push(
            session,
            case,
            f"extension{request.id}",
            _triage_chat(services),
            text,
            "extension",
            now,
            markup=posts.extension_keyboard(case, request.id),
        )
        return Acted(case, staff), request


async def decide_extension(
    services: Services, user_id: int, button: cb.Callback, approve: bool
) -> Acted:
    """Triage 同意 / 不同意 an extension; the department is told the deadline that holds.

    The version is not checked: asking for an extension does not change the case, and the
    request itself can only be decided once (the store refuses a second decision).
    """
    if not button.arg or not button.arg.isdigit():
        raise CaseError("button_invalid")
    now = services.clock()
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button, check_version=False)
        case = await cases.decide_extension(
            session, int(button.arg), Actor.staff(user_id), approve, now, rules=services.rules
        )
        template = texts.NOTICE_EXT_APPROVED_DEPT if approve else texts.NOTICE_EXT_REJECTED_DEPT
        notice = template.format(ref=case.ref, resolve_by=local_time(services, case.resolve_by))
        await _push(
            session,
            case,
            f"extension{button.arg}decided",
            await _department_chat(session, case.department_code),
            notice,
            "department",
            now,
            markup=posts.department_keyboard(case),
        )
        return Acted(case, staff, await _enterprise_name(session, case))


# ---------------------------------------------------------------- 攻坚哨


def _part_post(
    services: Services, case: Case, part: CasePart, chat_id: int | None, now: datetime
) -> dict | None:
    """A co-department's post of its part (签收 / 办结 buttons)."""
    return notices.push_row(
        case,
        f"part{part.id}",
        chat_id,
        posts.part_text(case, part, services),
        "department",
        now,
        markup=posts.part_keyboard(case, part),
        photo=case.photos[0] if case.photos else None,
    )


def _names(services: Services, codes: Sequence[str]) -> str:
    return "、".join(department_name(services, code) for code in codes)


async def mark_hard(
    services: Services,
    user_id: int,
    button: cb.Callback,
    lead: str,
    co: Sequence[str],
    decision: str,
) -> Acted:
    """列为攻坚哨 (triage or a leader): the lead department gets the case (a new post if it did
    not have it, else a notice), each co-department a post of its part, the reporter a notice."""
    now = services.clock()
    actor = Actor.staff(user_id)
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button)
        had = case.department_code  # read now: the store's moves refresh the same object
        old_chat = await _department_chat(session, had)
        case, made = await parts.mark_hard(
            session,
            case.id,
            lead=lead,
            co_departments=co,
            decision=decision,
            actor=actor,
            now=now,
            rules=services.rules,
            expected_version=button.version,
        )
        enterprise = await _enterprise_name(session, case)
        lead_chat = await _department_chat(session, lead)
        rows = [
            await notices.reporter_notice(
                session, services, case, "marked_hard", now, details={"co": list(co)}
            )
        ]
        if had == lead:
            rows.append(
                notices.push_row(
                    case,
                    "marked_hard",
                    lead_chat,
                    texts.NOTICE_HARD_LEAD.format(
                        ref=case.ref, co=_names(services, co), decision=case.hard_decision
                    ),
                    "department",
                    now,
                    markup=posts.department_keyboard(case),
                )
            )
        else:
            if had and old_chat is not None:
                rows.append(
                    _released(
                        case,
                        "moved_away",
                        old_chat,
                        texts.NOTICE_MOVED_AWAY.format(
                            ref=case.ref, department=department_name(services, lead)
                        ),
                        now,
                    )
                )
            rows.append(
                await _department_post(
                    session, services, case, now, enterprise=enterprise, case_parts=made
                )
            )
            rows.append(
                await notices.reporter_notice(session, services, case, notices.DISPATCHED, now)
            )
        for part in made:
            rows.append(
                _part_post(
                    services, case, part, await _department_chat(session, part.department_code), now
                )
            )
        await _queue(session, *rows)
        return Acted(case, staff, enterprise, parts=tuple(made))


async def _staff_and_case(session: AsyncSession, user_id: int, ref: str) -> tuple[Staff, Case]:
    """The staff member typing a command about case `ref`, and the case (NotPermitted for
    anyone not staff, CaseNotFound for an unknown reference); what they may do is checked
    by the caller."""
    staff = await people.get_staff(session, user_id)
    if staff is None:
        raise NotPermitted("not_staff")
    case = await cases.get_case_by_ref(session, ref)
    if case is None:
        raise CaseNotFound("case_not_found")
    return staff, case


async def case_to_mark_hard(services: Services, user_id: int, ref: str) -> Case:
    """/gongjian REF: the case, if this staff member may make it a 攻坚哨 now."""
    async with services.session() as session:
        staff, case = await _staff_and_case(session, user_id, ref)
        if not await can(session, staff, "mark_hard", case):
            raise NotPermitted("no_permission")
        parts.check_markable(case)
        return case


async def _tell_lead(
    session: AsyncSession, services: Services, case: Case, part: CasePart, event: str, now: datetime
) -> dict | None:
    """The lead department hears of each part's 签收 and 办结, and what is still open."""
    waiting = await cases.open_parts(session, case.id)
    left = (
        texts.PARTS_LEFT.format(departments="、".join(name for name, _ in waiting))
        if waiting
        else texts.PARTS_ALL_DONE
    )
    text = texts.NOTICE_PART_LEAD.format(
        ref=case.ref,
        department=department_name(services, part.department_code),
        what=texts.PART_WHAT[event],
        left=left,
    )
    return notices.push_row(
        case,
        f"part{part.id}:{event}",
        await _department_chat(session, case.department_code),
        text,
        "department",
        now,
        markup=None if waiting else posts.department_keyboard(case),
    )


async def sign_part(services: Services, user_id: int, button: cb.Callback) -> Acted:
    """A co-department's 签收 of its 攻坚哨 part; the lead department is told."""
    now = services.clock()
    async with services.session() as session:
        staff, case, part = await _authorize_part(session, user_id, button)
        case, part = await parts.sign_part(
            session,
            part.id,
            Actor.staff(user_id),
            now,
            rules=services.rules,
            expected_version=button.version,
        )
        await _queue(session, await _tell_lead(session, services, case, part, "part_signed", now))
        return Acted(case, staff, part=part)


async def resolve_part(services: Services, user_id: int, button: cb.Callback, result: str) -> Acted:
    """A co-department's 办结 of its 攻坚哨 part; the lead department is told what is left."""
    now = services.clock()
    async with services.session() as session:
        staff, case, part = await _authorize_part(session, user_id, button)
        case, part = await parts.resolve_part(
            session,
            part.id,
            Actor.staff(user_id),
            result,
            now,
            rules=services.rules,
            expected_version=button.version,
        )
        await _queue(session, await _tell_lead(session, services, case, part, "part_resolved", now))
        return Acted(case, staff, part=part)


async def override_parts(services: Services, user_id: int, ref: str, reason: str) -> Acted:
    """A leader's decision that a 攻坚哨 need not wait for its open parts: each one is waived
    with the reason, its department and the lead department are told."""
    now = services.clock()
    async with services.session() as session:
        staff, case = await _staff_and_case(session, user_id, ref)
        case, waived = await parts.waive_open_parts(
            session, case.id, Actor.staff(user_id), reason, now, rules=services.rules
        )
        reason = waived[0].result
        names = _names(services, [p.department_code for p in waived])
        rows = [
            notices.push_row(
                case,
                f"override{waived[0].version}:{waived[0].id}",
                await _department_chat(session, case.department_code),
                texts.NOTICE_OVERRIDE_LEAD.format(ref=case.ref, departments=names, reason=reason),
                "department",
                now,
                markup=posts.department_keyboard(case),
            )
        ]
        for part in waived:
            rows.append(
                notices.push_row(
                    case,
                    f"part{part.id}:waived",
                    await _department_chat(session, part.department_code),
                    texts.NOTICE_OVERRIDE_PART.format(ref=case.ref, reason=reason),
                    "department",
                    now,
                )
            )
        await _queue(session, *rows)
        return Acted(case, staff, parts=tuple(waived))


# ---------------------------------------------------------------- 吹哨报到 in the grid


def _grid_name(services: Services, code: str | None) -> str:
    return services.gridmap.name(code) or code or "—"


def _grid_posts(
    services: Services,
    case: Case,
    event: str,
    staff: tuple[int, ...],
    now: datetime,
    *,
    enterprise: str | None,
    headline: str | None = None,
) -> list[dict | None]:
    """The case's post to each grid (or street) staff member, in their private chat."""
    text = posts.grid_text(case, services, enterprise=enterprise, headline=headline)
    photo = case.photos[0] if case.photos else None
    return [
        notices.push_row(
            case, event, chat_id, text, "grid", now, markup=posts.grid_keyboard(case), photo=photo
        )
        for chat_id in staff
    ]


def _reported(services: Services, case: Case, now: datetime) -> dict | None:
    """报到: the grid worker who blew the whistle hears that the department signed, and how
    long after the whistle."""
    if case.whistled_by is None or case.whistled_at is None:
        return None
    span = texts.span((now - case.whistled_at).total_seconds())
    text = texts.NOTICE_REPORTED.format(
        department=department_name(services, case.department_code), ref=case.ref, span=span
    )
    return notices.push_row(case, "reported", case.whistled_by, text, "grid", now)


async def _verifier(
    session: AsyncSession, services: Services, case: Case
) -> gridwork.Handler | None:
    """Who verifies this department's 办结 on site (核查), if its department wants it."""
    dept = services.settings.department(case.department_code or "")
    if dept is None or not dept.verify_by_grid:
        return None
    return await gridwork.verifier_for(session, case)


async def to_grid(services: Services, user_id: int, button: cb.Callback) -> Acted:
    """Triage 交网格办理: the case goes to the deepest grid with staff; they get its post."""
    now = services.clock()
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button)
        old_chat = await _department_chat(session, case.department_code)
        case, handler = await gridwork.to_grid(
            session,
            case.id,
            Actor.staff(user_id),
            now,
            rules=services.rules,
            expected_version=button.version,
        )
        enterprise = await _enterprise_name(session, case)
        moved = texts.NOTICE_MOVED_AWAY.format(
            ref=case.ref, department=_grid_name(services, handler.grid_code)
        )
        await _queue(
            session,
            *_grid_posts(services, case, "to_grid", handler.staff, now, enterprise=enterprise),
            _released(case, "moved_away", old_chat, moved, now),
            await notices.reporter_notice(
                session, services, case, "to_grid", now, details={"grid": handler.grid_code}
            ),
        )
        return Acted(case, staff, enterprise)


async def grid_sign(services: Services, user_id: int, button: cb.Callback) -> Acted:
    """The grid's (or street's) 签收."""
    return await _step(services, user_id, button, gridwork.grid_sign)


async def grid_resolve(
    services: Services, user_id: int, button: cb.Callback, result: str, photo: str | None
) -> Acted:
    """办结 in the grid or at the street: the reporter is told the result (then the 回访)."""
    now = services.clock()
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button)
        case = await gridwork.grid_resolve(
            session,
            case.id,
            Actor.staff(user_id),
            result,
            now,
            rules=services.rules,
            photo=photo,
            expected_version=button.version,
        )
        await _queue(
            session,
            await notices.reporter_notice(
                session, services, case, "resolved", now, details={"photo_file": photo}
            ),
        )
        return Acted(case, staff, await _enterprise_name(session, case))


async def whistle_street(services: Services, user_id: int, button: cb.Callback) -> str | None:
    """The name of the street a grid may whistle up to (None: not offered), after checking
    the presser may whistle on this case now."""
    async with services.session() as session:
        _staff, case = await _authorize(session, user_id, button)
        grid = await session.get(Grid, case.handling_grid_code) if case.handling_grid_code else None
        if grid is None or grid.level == gridwork.STREET:
            return None
        street = await gridwork.street_handler(session, case.handling_grid_code)
        return _grid_name(services, street.grid_code) if street else None


def whistle_target_name(services: Services, target: str | None) -> str:
    """街道（镇） or the department's name, for the prompts."""
    if target == gridwork.STREET:
        return texts.LEVEL_NAMES[gridwork.STREET]
    return department_name(services, target)


async def whistle(services: Services, user_id: int, button: cb.Callback, reason: str) -> Acted:
    """吹哨 to the street's staff or to a department (button.arg), with the reason; they get the
    case's post, the department's 签收 being its 报到."""
    if not button.arg:
        raise CaseError("button_invalid")
    now = services.clock()
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button)
        level = texts.LEVEL_NAMES.get(await _level_of(session, case.handling_grid_code), "")
        from_grid = _grid_name(services, case.handling_grid_code)
        case, street = await gridwork.whistle(
            session,
            case.id,
            Actor.staff(user_id),
            button.arg,
            reason,
            now,
            rules=services.rules,
            expected_version=button.version,
        )
        enterprise = await _enterprise_name(session, case)
        kind = texts.KIND_NAMES.get(case.kind, case.kind)
        if street is not None:
            headline = texts.POST_WHISTLED_TO_STREET.format(
                grid=from_grid, ref=case.ref, kind=kind, reason=reason.strip()
            )
            await _queue(
                session,
                *_grid_posts(
                    services,
                    case,
                    "whistled",
                    street.staff,
                    now,
                    enterprise=enterprise,
                    headline=headline,
                ),
            )
        else:
            headline = texts.POST_WHISTLED.format(
                ref=case.ref,
                kind=kind,
                reason=reason.strip(),
                who=staff.name or staff.telegram_id,
                level=f"{from_grid}·{level}",
            )
            text = posts.department_text(case, services, enterprise=enterprise, headline=headline)
            await _push(
                session,
                case,
                "whistled",
                await _department_chat(session, case.department_code),
                text,
                "department",
                now,
                markup=posts.department_keyboard(case),
                photo=case.photos[0] if case.photos else None,
            )
        return Acted(case, staff, enterprise)


async def _level_of(session: AsyncSession, code: str | None) -> str:
    grid = await session.get(Grid, code) if code else None
    return grid.level if grid else ""


async def verify(
    services: Services, user_id: int, button: cb.Callback, passed: bool, reason: str | None = None
) -> Acted:
    """核查通过 (the reporter hears of the 办结, the 回访 follows) or 核查不通过 with a reason
    (the department is told and resolves it again)."""
    now = services.clock()
    async with services.session() as session:
        staff, case = await _authorize(session, user_id, button)
        case = await gridwork.verify(
            session,
            case.id,
            Actor.staff(user_id),
            passed,
            now,
            rules=services.rules,
            reason=reason,
            expected_version=button.version,
        )
        if passed:
            await _queue(
                session,
                await notices.reporter_notice(
                    session,
                    services,
                    case,
                    "verified",
                    now,
                    details={"photo_file": case.resolution_photo},
                ),
            )
        else:
            text = texts.NOTICE_VERIFY_FAILED_DEPT.format(ref=case.ref, reason=reason.strip())
            await _push(
                session,
                case,
                "verify_failed",
                await _department_chat(session, case.department_code),
                text,
                "department",
                now,
                markup=posts.department_keyboard(case),
            )
        return Acted(case, staff, await _enterprise_name(session, case))


async def field_reporter(services: Services, user_id: int) -> Staff:
    """The grid or street staff member who may blow a 雷锋哨 (/whistle), or a CaseError."""
    async with services.session() as session:
        staff = await people.get_staff(session, user_id)
    if staff is None or staff.role not in GRID_ROLES:
        raise NotPermitted("field_report_grid_only")
    if staff.grid_code is None or staff.grid_code not in services.gridmap:
        raise CaseError("field_report_no_grid")
    return staff


async def field_report(
    services: Services, user_id: int, display_name: str, text: str, nonce: int
) -> tuple[Case, gridwork.Handler]:
    """雷锋哨 from the field: a case located in the staff member's own grid (channel
    grid_report) that starts with the grid's staff at once; the same message twice is one
    case (`nonce`: its message id)."""
    staff = await field_reporter(services, user_id)
    suggestion = suggest(services, text)
    now = services.clock()
    settings = services.settings
    async with services.session() as session:
        case = await cases.create_case(
            session,
            reporter_telegram_id=user_id,
            text=text,
            now=now,
            grid_code=staff.grid_code,
            located_by=locating.STAFF,
            suggestions=list(suggestion.top),
            model_version=suggestion.model_version,
            idempotency_key=f"field:{user_id}:{nonce}",
            display_name=display_name,
            ref_prefix=settings.district.case_prefix,
            timezone=settings.district.timezone,
            max_text_chars=settings.conversation.max_text_chars,
            channel=GRID_REPORT,
        )
        if case.status != SUBMITTED:  # this message made its case before
            return case, await gridwork.handler_for(session, case.handling_grid_code)
        case, handler = await gridwork.to_grid(
            session, case.id, Actor.SYSTEM, now, rules=services.rules, current=case
        )
        enterprise = await _enterprise_name(session, case)
        await _queue(
            session,
            *_grid_posts(services, case, "to_grid", handler.staff, now, enterprise=enterprise),
            _triage_post(services, case, now, enterprise=enterprise),
        )
        return case, handler
