"""The routing store: reporters, enterprises, reference data and the case lifecycle.

Every status change goes through `transition()`: it checks the move against
models.lifecycle.TRANSITIONS, applies times and deadlines with a compare-and-set UPDATE on the
case's version, and writes the CaseEvent in the same transaction. Functions never commit; the
caller's `models.db.session_scope` does. Each validates its input before writing anything, so
a caller that catches a CaseError and carries on never commits half an operation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.credit_code import validate_credit_code
from models.deadlines import WorkCalendar, deadline_after, parse_limit, traffic_light
from models.lifecycle import (
    EVENT_OF_ACTION,
    NOT_ACCEPTED_OTHER,
    NOT_ACCEPTED_REASONS,
    STATUS_NAMES,
    TRANSITIONS,
    AlreadyDone,
    CaseNotFound,
    IllegalTransition,
    NotPermitted,
    StaleVersion,
    target_status,
)
from models.permissions import can
from models.tables import (
    BASIC,
    DISPATCHED,
    ENTERPRISE,
    NORMAL,
    RESIDENT,
    SATISFIED,
    SIGNED,
    UNRATED,
    UNSATISFIED,
    URGENT,
    Case,
    CaseCounter,
    CaseEvent,
    Department,
    Enterprise,
    ExtensionRequest,
    Grid,
    LabelCorrection,
    Reporter,
    Staff,
)
from models.validation import InvalidInput, clean_text, normalize_phone
from whistle.config import ConfigError

DEFAULT_LIMITS = {
    "sign_normal": "1wd",
    "sign_urgent": "2h",
    "resolve_normal": "5wd",
    "resolve_urgent": "1d",
}
ROLES = ("triage", "department", "grid", "leader", "admin")
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


@dataclass(frozen=True)
class Rules:
    """Deadline rules, built once per process with Rules.from_settings(settings)."""

    calendar: WorkCalendar
    default_limits: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    yellow_ratio: float = 0.75

    @classmethod
    def from_settings(cls, settings) -> Rules:
        return cls(
            calendar=WorkCalendar.from_settings(settings),
            default_limits={**DEFAULT_LIMITS, **dict(settings.limits)},
            yellow_ratio=float(settings.followup.get("yellow_ratio", 0.75)),
        )

    def limits_for(self, department: Department | None, priority: str) -> tuple[str, str]:
        """(sign-for limit, resolve limit) of a department for a priority, e.g. ('1wd', '5wd')."""
        if department is None:
            return (self.default_limits[f"sign_{priority}"],
                    self.default_limits[f"resolve_{priority}"])
        if priority == URGENT:
            return department.sign_limit_urgent, department.resolve_limit_urgent
        return department.sign_limit_normal, department.resolve_limit_normal

    def deadlines(self, department: Department | None, priority: str,
                  start: datetime) -> tuple[datetime, datetime]:
        """(sign_by, resolve_by) for a case dispatched at `start`; both count from dispatch."""
        sign_limit, resolve_limit = self.limits_for(department, priority)
        return (deadline_after(start, sign_limit, self.calendar),
                deadline_after(start, resolve_limit, self.calendar))


def case_light(case: Case, now: datetime, rules: Rules) -> str | None:
    """红黄灯 of an open case against its current deadline (sign-for, then resolve); else None."""
    deadline = {DISPATCHED: case.sign_by, SIGNED: case.resolve_by}.get(case.status)
    if deadline is None or case.dispatched_at is None:
        return None
    return traffic_light(now, case.dispatched_at, deadline, rules.yellow_ratio)


# ---------------------------------------------------------------- small helpers


def dialect_insert(session: AsyncSession):
    """The dialect's INSERT, which knows ON CONFLICT on both SQLite and PostgreSQL."""
    return _insert_for(session.get_bind().dialect.name)


def _insert_for(dialect: str):
    return pg_insert if dialect == "postgresql" else sqlite_insert


def prebuilt(build: Callable[[Any], Any]) -> Callable[[AsyncSession], Any]:
    """Build a statement once per dialect (from its INSERT) and reuse it with parameters.

    On the hot paths building a statement with .values() costs more than running it;
    a prebuilt one is compiled once and found in SQLAlchemy's cache by identity.
    """
    built: dict[str, Any] = {}

    def for_session(session: AsyncSession):
        dialect = session.get_bind().dialect.name
        if dialect not in built:
            built[dialect] = build(_insert_for(dialect))
        return built[dialect]

    return for_session


def _jsonable(value: Any) -> Any:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else value


