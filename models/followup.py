"""Store side of the follow-up engine: which cases need a push now, and recording that it went.

bot/followup.py decides what to say; these functions find the cases due a reminder (黄灯), an
alarm (红灯), an escalation (督办), a survey (回访) or a survey reminder, and record that the push
was queued. Those records are compare-and-set UPDATEs that do not bump Case.version: of two
workers only one queues an alert, and a reminder never makes a staff member's buttons stale.

A case's light is models.deadlines.case_light(); the SQL prefilters use models.stats' SQL mirror of
the same rule and every row found is confirmed with case_light() before anything is sent.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache

from sqlalchemy import and_, func, or_, update
from sqlalchemy import case as sql_case
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.deadlines import RED, YELLOW, Rules, WorkCalendar, case_light, deadline_after
from models.lifecycle import (
    LIT_STATUSES,
    NOTICE_EVENTS,
    RUNNING_DEADLINE,
    TRANSITION_EVENTS,
    running_deadline,
    running_deadline_sql,
)
from models.parts import lit_parts
from models.permissions import in_grid_sql
from models.stats import light_sql
from models.tables import (
    DISPATCHED,
    RESOLVED,
    Case,
    CaseEvent,
    CaseFollower,
    CasePart,
    Department,
    ExtensionRequest,
    Outbox,
    Reporter,
)

# Which bookkeeping column records that each alert was queued for the current deadline
# (the store clears them whenever the deadline moves: sign, extend, reopen, priority).
ALERT_FLAGS = {
    "yellow": "yellow_notified_at",
    "red": "red_notified_at",
    "escalation": "escalated_at",
}
ESCALATED = "escalated"


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


# ---------------------------------------------------------------- deadline alerts


@dataclass
class DueAlerts:
    """Cases whose current deadline calls for a push that has not been queued yet."""

    yellow: list[Case] = field(default_factory=list)
    red: list[Case] = field(default_factory=list)
    escalation: list[Case] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.yellow) + len(self.red) + len(self.escalation)


async def due_alerts(
    session: AsyncSession,
    now: datetime,
    rules: Rules,
    *,
    escalate_after: timedelta,
    limit: int = 200,
) -> DueAlerts:
    """Cases that turned yellow or red, or have been red for `escalate_after`, not yet alerted.

    Per lit status, three queries on its (status, deadline) index: overdue cases missing their
    alarm or escalation; cases near their deadline (within `yellow_horizon`) that are yellow
    without a reminder; and yellow cases with an approved extension, whose longer windows the
    horizon does not cover. At most `limit` rows each, most urgent first; the next pass takes
    the rest. Every case found is confirmed with deadlines.case_light().
    """
    _, is_yellow = light_sql(now, rules.yellow_ratio, _dialect(session))
    horizon = now + yellow_horizon(rules, await _limits_in_use(session, rules), now)
    extended = select(ExtensionRequest.case_id).where(col(ExtensionRequest.status) == "approved")
    due = DueAlerts()
    for status, name in RUNNING_DEADLINE.items():
        deadline = col(getattr(Case, name))
        lit = (col(Case.status) == status, col(Case.dispatched_at).is_not(None))
        unsent = col(Case.yellow_notified_at).is_(None)
        queries = (
            (
                deadline < now,
                or_(
                    col(Case.red_notified_at).is_(None),
                    and_(deadline < now - escalate_after, col(Case.escalated_at).is_(None)),
                ),
            ),
            (deadline >= now, deadline <= horizon, unsent, is_yellow),
            (deadline > horizon, unsent, is_yellow, col(Case.id).in_(extended)),
        )
        for conditions in queries:
            stmt = select(Case).where(*lit, *conditions).order_by(deadline, col(Case.id))
            for case in (await session.exec(stmt.limit(limit))).all():
                light = case_light(case, now, rules)
                if light == YELLOW and case.yellow_notified_at is None:
                    due.yellow.append(case)
                if light == RED and case.red_notified_at is None:
                    due.red.append(case)
                if (
                    light == RED
                    and case.escalated_at is None
                    and now - running_deadline(case) > escalate_after
                ):
                    due.escalation.append(case)
    return due


# How many days back a still-running case can have been dispatched on the configured limits;
# windows are probed over this many days (longer limits show up in the probe anyway).
_WINDOW_LOOKBACK_DAYS = 62


async def _limits_in_use(session: AsyncSession, rules: Rules) -> tuple[str, ...]:
    """Every limit string a department, a grid's staff (and 核查) or the defaults can give."""
    columns = (
        Department.sign_limit_normal,
        Department.sign_limit_urgent,
        Department.resolve_limit_normal,
        Department.resolve_limit_urgent,
    )
    limits = {*rules.default_limits.values(), *rules.grid_limits, rules.verify_limit}
    for row in (await session.exec(select(*columns))).all():
        limits.update(row)
    return tuple(sorted(limits))


def yellow_horizon(rules: Rules, limits: tuple[str, ...], now: datetime) -> timedelta:
    """How far ahead of `now` a deadline can lie while its case is already yellow.

    A case is yellow once (1 − yellow_ratio) of its window (deadline − dispatch) is left, so
    its deadline is at most that far ahead; the longest window the limits give is found by
    probing recent dispatch days in the working calendar (a holiday week stretches "5wd").
    Only an approved extension makes a longer window; due_alerts looks those up separately.
    """
    local_day = rules.calendar.to_local(now).date()
    window = _longest_window(rules.calendar, limits, local_day)
    return window * (1 - rules.yellow_ratio) + timedelta(minutes=1)


@lru_cache(maxsize=64)
def _longest_window(calendar: WorkCalendar, limits: tuple[str, ...], day: date) -> timedelta:
    longest = timedelta(0)
    for back in range(_WINDOW_LOOKBACK_DAYS + 1):
        # Midnight is the worst start: on a day off the count starts at the next opening.
        start = calendar.to_utc(
            datetime.combine(day - timedelta(days=back), dtime(0), tzinfo=calendar.tz)
        )
        for limit in limits:
            longest = max(longest, deadline_after(start, limit, calendar) - start)
    return longest


async def due_part_alerts(
    session: AsyncSession, now: datetime, rules: Rules, *, escalate_after: timedelta
) -> list[tuple[str, CasePart, Case]]:
    """(alert, part, case) for the 攻坚哨 parts that turned yellow or red, or have been red for
    `escalate_after`, not yet alerted: the cases' rule (case_light) applied to each part."""
    due = []
    for part, case in await lit_parts(session):
        light = case_light(part, now, rules)
        if light == YELLOW and part.yellow_notified_at is None:
            due.append(("yellow", part, case))
        if light == RED and part.red_notified_at is None:
            due.append(("red", part, case))
        if (
            light == RED
            and part.escalated_at is None
            and now - running_deadline(part) > escalate_after
        ):
            due.append(("escalation", part, case))
    return due


async def lit_parts_now(
    session: AsyncSession, now: datetime, rules: Rules, *, department: str | None = None
) -> list[tuple[CasePart, Case, str]]:
    """(part, case, light) of the 攻坚哨 parts red or yellow now (a department's only, if
    given), most overdue first."""
    found = [
        (part, case, case_light(part, now, rules))
        for part, case in await lit_parts(session)
        if department is None or part.department_code == department
    ]
    lit = [item for item in found if item[2] in (RED, YELLOW)]
    return sorted(lit, key=lambda item: running_deadline(item[0]))