def _event_row(case_id: int, actor: Actor, action: str, now: datetime, *,
               from_status: str | None = None, to_status: str | None = None,
               details: dict | None = None) -> dict:
    return {"case_id": case_id, "at": now, "actor_kind": actor.kind,
            "actor_id": actor.telegram_id, "action": action, "from_status": from_status,
            "to_status": to_status, "details": details or {}}


_INSERT_EVENTS = insert(CaseEvent.__table__)


async def _add_events(session: AsyncSession, *rows: dict) -> None:
    """Append events with one plain INSERT: nobody needs them back as objects, and skipping
    the ORM flush saves a round trip per event inside the case's transaction."""
    await session.exec(_INSERT_EVENTS, params=list(rows))


async def _add_event(session: AsyncSession, case_id: int, actor: Actor, action: str,
                     now: datetime, *, from_status: str | None = None,
                     to_status: str | None = None, details: dict | None = None) -> None:
    await _add_events(session, _event_row(case_id, actor, action, now, from_status=from_status,
                                          to_status=to_status, details=details))


async def _reporter_by_tid(session: AsyncSession, telegram_id: int) -> Reporter | None:
    result = await session.exec(select(Reporter).where(Reporter.telegram_id == telegram_id))
    return result.first()


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
        dept.sign_limit_normal, dept.sign_limit_urgent = limits["sign_normal"], limits["sign_urgent"]
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

    codes = {g.code for g in settings.grids}
    for g in _grids_parents_first(settings.grids):
        if g.parent and not g.code.startswith(g.parent + "-"):
            # Permissions decide "in this grid" by code prefix, so the codes must nest.
            raise ConfigError(f"网格编码 {g.code} 应以上级编码 {g.parent}- 开头")
        if g.parent and g.parent not in codes and await session.get(Grid, g.parent) is None:
            raise ConfigError(f"网格 {g.code} 的上级 {g.parent} 不存在")
        grid = await session.get(Grid, g.code) or Grid(code=g.code, name=g.name, level=g.level)
        grid.name, grid.level, grid.parent_code = g.name, g.level, g.parent
        session.add(grid)
        await session.flush()

    for s in settings.staff:
        if s.grid and s.grid not in codes and await session.get(Grid, s.grid) is None:
            raise ConfigError(f"工作人员 {s.telegram_id} 的网格 {s.grid} 不存在")
        await upsert_staff(session, s.telegram_id, s.name, s.role,
                           department_code=s.department, grid_code=s.grid)
    await session.flush()


async def upsert_staff(session: AsyncSession, telegram_id: int, name: str, role: str, *,
                       department_code: str | None = None, grid_code: str | None = None,
                       active: bool = True) -> Staff:
    """Add or update a staff member (config sync, or an admin adding someone)."""
    if role not in ROLES:
        raise InvalidInput(f"未知角色: {role}")
    if role == "department" and (not department_code
                                 or await session.get(Department, department_code) is None):
        raise InvalidInput(f"部门 {department_code} 不存在")
    if grid_code and await session.get(Grid, grid_code) is None:
        raise InvalidInput(f"网格 {grid_code} 不存在")
    result = await session.exec(select(Staff).where(Staff.telegram_id == telegram_id))
    staff = result.first() or Staff(telegram_id=telegram_id, role=role)
    staff.name, staff.role, staff.active = name, role, active
    staff.department_code, staff.grid_code = department_code, grid_code
    session.add(staff)
    await session.flush()
    return staff


# ---------------------------------------------------------------- reporters and enterprises


async def get_or_create_reporter(session: AsyncSession, telegram_id: int, display_name: str = "",
                                 kind: str = RESIDENT, *, now: datetime) -> Reporter:
    """The reporter with this Telegram id, created on first contact (safe under concurrency).

    One upsert: a known reporter keeps everything but a newly given display name, and is
    reachable again (they are talking to the bot, so they have not blocked it).
    """
    params = {"telegram_id": telegram_id, "kind": kind, "display_name": display_name[:200],
              "phone_consent": False, "reachable": True, "created_at": now}
    return (await session.exec(_upsert_reporter(session), params=params)).scalars().one()


@prebuilt
def _upsert_reporter(insert_):
    stmt = insert_(Reporter)
    keep_old_name = func.coalesce(func.nullif(stmt.excluded.display_name, ""),
                                  Reporter.__table__.c.display_name)
    return (stmt.on_conflict_do_update(index_elements=["telegram_id"],
                                       set_={"display_name": keep_old_name, "reachable": True})
            .returning(Reporter)
            .execution_options(populate_existing=True))


async def _existing_reporter(session: AsyncSession, telegram_id: int) -> Reporter:
    reporter = await _reporter_by_tid(session, telegram_id)
    if reporter is None:
        raise InvalidInput("未找到您的用户信息，请先发送 /start")
    return reporter


async def set_reporter_reachable(session: AsyncSession, telegram_id: int, reachable: bool) -> None:
    """Record that Telegram can (not) reach this user; unknown ids are ignored."""
    await session.exec(update(Reporter).where(col(Reporter.telegram_id) == telegram_id)
                       .values(reachable=reachable))


async def set_reporter_phone(session: AsyncSession, telegram_id: int, phone: str | None,
                             consent: bool) -> Reporter:
    """Keep a validated phone number only with the reporter's consent; otherwise forget it."""
    reporter = await _existing_reporter(session, telegram_id)
    normalized = normalize_phone(phone) if (consent and phone) else None
    reporter.phone = normalized
    reporter.phone_consent = bool(consent and normalized)
    session.add(reporter)
    await session.flush()
    return reporter


async def register_enterprise(session: AsyncSession, reporter_telegram_id: int, name: str,
                              credit_code: str, industry: str | None = None,
                              park: str | None = None, *, now: datetime) -> Enterprise:
    """Link the reporter to the enterprise with this 统一社会信用代码, registering it if new."""
    name = clean_text(name, field="企业名称", min_len=2, max_len=100)
    code = validate_credit_code(credit_code)
    industry = (industry or "").strip()[:100] or None
    park = (park or "").strip()[:100] or None
    reporter = await get_or_create_reporter(session, reporter_telegram_id, now=now)
    await session.exec(
        dialect_insert(session)(Enterprise)
        .values(name=name, credit_code=code, industry=industry, park=park,
                news_subscribed=True, created_at=now)
        .on_conflict_do_nothing(index_elements=["credit_code"]))
    enterprise = (await session.exec(
        select(Enterprise).where(Enterprise.credit_code == code))).one()
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
    reporter = await _reporter_by_tid(session, reporter_telegram_id)
    if reporter is None or reporter.enterprise_id is None:
        return None
    return await session.get(Enterprise, reporter.enterprise_id)


async def set_news_subscription(session: AsyncSession, reporter_telegram_id: int,
                                subscribed: bool) -> None:
    """Turn 惠企政策 pushes on or off for the reporter's enterprise."""
    enterprise = await enterprise_of(session, reporter_telegram_id)
    if enterprise is None:
        raise InvalidInput("您尚未登记企业信息")
    enterprise.news_subscribed = subscribed
    session.add(enterprise)
    await session.flush()


# ---------------------------------------------------------------- creating cases


async def _next_ref(session: AsyncSession, now: datetime, prefix: str, timezone: str) -> str:
    """WC-20261124-0007: the district-local day and that day's sequence number."""
    day = now.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone)).strftime("%Y%m%d")
    seq = (await session.exec(_count_case(session), params={"day": day, "last": 1})).scalar_one()
    return f"{prefix}-{day}-{seq:04d}"


@prebuilt
def _count_case(insert_):
    last = CaseCounter.__table__.c["last"]
    return (insert_(CaseCounter)
            .on_conflict_do_update(index_elements=["day"], set_={"last": last + 1})
            .returning(last))


# ON CONFLICT DO NOTHING: of two concurrent creates with one key, the second waits for the
# first and then finds its case instead of failing.
@prebuilt
def _insert_case(insert_):
    return (insert_(Case).on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(Case)
            .execution_options(populate_existing=True))


async def _case_by_key(session: AsyncSession, key: str) -> Case | None:
    return (await session.exec(select(Case).where(Case.idempotency_key == key))).first()