async def claim_alert(
    session: AsyncSession, case: Case | CasePart, alert: str, now: datetime
) -> bool:
    """Record that `alert` is queued for the current deadline of a case (or a 攻坚哨 part);
    False if it already was or it changed since it was read (the next pass looks again)."""
    flag = ALERT_FLAGS[alert]
    table = type(case)
    result = await session.exec(
        update(table)
        .where(
            col(table.id) == case.id,
            col(table.version) == case.version,
            col(getattr(table, flag)).is_(None),
        )
        .values({flag: now})
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def record_escalation(
    session: AsyncSession,
    case: Case,
    now: datetime,
    *,
    hours_overdue: float,
    part: CasePart | None = None,
) -> None:
    """The 督办 goes into the case's audit trail (it does not change the status); a 攻坚哨
    part's names its department."""
    stage = "sign" if (part or case).status == DISPATCHED else "resolve"
    details = {"stage": stage, "hours_overdue": round(hours_overdue, 1)}
    if part is not None:
        details["department"] = part.department_code
    session.add(
        CaseEvent(
            case_id=case.id,
            at=now,
            actor_kind="system",
            action=ESCALATED,
            from_status=case.status,
            to_status=case.status,
            details=details,
        )
    )
    await session.flush()


# ---------------------------------------------------------------- /overdue and the digest


def _scope(stmt, department: str | None, grid: str | None):
    """Only the cases of a department, or in a grid or below it (models.permissions)."""
    if department is not None:
        stmt = stmt.where(col(Case.department_code) == department)
    if grid is not None:
        stmt = stmt.where(in_grid_sql(col(Case.grid_code), grid))
    return stmt


async def light_counts(
    session: AsyncSession,
    now: datetime,
    rules: Rules,
    *,
    department: str | None = None,
    grid: str | None = None,
) -> dict[str, int]:
    """{"red": n, "yellow": m}: open cases lit red or yellow now (exact counts, in SQL)."""
    is_red, is_yellow = light_sql(now, rules.yellow_ratio, _dialect(session))
    stmt = select(func.count().filter(is_red), func.count().filter(is_yellow)).where(
        col(Case.status).in_(LIT_STATUSES)
    )
    red, yellow = (await session.exec(_scope(stmt, department, grid))).one()
    return {RED: red or 0, YELLOW: yellow or 0}


async def lit_cases(
    session: AsyncSession,
    now: datetime,
    rules: Rules,
    *,
    department: str | None = None,
    grid: str | None = None,
    lights: tuple[str, ...] = (RED, YELLOW),
    limit: int = 200,
) -> list[tuple[Case, str]]:
    """(case, light) of open cases that are red or yellow now, most overdue first."""
    is_red, is_yellow = light_sql(now, rules.yellow_ratio, _dialect(session))
    wanted = [cond for light, cond in ((RED, is_red), (YELLOW, is_yellow)) if light in lights]
    stmt = select(Case).where(col(Case.status).in_(LIT_STATUSES), or_(*wanted))
    stmt = (
        _scope(stmt, department, grid).order_by(running_deadline_sql(), col(Case.id)).limit(limit)
    )
    out = []
    for case in (await session.exec(stmt)).all():
        light = case_light(case, now, rules)
        if light in lights:
            out.append((case, light))
    return out


async def red_counts(session: AsyncSession, now: datetime, rules: Rules) -> dict[str, int]:
    """Red cases now per department code (exact counts, in SQL)."""
    is_red, _ = light_sql(now, rules.yellow_ratio, _dialect(session))
    stmt = (
        select(Case.department_code, func.count())
        .where(col(Case.status).in_(LIT_STATUSES), is_red)
        .group_by(Case.department_code)
    )
    return {code: n for code, n in (await session.exec(stmt)).all()}


async def department_chats(session: AsyncSession) -> dict[str, tuple[str, int | None]]:
    """code → (name, group chat id) of every department, inactive ones too."""
    rows = await session.exec(select(Department.code, Department.name, Department.chat_id))
    return {code: (name, chat) for code, name, chat in rows.all()}


# ---------------------------------------------------------------- surveys (回访)


async def surveys_due(session: AsyncSession, limit: int = 200) -> list[Case]:
    """Resolved cases whose satisfaction survey has not been queued yet."""
    stmt = (
        select(Case)
        .where(col(Case.status) == RESOLVED, col(Case.survey_sent_at).is_(None))
        .order_by(col(Case.resolved_at), col(Case.id))
        .limit(limit)
    )
    return list((await session.exec(stmt)).all())


async def survey_reminders_due(
    session: AsyncSession, now: datetime, *, after: timedelta, limit: int = 200
) -> list[Case]:
    """Resolved cases surveyed at least `after` ago, unanswered and not reminded yet."""
    stmt = (
        select(Case)
        .where(
            col(Case.status) == RESOLVED,
            col(Case.survey_sent_at) <= now - after,
            col(Case.survey_reminded_at).is_(None),
        )
        .order_by(col(Case.survey_sent_at), col(Case.id))
        .limit(limit)
    )
    return list((await session.exec(stmt)).all())


async def surveys_expired(
    session: AsyncSession, now: datetime, *, after: timedelta, limit: int = 200
) -> list[Case]:
    """Resolved cases surveyed at least `after` ago and still unanswered: to close as 未评价."""
    stmt = (
        select(Case)
        .where(col(Case.status) == RESOLVED, col(Case.survey_sent_at) <= now - after)
        .order_by(col(Case.survey_sent_at), col(Case.id))
        .limit(limit)
    )
    return list((await session.exec(stmt)).all())


async def claim_survey(
    session: AsyncSession, case: Case, now: datetime, *, reminder: bool = False
) -> bool:
    """Record that the survey (or its one reminder) is queued; False if it already was."""
    flag = "survey_reminded_at" if reminder else "survey_sent_at"
    result = await session.exec(
        update(Case)
        .where(
            col(Case.id) == case.id,
            col(Case.version) == case.version,
            col(Case.status) == RESOLVED,
            col(getattr(Case, flag)).is_(None),
        )
        .values({flag: now})
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


# ---------------------------------------------------------------- reporters


async def reporter_chat(session: AsyncSession, case: Case) -> int | None:
    """The reporter's private chat id, or None once Telegram said they blocked the bot."""
    reporter = await session.get(Reporter, case.reporter_id)
    if reporter is None or not reporter.reachable:
        return None
    return reporter.telegram_id


async def unreachable_chats(session: AsyncSession, chat_ids: list[int]) -> set[int]:
    """Those of `chat_ids` that are reporters who blocked the bot."""
    private = sorted({c for c in chat_ids if c > 0})
    if not private:
        return set()
    stmt = select(Reporter.telegram_id).where(
        col(Reporter.telegram_id).in_(private), col(Reporter.reachable).is_(False)
    )
    return set((await session.exec(stmt)).all())


# ---------------------------------------------------------------- status-change events


@dataclass(frozen=True)
class StatusNotice:
    """A reporter-facing status change and what its notice needs."""

    event: CaseEvent
    case: Case
    chat_id: int | None  # None: the reporter blocked the bot
    version: int  # the case's version right after the event (part of the notice's key)


async def status_notices(
    session: AsyncSession, *, after_id: int, limit: int = 500
) -> list[StatusNotice]:
    """Reporter-facing status changes (NOTICE_EVENTS) with id > after_id, oldest first.

    Two queries however many there are: the events with their cases and reporters, then
    the versions (see version_after).
    """
    stmt = (
        select(CaseEvent, Case, Reporter.telegram_id, Reporter.reachable)
        .join(Case, col(Case.id) == col(CaseEvent.case_id))
        .join(Reporter, col(Reporter.id) == col(Case.reporter_id))
        .where(col(CaseEvent.id) > after_id, col(CaseEvent.action).in_(NOTICE_EVENTS))
        .order_by(col(CaseEvent.id))
        .limit(limit)
    )
    rows = (await session.exec(stmt)).all()
    versions = await _versions_after(session, [event for event, *_ in rows])
    following = await _followers(session, {case.id for _, case, *_ in rows})
    found = []
    for event, case, chat, reachable in rows:
        found.append(StatusNotice(event, case, chat if reachable else None, versions[event.id]))
        # 关注该案件: a follower is told of the changes after they started to follow it.
        found += [
            StatusNotice(event, case, follower, versions[event.id])
            for follower, since in following.get(case.id, ())
            if since <= event.at
        ]
    return found


async def _followers(
    session: AsyncSession, case_ids: set[int]
) -> dict[int, list[tuple[int, datetime]]]:
    """case id → (chat, following since) of its reachable followers."""
    if not case_ids:
        return {}
    stmt = (
        select(CaseFollower.case_id, Reporter.telegram_id, CaseFollower.at)
        .join(Reporter, col(Reporter.id) == col(CaseFollower.reporter_id))
        .where(col(CaseFollower.case_id).in_(sorted(case_ids)), col(Reporter.reachable).is_(True))
    )
    found: dict[int, list[tuple[int, datetime]]] = {}
    for case_id, chat, since in (await session.exec(stmt)).all():
        found.setdefault(case_id, []).append((chat, since))
    return found


async def _versions_after(session: AsyncSession, events: list[CaseEvent]) -> dict[int, int]:
    """version_after for many events, with one query over their cases' transition events."""
    if not events:
        return {}
    stmt = (
        select(CaseEvent.id, CaseEvent.case_id)
        .where(
            col(CaseEvent.case_id).in_(sorted({e.case_id for e in events})),
            col(CaseEvent.id) <= max(e.id for e in events),
            col(CaseEvent.action).in_(TRANSITION_EVENTS),
        )
        .order_by(col(CaseEvent.id))
    )
    transitions: dict[int, list[int]] = {}
    for event_id, case_id in (await session.exec(stmt)).all():
        transitions.setdefault(case_id, []).append(event_id)
    return {e.id: bisect_right(transitions.get(e.case_id, []), e.id) for e in events}


async def last_event_before(session: AsyncSession, moment: datetime) -> int:
    """Id of the newest event older than `moment` (0 if none): where a new cursor starts.

    Walks the primary key backwards, so it reads only the events newer than `moment`.
    """
    stmt = (
        select(CaseEvent.id)
        .where(col(CaseEvent.at) < moment)
        .order_by(col(CaseEvent.id).desc())
        .limit(1)
    )
    return (await session.exec(stmt)).first() or 0


async def version_after(session: AsyncSession, event: CaseEvent) -> int:
    """The case's version right after `event` (the version in the notice's idempotency key).

    Every cases.transition() bumps the version by one and writes exactly one event, so the
    version after an event is the number of transition events up to and including it.
    """
    return (await _versions_after(session, [event]))[event.id]


# ---------------------------------------------------------------- outbox helpers for the sender


async def postpone_push(
    session: AsyncSession,
    outbox_id: int,
    *,
    worker: str,
    due_at: datetime,
    error: str | None = None,
) -> bool:
    """Give a leased row back, due again at `due_at`, without counting a failed attempt.

    For pushes held back by the rate limit or by Telegram's RetryAfter: nothing failed, the
    message simply has to wait. Only the worker holding the lease may do it.
    """
    values: dict = {"due_at": due_at, "lease_owner": None, "lease_until": None}
    if error:
        values["last_error"] = error[:500]
    result = await session.exec(
        update(Outbox)
        .where(
            col(Outbox.id) == outbox_id,
            col(Outbox.status) == "pending",
            col(Outbox.lease_owner) == worker[:64],
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def postpone_pushes(
    session: AsyncSession, due_by_id: dict[int, datetime], *, worker: str
) -> int:
    """postpone_push for many rows in one statement (each to its own due time)."""
    if not due_by_id:
        return 0
    result = await session.exec(
        update(Outbox)
        .where(
            col(Outbox.id).in_(sorted(due_by_id)),
            col(Outbox.status) == "pending",
            col(Outbox.lease_owner) == worker[:64],
        )
        .values(
            due_at=sql_case(due_by_id, value=col(Outbox.id)), lease_owner=None, lease_until=None
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


async def waiting_due(session: AsyncSession, keys: list[str], now: datetime) -> datetime | None:
    """The latest due time of those of `keys` still waiting to be sent (None if none is).

    Looked up by exact key (the unique index), not by case: a busy outbox holds many
    pending rows, and the caller knows the few keys a case's earlier pushes can have.
    """
    if not keys:
        return None
    stmt = select(func.max(Outbox.due_at)).where(col(Outbox.key).in_(keys), *_waiting(now))
    return (await session.exec(stmt)).one()


async def drop_waiting(
    session: AsyncSession, keys: list[str], now: datetime, *, reason: str
) -> int:
    """Drop those of `keys` still waiting to be sent (a later push says it better); how many.

    A row a sender has leased is on its way and is left alone. A dropped row keeps its key,
    so nothing queues it again.
    """
    if not keys:
        return 0
    result = await session.exec(
        update(Outbox)
        .where(col(Outbox.key).in_(keys), *_waiting(now))
        .values(status="dropped", last_error=reason[:500])
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


async def bring_forward(session: AsyncSession, keys: list[str], now: datetime) -> int:
    """Make those of `keys` that wait for a later time due now; how many."""
    if not keys:
        return 0
    result = await session.exec(
        update(Outbox)
        .where(col(Outbox.key).in_(keys), col(Outbox.due_at) > now, *_waiting(now))
        .values(due_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def _waiting(now: datetime) -> tuple:
    return (
        col(Outbox.status) == "pending",
        or_(col(Outbox.lease_until).is_(None), col(Outbox.lease_until) < now),
    )


async def outbox_key_exists(session: AsyncSession, key: str) -> bool:
    """Whether a push with this idempotency key was ever queued."""
    return key in await existing_outbox_keys(session, [key])


async def existing_outbox_keys(session: AsyncSession, keys: list[str]) -> set[str]:
    """Those of `keys` that some queued push already has."""
    found: set[str] = set()
    for start in range(0, len(keys), 500):  # stay far below SQLite's variable limit
        stmt = select(Outbox.key).where(col(Outbox.key).in_(keys[start : start + 500]))
        found.update((await session.exec(stmt)).all())
    return found