async def create_case(
    session: AsyncSession, *, reporter_telegram_id: int, text: str, now: datetime,
    kind: str = RESIDENT, photos: Sequence[str] = (), latitude: float | None = None,
    longitude: float | None = None, address: str | None = None, out_of_area: bool = False,
    grid_code: str | None = None, suggestions: Sequence[tuple[str, float]] = (),
    model_version: str | None = None, idempotency_key: str | None = None,
    display_name: str = "", ref_prefix: str = "WC", timezone: str = "Asia/Shanghai",
    max_text_chars: int = 5000, origin: dict | None = None,
) -> Case:
    """A new case in status "submitted" with events "created" and "classified".

    The same idempotency_key twice returns the first case, so a double-tapped 确认提交 or a
    redelivered update never makes two cases. `origin` sets where a case came from other than
    the bot (channel, api_client_id, external_id, caller: models/open311.py).
    """
    if idempotency_key and (existing := await _case_by_key(session, idempotency_key)):
        return existing
    text = clean_text(text, field="问题描述", min_len=1, max_len=max_text_chars)
    if kind not in (RESIDENT, ENTERPRISE):
        raise InvalidInput(f"未知的诉求类型: {kind}")
    if grid_code is not None and await session.get(Grid, grid_code) is None:
        raise InvalidInput(f"未知网格: {grid_code}")
    ranked = sorted(((str(c), float(p)) for c, p in suggestions), key=lambda s: -s[1])
    reporter = await get_or_create_reporter(session, reporter_telegram_id, display_name,
                                            now=now)
    if kind == ENTERPRISE and reporter.enterprise_id is None:
        raise InvalidInput("请先登记企业信息（企业名称和统一社会信用代码）")

    ref = await _next_ref(session, now, ref_prefix, timezone)
    draft = Case(
        ref=ref, idempotency_key=idempotency_key, kind=kind, reporter_id=reporter.id,
        enterprise_id=reporter.enterprise_id if kind == ENTERPRISE else None, text=text,
        photos=list(photos), latitude=latitude, longitude=longitude,
        address=(address or None) and address[:300], out_of_area=out_of_area,
        grid_code=grid_code, suggested_department=ranked[0][0] if ranked else None,
        suggested_confidence=ranked[0][1] if ranked else None,
        suggestions=[list(s) for s in ranked], model_version=model_version, created_at=now,
        **(origin or {}),
    )
    case = (await session.exec(_insert_case(session), params=draft.model_dump(exclude={"id"}))
            ).scalars().one_or_none()
    if case is None:
        return await _case_by_key(session, idempotency_key)

    events = [_event_row(case.id, Actor.reporter(reporter_telegram_id), "created", now,
                         to_status=case.status,
                         details={"ref": ref, "kind": kind, "photos": len(case.photos)})]
    if ranked or model_version:
        events.append(_event_row(case.id, Actor.SYSTEM, "classified", now,
                                 details={"suggestions": case.suggestions,
                                          "model_version": model_version}))
    await _add_events(session, *events)
    return case


# ---------------------------------------------------------------- the one transition function


async def _fresh_case(session: AsyncSession, case_id: int) -> Case:
    case = await session.get(Case, case_id, populate_existing=True)
    if case is None:
        raise CaseNotFound("未找到该案件")
    return case


def _permit(actor: Actor, staff: Staff | None, permission: str, case: Case) -> None:
    """Raise NotPermitted unless the actor may do `permission` to `case` (system always may)."""
    if actor.kind == "system":
        return
    if actor.kind == "staff" and can(staff, permission, case):
        return
    raise NotPermitted("您没有权限对该案件执行此操作")


async def _authorize(session: AsyncSession, actor: Actor, permission: str, case: Case) -> None:
    staff = None
    if actor.kind == "staff" and actor.telegram_id is not None:
        staff = await get_staff(session, actor.telegram_id)
    _permit(actor, staff, permission, case)


async def _case_and_staff(session: AsyncSession, case_id: int, actor: Actor,
                          current: Case | None = None) -> tuple[Case, Staff | None]:
    """The fresh case and the acting staff member (if any) in one round trip."""
    if actor.kind != "staff" or actor.telegram_id is None:
        if current is not None and current.id == case_id:
            return current, None
        return await _fresh_case(session, case_id), None
    stmt = (select(Case, Staff)
            .outerjoin(Staff, and_(col(Staff.telegram_id) == actor.telegram_id,
                                   col(Staff.active).is_(True)))
            .where(col(Case.id) == case_id)
            .execution_options(populate_existing=True))
    row = (await session.exec(stmt)).first()
    if row is None:
        raise CaseNotFound("未找到该案件")
    return row[0], row[1]


async def _department(session: AsyncSession, code: str | None) -> Department | None:
    return await session.get(Department, code) if code else None


async def _effects(session: AsyncSession, action: str, case: Case, now: datetime,
                   rules: Rules, changes: dict) -> dict:
    """Column values an action sets besides status and version (times, deadlines, counters)."""
    values = dict(changes)
    if action in ("dispatch", "redispatch"):
        dept = await _department(session, values["department_code"])
        priority = values.get("priority", case.priority)
        sign_by, resolve_by = rules.deadlines(dept, priority, now)
        values.update(dispatched_at=now, signed_at=None, sign_by=sign_by,
                      resolve_by=resolve_by, **_FRESH_ALERTS)
    elif action == "sign":
        # The current deadline becomes resolve_by: its reminders start afresh.
        values.update(signed_at=now, **_FRESH_ALERTS)
    elif action == "return":
        values.update(department_code=None, dispatched_at=None, signed_at=None, sign_by=None,
                      resolve_by=None, **_FRESH_ALERTS)
    elif action == "extend":
        values.update(_FRESH_ALERTS)
    elif action == "set_priority" and case.dispatched_at is not None:
        dept = await _department(session, case.department_code)
        sign_by, resolve_by = rules.deadlines(dept, values["priority"], case.dispatched_at)
        values.update(resolve_by=resolve_by, **_FRESH_ALERTS)
        if case.status == DISPATCHED:
            values["sign_by"] = sign_by
    elif action == "resolve":
        values.update(resolved_at=now)
    elif action == "reopen":
        dept = await _department(session, case.department_code)
        sign_by, resolve_by = rules.deadlines(dept, case.priority, now)
        values.update(dispatched_at=now, signed_at=None, resolved_at=None, closed_at=None,
                      sign_by=sign_by, resolve_by=resolve_by, survey_sent_at=None,
                      survey_reminded_at=None, reopen_count=case.reopen_count + 1,
                      **_FRESH_ALERTS)
    elif action == "close":
        values.update(closed_at=now)
    elif action == "not_accept":
        # Nobody handles it any more: no department, no deadlines, no reminders.
        values.update(department_code=None, dispatched_at=None, signed_at=None, sign_by=None,
                      resolve_by=None, closed_at=now, **_FRESH_ALERTS)
    return values


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


async def transition(session: AsyncSession, case_id: int, action: str, actor: Actor,
                     now: datetime, *, rules: Rules, details: dict | None = None,
                     expected_version: int | None = None, permission: str | None = None,
                     current: Case | None = None, **changes: Any) -> Case:
    """Move a case by `action`; the one function every status change goes through.

    Checks TRANSITIONS (IllegalTransition / AlreadyDone), optionally the actor's permission and
    the version the caller saw (StaleVersion), then sets status, times and deadlines with
    UPDATE ... WHERE version = seen, so of two concurrent movers only one wins; the loser
    re-reads and gets AlreadyDone ("已被签收") or tries again if the move is still allowed.
    `current` is the case as this transaction last wrote it (saves re-reading it when a
    system move follows at once, e.g. dispatch right after create_case).
    """
    if action not in TRANSITIONS:
        raise IllegalTransition(f"未知操作: {action}")
    unknown = set(changes) - _CASE_COLUMNS
    if unknown or set(changes) & _PROTECTED:
        raise ValueError(f"transition() cannot set {sorted(set(changes) & _PROTECTED | unknown)}")
    for _ in range(_CAS_ATTEMPTS):
        case, staff = await _case_and_staff(session, case_id, actor, current)
        current = None  # a retry must read the row again
        to = target_status(action, case.status)
        if permission:
            _permit(actor, staff, permission, case)
        if expected_version is not None and case.version != expected_version:
            raise StaleVersion("该按钮已过期，请以最新消息为准")
        values = await _effects(session, action, case, now, rules, changes)
        event_details = {**_auto_details(case, values), **(details or {})}
        from_status, seen_version = case.status, case.version
        stmt = (update(Case)
                .where(col(Case.id) == case_id, col(Case.version) == seen_version)
                .values(status=to, version=seen_version + 1, **values)
                .returning(Case)
                .execution_options(populate_existing=True, synchronize_session=False))
        updated = (await session.exec(stmt)).scalars().one_or_none()
        if updated is None:
            if expected_version is not None:
                raise StaleVersion("该按钮已过期，请以最新消息为准")
            continue  # someone else moved the case first: look again
        await _add_event(session, case_id, actor, EVENT_OF_ACTION[action], now,
                         from_status=from_status, to_status=to, details=event_details)
        return updated
    raise IllegalTransition("案件正在被他人处理，请稍后再试")


# ---------------------------------------------------------------- convenience moves


async def _active_department(session: AsyncSession, code: str) -> Department:
    dept = await _department(session, code)
    if dept is None or not dept.active:
        raise InvalidInput(f"部门“{code}”不存在或已停用")
    return dept


def _check_priority(priority: str) -> str:
    if priority not in PRIORITIES:
        raise InvalidInput("紧急程度只能是“一般”或“紧急”")
    return priority


async def _record_label(session: AsyncSession, case: Case, label: str, actor: Actor,
                        now: datetime, *, previous: str | None) -> None:
    """Audit a staff choice of department; one that differs from the model's is training data."""
    if actor.kind != "staff":
        return
    if label == previous:
        await _add_event(session, case.id, actor, "confirmed", now, details={"department": label})
        return
    await _add_event(session, case.id, actor, "relabelled", now,
                     details={"from": previous, "to": label})
    if label != case.suggested_department:
        session.add(LabelCorrection(
            case_id=case.id, text=case.text, suggested_label=case.suggested_department,
            corrected_label=label, staff_telegram_id=actor.telegram_id,
            model_version=case.model_version, at=now))
        await session.flush()


async def send_to_triage(session: AsyncSession, case_id: int, now: datetime, *,
                         rules: Rules, current: Case | None = None) -> Case:
    """Low confidence: the case waits for a person in triage (分拨)."""
    return await transition(session, case_id, "to_triage", Actor.SYSTEM, now, rules=rules,
                            current=current)


async def dispatch(session: AsyncSession, case_id: int, department_code: str, actor: Actor,
                   now: datetime, *, rules: Rules, priority: str | None = None,
                   expected_version: int | None = None, current: Case | None = None) -> Case:
    """派单 from submitted/triage: sets the department, dispatched_at, sign_by and resolve_by."""
    await _active_department(session, department_code)
    changes: dict[str, Any] = {"department_code": department_code}
    if priority is not None:
        changes["priority"] = _check_priority(priority)
    case = await transition(session, case_id, "dispatch", actor, now, rules=rules,
                            permission="dispatch", expected_version=expected_version,
                            current=current, **changes)
    await _record_label(session, case, department_code, actor, now,
                        previous=case.suggested_department)
    return case


async def redispatch(session: AsyncSession, case_id: int, department_code: str, actor: Actor,
                     now: datetime, *, rules: Rules, expected_version: int | None = None) -> Case:
    """重新分派 by triage of a dispatched or signed case to another department."""
    await _active_department(session, department_code)
    previous = (await get_case(session, case_id)).department_code
    if previous == department_code:
        raise InvalidInput("案件已在该部门办理，无需重新分派")
    case = await transition(session, case_id, "redispatch", actor, now, rules=rules,
                            permission="redispatch", expected_version=expected_version,
                            department_code=department_code)
    await _record_label(session, case, department_code, actor, now, previous=previous)
    return case


async def sign_for(session: AsyncSession, case_id: int, actor: Actor, now: datetime, *,
                   rules: Rules, expected_version: int | None = None) -> Case:
    """签收 by staff of the case's department; a second signer gets AlreadyDone."""
    return await transition(session, case_id, "sign", actor, now, rules=rules,
                            permission="sign", expected_version=expected_version)


async def return_case(session: AsyncSession, case_id: int, actor: Actor, reason: str,
                      now: datetime, *, rules: Rules, expected_version: int | None = None) -> Case:
    """退回: not this department's business; the case goes back to triage with the reason."""
    reason = clean_text(reason, field="退回理由", min_len=2, max_len=500)
    return await transition(session, case_id, "return", actor, now, rules=rules,
                            permission="return", expected_version=expected_version,
                            details={"reason": reason})


async def add_progress_note(session: AsyncSession, case_id: int, actor: Actor, note: str,
                            now: datetime, *, rules: Rules) -> Case:
    note = clean_text(note, field="进展说明", min_len=1, max_len=1000)
    return await transition(session, case_id, "progress_note", actor, now, rules=rules,
                            permission="progress_note", details={"note": note})


async def resolve(session: AsyncSession, case_id: int, actor: Actor, result: str,
                  now: datetime, *, rules: Rules, photo: str | None = None,
                  expected_version: int | None = None) -> Case:
    """办结 with the result told to the reporter (and an optional photo file id)."""
    result = clean_text(result, field="办理结果", min_len=2, max_len=2000)
    return await transition(session, case_id, "resolve", actor, now, rules=rules,
                            permission="resolve", expected_version=expected_version,
                            resolution=result, resolution_photo=photo,
                            details={"result": result, "photo": bool(photo),
                                     # each 办结's photo stays in /case after a reopening
                                     **({"photo_file": photo} if photo else {})})


async def request_extension(session: AsyncSession, case_id: int, actor: Actor, reason: str,
                            new_resolve_by: datetime, now: datetime) -> ExtensionRequest:
    """申请延期 by the department; triage approves or rejects it with decide_extension."""
    reason = clean_text(reason, field="延期理由", min_len=2, max_len=500)
    case = await get_case(session, case_id)
    if case.status not in TRANSITIONS["extend"][0]:
        raise IllegalTransition("只有办理中的案件可以申请延期")
    await _authorize(session, actor, "request_extension", case)
    if case.resolve_by is not None and new_resolve_by <= case.resolve_by:
        raise InvalidInput("新的办结时限必须晚于当前时限")
    pending = await session.exec(select(ExtensionRequest).where(
        ExtensionRequest.case_id == case_id, ExtensionRequest.status == "pending"))
    if pending.first() is not None:
        raise AlreadyDone("该案件已有待审批的延期申请")
    request = ExtensionRequest(case_id=case_id, requested_by=actor.telegram_id or 0,
                               reason=reason, new_resolve_by=new_resolve_by, created_at=now)
    session.add(request)
    await session.flush()
    await _add_event(session, case_id, actor, "extension_requested", now,
                     details={"request_id": request.id, "reason": reason,
                              "new_resolve_by": _jsonable(new_resolve_by)})
    return request


async def decide_extension(session: AsyncSession, request_id: int, actor: Actor, approve: bool,
                           now: datetime, *, rules: Rules) -> Case:
    """Approve (resolve_by moves, reminders start afresh) or reject a pending extension."""
    request = await session.get(ExtensionRequest, request_id, populate_existing=True)
    if request is None:
        raise CaseNotFound("未找到该延期申请")
    case = await get_case(session, request.case_id)
    await _authorize(session, actor, "decide_extension", case)
    if request.status != "pending":
        raise AlreadyDone("该延期申请已处理")
    if approve:
        target_status("extend", case.status)  # refuse before writing anything
    # Compare-and-set on the request first: of two triage staff deciding at once, only one
    # gets past here, so a request is never applied twice.
    decided = await session.exec(
        update(ExtensionRequest)
        .where(col(ExtensionRequest.id) == request_id, col(ExtensionRequest.status) == "pending")
        .values(status="approved" if approve else "rejected", decided_by=actor.telegram_id,
                decided_at=now)
        .execution_options(synchronize_session=False))
    if decided.rowcount != 1:
        raise AlreadyDone("该延期申请已处理")
    if approve:
        case = await transition(
            session, case.id, "extend", actor, now, rules=rules,
            permission="decide_extension", resolve_by=request.new_resolve_by,
            details={"request_id": request.id, "reason": request.reason,
                     "old_resolve_by": _jsonable(case.resolve_by)})
    else:
        await _add_event(session, case.id, actor, "extension_rejected", now,
                         details={"request_id": request.id})
    await session.refresh(request)
    return case


async def set_priority(session: AsyncSession, case_id: int, priority: str, actor: Actor,
                       now: datetime, *, rules: Rules, expected_version: int | None = None
                       ) -> Case:
    """Change priority; a dispatched case's deadlines are recounted from its dispatch."""
    _check_priority(priority)
    return await transition(session, case_id, "set_priority", actor, now, rules=rules,
                            permission="set_priority", expected_version=expected_version,
                            priority=priority)


async def _require_reporter(session: AsyncSession, actor: Actor, case: Case) -> None:
    reporter = await session.get(Reporter, case.reporter_id)
    if actor.kind != "reporter" or reporter is None or reporter.telegram_id != actor.telegram_id:
        raise NotPermitted("只有反映人本人可以评价该案件")


async def rate(session: AsyncSession, case_id: int, actor: Actor, rating: str,
               comment: str | None, now: datetime, *, rules: Rules,
               expected_version: int | None = None) -> Case:
    """回访 answer by the reporter: satisfied/basic close the case, unsatisfied reopens it."""
    if rating not in RATINGS:
        raise InvalidInput("请选择“满意”“基本满意”或“不满意”")
    comment = (comment or "").strip()[:1000] or None
    case = await get_case(session, case_id)
    await _require_reporter(session, actor, case)
    case = await transition(session, case_id, "rate", actor, now, rules=rules,
                            expected_version=expected_version, satisfaction=rating,
                            satisfaction_comment=comment,
                            details={"rating": rating, "comment": comment})
    if rating == UNSATISFIED:
        return await transition(session, case_id, "reopen", actor, now, rules=rules,
                                details={"comment": comment})
    return await transition(session, case_id, "close", actor, now, rules=rules)


async def close_unrated(session: AsyncSession, case_id: int, now: datetime, *,
                        rules: Rules) -> Case:
    """No answer to 回访 in time: closed as 未评价."""
    return await transition(session, case_id, "close", Actor.SYSTEM, now, rules=rules,
                            satisfaction=UNRATED, details={"rating": UNRATED})


async def merge(session: AsyncSession, case_id: int, into_case_id: int, actor: Actor,
                now: datetime, *, rules: Rules, expected_version: int | None = None) -> Case:
    """合并 a duplicate into another open case, which carries on for both."""
    if case_id == into_case_id:
        raise InvalidInput("不能将案件合并到自身")
    target = await get_case(session, into_case_id)
    if target.status not in TRANSITIONS["merge"][0]:
        # The target is what the caller chose (e.g. a typed reference): a bad input.
        raise InvalidInput(f"{target.ref} 当前为“{STATUS_NAMES.get(target.status, target.status)}”，"
                           "只能合并到尚未办结的案件")
    return await transition(session, case_id, "merge", actor, now, rules=rules,
                            permission="merge", expected_version=expected_version,
                            merged_into_id=into_case_id,
                            details={"into": target.ref})


async def not_accept(session: AsyncSession, case_id: int, actor: Actor, now: datetime, *,
                     rules: Rules, category: str, note: str | None = None,
                     expected_version: int | None = None) -> Case:
    """不予受理 by triage: the case ends with the reason the reporter is told.

    `category` is a key of NOT_ACCEPTED_REASONS; "other" needs the reason in `note`. The event
    keeps both: details["reason"] is the words shown to people, details["category"] the key.
    """
    if category not in NOT_ACCEPTED_REASONS:
        raise InvalidInput("请选择不予受理的原因")
    if category == NOT_ACCEPTED_OTHER or note:
        reason = clean_text(note, field="不予受理理由", min_len=2, max_len=500)
    else:
        reason = NOT_ACCEPTED_REASONS[category]
    return await transition(session, case_id, "not_accept", actor, now, rules=rules,
                            permission="not_accept", expected_version=expected_version,
                            details={"category": category, "reason": reason})


# ---------------------------------------------------------------- reading


async def get_case(session: AsyncSession, case_id: int) -> Case:
    """The case (fresh from the database); raises CaseNotFound."""
    return await _fresh_case(session, case_id)


def normalize_ref(ref: str) -> str:
    return (ref or "").strip().upper()


async def get_case_by_ref(session: AsyncSession, ref: str) -> Case | None:
    result = await session.exec(select(Case).where(Case.ref == normalize_ref(ref)))
    return result.first()


async def case_for_viewer(session: AsyncSession, ref: str, viewer_telegram_id: int
                          ) -> Case | None:
    """The case only if the viewer reported it (or is linked to its enterprise) or is staff
    allowed to view it (models.permissions); otherwise None, as if it did not exist."""
    case = await get_case_by_ref(session, ref)
    if case is None:
        return None
    viewer = await _reporter_by_tid(session, viewer_telegram_id)
    if viewer is not None and (viewer.id == case.reporter_id or (
            case.enterprise_id is not None and viewer.enterprise_id == case.enterprise_id)):
        return case
    if can(await get_staff(session, viewer_telegram_id), "view", case):
        return case
    return None


async def cases_of_reporter(session: AsyncSession, telegram_id: int, limit: int = 10,
                            kind: str | None = None) -> list[Case]:
    """The reporter's own cases, newest first."""
    stmt = (select(Case).join(Reporter, col(Reporter.id) == col(Case.reporter_id))
            .where(Reporter.telegram_id == telegram_id))
    if kind is not None:
        stmt = stmt.where(Case.kind == kind)
    stmt = stmt.order_by(col(Case.created_at).desc(), col(Case.id).desc()).limit(limit)
    return list((await session.exec(stmt)).all())


async def case_events(session: AsyncSession, case_id: int) -> list[CaseEvent]:
    """The audit trail, oldest first."""
    stmt = (select(CaseEvent).where(CaseEvent.case_id == case_id)
            .order_by(col(CaseEvent.at), col(CaseEvent.id)))
    return list((await session.exec(stmt)).all())


async def get_staff(session: AsyncSession, telegram_id: int) -> Staff | None:
    """The active staff member with this Telegram id, or None."""
    result = await session.exec(
        select(Staff).where(Staff.telegram_id == telegram_id, col(Staff.active).is_(True)))
    return result.first()


async def staff_of_department(session: AsyncSession, code: str) -> list[Staff]:
    stmt = (select(Staff).where(Staff.department_code == code, Staff.role == "department",
                                col(Staff.active).is_(True)).order_by(col(Staff.id)))
    return list((await session.exec(stmt)).all())


async def departments(session: AsyncSession, active_only: bool = True) -> list[Department]:
    stmt = select(Department)
    if active_only:
        stmt = stmt.where(col(Department.active).is_(True))
    return list((await session.exec(stmt.order_by(col(Department.code)))).all())


async def get_department(session: AsyncSession, code: str) -> Department | None:
    return await _department(session, code)


async def corrections_for_training(session: AsyncSession) -> list[tuple[str, str]]:
    """(text, corrected label) per corrected case, the latest correction winning."""
    stmt = select(LabelCorrection.case_id, LabelCorrection.text,
                  LabelCorrection.corrected_label).order_by(col(LabelCorrection.id))
    latest: dict[int, tuple[str, str]] = {}
    for case_id, text, label in (await session.exec(stmt)).all():
        latest[case_id] = (text, label)
    return list(latest.values())


async def count_cases(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(Case))).one()

