"""Statistics: every figure the dashboard (大屏), the /stats command and the benchmarks show.

One place for each rule. A period is half-open [start, end) on Case.created_at (naive UTC);
merged duplicates (status "merged") are left out of every figure.

- 办结率 completion_rate = cases resolved or closed ÷ cases dispatched (dispatched_at set).
- 按时办结率 on_time_rate = resolved cases with resolved_at ≤ resolve_by ÷ resolved cases.
- 满意率 satisfaction_rate = (satisfied + basic) ÷ rated; 未评价 (unrated) is not counted.
- 采纳率 acceptance_rate = dispatched to the suggested department ÷ dispatched with a suggestion.
- 平均办理时长 avg_handling_hours = mean of resolved_at − dispatched_at over resolved cases.
- 不予受理 (status "not_accepted") cases count as created (and in by_status) but in no rate:
  triage refused them, no department closed them. They are not 办结 (not in DONE_STATUSES),
  and the lifecycle's not_accept clears dispatched_at and the department, so they are in no
  办结率 / 按时办结率 / 满意率 / 采纳率 denominator nor in any department's figures.
- open / yellow / red describe the store *now*, whatever the period: open = submitted, triage,
  dispatched or signed. A case's light is models.deadlines.case_light() (built on
  models.deadlines.traffic_light); light_sql() counts the same thing in SQL without loading
  rows, and tests check that the two agree.

Rates are floats in [0, 1], or None when nothing was counted (shown as "—").
All aggregation runs in SQL (GROUP BY with CASE WHEN) so a million cases stay fast.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, and_, case, extract, func, literal, literal_column, not_, or_
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import learning
from models.deadlines import GREEN, LIGHT_NAMES, RED, YELLOW, Rules, WorkCalendar, case_light
from models.engine import session_scope
from models.lifecycle import (
    KIND_SHORT_NAMES,
    LIT_STATUSES,
    PART_STATUS_NAMES,
    RUNNING_DEADLINE,
    STATUS_NAMES,
    light_start_sql,
    running_deadline,
    running_deadline_sql,
)
from models.parts import open_hard_cases
from models.tables import (
    BASIC,
    CLOSED,
    DISPATCHED,
    ENTERPRISE,
    MERGED,
    OPEN_STATUSES,
    RESOLVED,
    SATISFIED,
    UNRATED,
    UNSATISFIED,
    URGENT,
    Case,
    CaseFollower,
    Department,
    Enterprise,
    Grid,
    LabelCorrection,
    Reporter,
)

DONE_STATUSES = (RESOLVED, CLOSED)  # 办结 by a department (不予受理 is not one of them)
RATED = (SATISFIED, BASIC, UNSATISFIED)
CONTENT = (SATISFIED, BASIC)  # counted as satisfied in 满意率

SATISFACTION_NAMES = {
    SATISFIED: "满意",
    BASIC: "基本满意",
    UNSATISFIED: "不满意",
    UNRATED: "未评价",
}
PRIORITY_NAMES = {URGENT: "紧急"}
NO_DEPARTMENT = "未派单"
NO_GRID = "未关联网格"
LEARNING_WEEKS = 12  # how far back the dashboard's learning curve goes


# ---------------------------------------------------------------- lights


def department_light(red: int, yellow: int) -> str:
    """A department's light in the league table: its worst case's light."""
    return RED if red else YELLOW if yellow else GREEN


# ---------------------------------------------------------------- periods in district time


def local_days_bounds(first: date, last: date, calendar: WorkCalendar) -> tuple[datetime, datetime]:
    """UTC bounds [start, end) of the district-local dates first..last (inclusive)."""
    after = last + timedelta(days=1)
    start = datetime(first.year, first.month, first.day, tzinfo=calendar.tz)
    end = datetime(after.year, after.month, after.day, tzinfo=calendar.tz)
    return calendar.to_utc(start), calendar.to_utc(end)


def today_bounds(now: datetime, calendar: WorkCalendar) -> tuple[datetime, datetime]:
    """Today (district time) as UTC bounds."""
    today = calendar.to_local(now).date()
    return local_days_bounds(today, today, calendar)


def month_bounds(now: datetime, calendar: WorkCalendar) -> tuple[datetime, datetime]:
    """This calendar month (district time) as UTC bounds, to the end of the month."""
    today = calendar.to_local(now).date()
    first = today.replace(day=1)
    next_first = (first + timedelta(days=32)).replace(day=1)
    return local_days_bounds(first, next_first - timedelta(days=1), calendar)


def last_days_bounds(now: datetime, calendar: WorkCalendar, days: int) -> tuple[datetime, datetime]:
    """The last `days` district-local days including today, as UTC bounds."""
    today = calendar.to_local(now).date()
    return local_days_bounds(today - timedelta(days=days - 1), today, calendar)


# ---------------------------------------------------------------- tallies


@dataclass
class Tally:
    """Counts behind the figures of one group of cases; groups add up with `+`."""

    created: int = 0
    dispatched: int = 0
    done: int = 0  # resolved or closed (办结)
    timed: int = 0  # done with resolved_at and resolve_by: the on-time denominator
    on_time: int = 0
    handled: int = 0  # done with dispatched_at and resolved_at: the handling-time denominator
    handling_hours: float = 0.0  # summed
    rated: int = 0
    content: int = 0  # satisfied + basic
    suggested: int = 0  # dispatched, with a classifier suggestion
    accepted: int = 0  # ... to the suggested department
    open: int = 0
    yellow: int = 0
    red: int = 0
    by_status: Counter = field(default_factory=Counter)

    def __add__(self, other: Tally) -> Tally:
        summed = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.name != "by_status"
        }
        return Tally(**summed, by_status=self.by_status + other.by_status)

    def figures(self) -> dict[str, Any]:
        """The counts plus the derived rates (see the module docstring)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "by_status"}
        out["by_status"] = dict(self.by_status)
        out["completion_rate"] = _rate(self.done, self.dispatched)
        out["on_time_rate"] = _rate(self.on_time, self.timed)
        out["satisfaction_rate"] = _rate(self.content, self.rated)
        out["acceptance_rate"] = _rate(self.accepted, self.suggested)
        out["avg_handling_hours"] = (
            round(self.handling_hours / self.handled, 1) if self.handled else None
        )
        out["handling_hours"] = round(self.handling_hours, 3)
        return out


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _total(tallies: dict[Any, Tally]) -> Tally:
    total = Tally()
    for tally in tallies.values():
        total = total + tally
    return total


def _regroup(tallies: dict[tuple, Tally], part: int) -> dict[Any, Tally]:
    """Tallies summed by one part of their key (0 = department, 1 = kind, 2 = model version)."""
    grouped: dict[Any, Tally] = {}
    for key, tally in tallies.items():
        grouped[key[part]] = grouped.get(key[part], Tally()) + tally
    return grouped


# ---------------------------------------------------------------- SQL building blocks


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _millis(expr, dialect: str):
    """A timestamp as a number of milliseconds (exact to the ms), in the dialect's own terms."""
    if dialect == "sqlite":
        return func.round(func.julianday(expr) * 86400000.0)
    return extract("epoch", expr) * 1000


def _count_if(condition):
    return func.sum(case((condition, 1), else_=0))


def light_sql(now: datetime, yellow_ratio: float, dialect: str):
    """(is_red, is_yellow) SQL conditions mirroring deadlines.case_light()/traffic_light() exactly."""
    ratio = float(yellow_ratio)
    if not 0 < ratio <= 1:
        raise ValueError(f"yellow_ratio must be in (0, 1], got {yellow_ratio!r}")
    now_v = literal(now, DateTime)
    lit = Case.status.in_(LIT_STATUSES)
    start = light_start_sql()  # the dispatch, or the 办结 for 核查 (models/lifecycle.py)
    deadline = running_deadline_sql()
    # traffic_light: red only past the deadline; a window of no length is yellow until then.
    is_red = and_(lit, now_v > deadline)
    # Yellow once (now − start) ≥ ratio × (deadline − start); repr(float) is a plain literal.
    used = _millis(now_v, dialect) - _millis(start, dialect)
    allowed = _millis(deadline, dialect) - _millis(start, dialect)
    used_enough = used >= literal_column(repr(ratio)) * allowed
    is_yellow = and_(lit, not_(is_red), or_(deadline <= start, used_enough))
    return is_red, is_yellow


def _filters(department: str | None, kind: str | None) -> list:
    conditions = [Case.status != MERGED]
    if department is not None:
        conditions.append(Case.department_code == department)
    if kind is not None:
        conditions.append(Case.kind == kind)
    return conditions


def period_aggregates(dialect: str) -> list:
    """The aggregate columns behind a Tally of created cases, in period_tally()'s order.

    Put them after (status, count()) in a query grouped by status and anything else."""
    done = Case.status.in_(DONE_STATUSES)
    hours = (_millis(Case.resolved_at, dialect) - _millis(Case.dispatched_at, dialect)) / 3600000.0
    handled = and_(done, Case.resolved_at.is_not(None), Case.dispatched_at.is_not(None))
    dispatched = Case.dispatched_at.is_not(None)
    with_suggestion = and_(dispatched, Case.suggested_department.is_not(None))
    return [
        _count_if(dispatched),
        _count_if(and_(done, Case.resolved_at.is_not(None), Case.resolve_by.is_not(None))),
        _count_if(and_(done, Case.resolved_at <= Case.resolve_by)),
        _count_if(handled),
        func.sum(case((handled, hours), else_=0.0)),
        _count_if(Case.satisfaction.in_(RATED)),
        _count_if(Case.satisfaction.in_(CONTENT)),
        _count_if(with_suggestion),
        _count_if(and_(with_suggestion, Case.department_code == Case.suggested_department)),
    ]


# The Tally fields that period_aggregates() computes, in its order.
PERIOD_FIELDS = (
    "dispatched",
    "timed",
    "on_time",
    "handled",
    "handling_hours",
    "rated",
    "content",
    "suggested",
    "accepted",
)


def period_tally(status: str, n: int, aggregates) -> Tally:
    """The Tally of `n` cases in `status` from the values of period_aggregates()."""
    counts = {name: value or 0 for name, value in zip(PERIOD_FIELDS, aggregates, strict=True)}
    counts = {name: float(v) if name == "handling_hours" else int(v) for name, v in counts.items()}
    return Tally(
        created=n,
        done=n if status in DONE_STATUSES else 0,
        by_status=Counter({status: n}),
        **counts,
    )


async def _period_tallies(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    *,
    department: str | None = None,
    kind: str | None = None,
) -> dict[tuple, Tally]:
    """Tallies of cases created in [start, end), keyed (department_code, kind, model_version)."""
    stmt = (
        select(
            Case.department_code,
            Case.kind,
            Case.model_version,
            Case.status,
            func.count(),
            *period_aggregates(_dialect(session)),
        )
        .where(Case.created_at >= start, Case.created_at < end, *_filters(department, kind))
        .group_by(Case.department_code, Case.kind, Case.model_version, Case.status)
    )
    tallies: dict[tuple, Tally] = {}
    for dept, kind_, version, status, n, *aggregates in await session.exec(stmt):
        tally = period_tally(status, n, aggregates)
        key = (dept, kind_, version)
        tallies[key] = tallies[key] + tally if key in tallies else tally
    return tallies


async def _open_tallies(
    session: AsyncSession,
    now: datetime,
    yellow_ratio: float,
    *,
    department: str | None = None,
    kind: str | None = None,
) -> dict[tuple, Tally]:
    """Open cases now with their yellow and red counts, keyed (department_code, kind)."""
    is_red, is_yellow = light_sql(now, yellow_ratio, _dialect(session))
    stmt = (
        select(
            Case.kind, Case.department_code, func.count(), _count_if(is_yellow), _count_if(is_red)
        )
        .where(Case.status.in_(OPEN_STATUSES), *_filters(department, kind))
        # kind first: grouping by department_code first tempts SQLite into walking the whole
        # (department_code, status) index instead of seeking the few open cases by status.
        .group_by(Case.kind, Case.department_code)
    )
    return {
        (dept, kind_): Tally(open=n, yellow=int(yellow or 0), red=int(red or 0))
        for kind_, dept, n, yellow, red in await session.exec(stmt)
    }


# ---------------------------------------------------------------- public figures


async def summary(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    rules: Rules,
    department: str | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """All figures (Tally.figures) for cases created in [start, end), plus open/yellow/red now."""
    period = await _period_tallies(session, start, end, department=department, kind=kind)
    current = await _open_tallies(
        session, now, rules.yellow_ratio, department=department, kind=kind
    )
    return (_total(period) + _total(current)).figures()


async def department_names(session: AsyncSession) -> dict[str, str]:
    """code → name of every department, inactive ones too (old cases refer to them)."""
    return dict((await session.exec(select(Department.code, Department.name))).all())


def _league(
    period: dict[tuple, Tally], current: dict[tuple, Tally], departments: list[Department]
) -> list[dict[str, Any]]:
    """League table rows, worst first: most red, then most yellow, then lowest on-time rate."""
    codes = {d.code for d in departments if d.active}
    codes |= {key[0] for key in current if key[0] is not None}
    names = {d.code: d.name for d in departments}
    period_by, current_by = _regroup(period, 0), _regroup(current, 0)
    rows = []
    for code in codes:
        tally = period_by.get(code, Tally()) + current_by.get(code, Tally())
        row = tally.figures()
        row.update(
            code=code, name=names.get(code, code), light=department_light(tally.red, tally.yellow)
        )
        rows.append(row)

    return sorted(rows, key=worst_first)


def worst_first(row: dict[str, Any]) -> tuple:
    """League order: most red, then most yellow, then lowest on-time and satisfaction rates."""
    on_time = row["on_time_rate"] if row["on_time_rate"] is not None else 1.0
    content = row["satisfaction_rate"] if row["satisfaction_rate"] is not None else 1.0
    return (-row["red"], -row["yellow"], on_time, content, -row["open"], row["code"])


async def by_department(
    session: AsyncSession, *, start: datetime, end: datetime, now: datetime, rules: Rules
) -> list[dict[str, Any]]:
    """The department league table (红黄灯排行): figures per department, worst first."""
    period = await _period_tallies(session, start, end)
    current = await _open_tallies(session, now, rules.yellow_ratio)
    departments = list((await session.exec(select(Department))).all())
    return _league(period, current, departments)


def _acceptance_by_version(period: dict[tuple, Tally]) -> list[dict[str, Any]]:
    by_version = _regroup(period, 2)
    rows = []
    for version in sorted((v for v in by_version if v is not None), reverse=True):
        tally = by_version[version]
        rows.append(
            {
                "model_version": version,
                "suggested": tally.suggested,
                "accepted": tally.accepted,
                "acceptance_rate": _rate(tally.accepted, tally.suggested),
            }
        )
    return rows


async def latest_model_version(session: AsyncSession) -> str | None:
    """The classifier model version on the most recent case that has one."""
    stmt = (
        select(Case.model_version)
        .where(Case.model_version.is_not(None))
        .order_by(Case.created_at.desc())
        .limit(1)
    )
    return (await session.exec(stmt)).first()


async def recent_corrections(session: AsyncSession, limit: int = 10) -> list[dict[str, Any]]:
    """The latest staff corrections of the classifier (newest first), without the case text."""
    stmt = (
        select(
            LabelCorrection.at,
            Case.ref,
            LabelCorrection.suggested_label,
            LabelCorrection.corrected_label,
            LabelCorrection.model_version,
        )
        .join(Case, Case.id == LabelCorrection.case_id)
        .order_by(LabelCorrection.id.desc())
        .limit(limit)  # ids grow with time: no sort needed
    )
    return [
        {
            "at": at,
            "ref": ref,
            "suggested": suggested,
            "corrected": corrected,
            "model_version": version,
        }
        for at, ref, suggested, corrected, version in await session.exec(stmt)
    ]


async def classifier_health(
    session: AsyncSession, *, start: datetime, end: datetime, recent: int = 10
) -> dict[str, Any]:
    """采纳率 overall and per model version, recent corrections, the current model version."""
    period = await _period_tallies(session, start, end)
    return _classifier_summary(
        period, await latest_model_version(session), await recent_corrections(session, recent)
    )


def _classifier_summary(
    period: dict[tuple, Tally], version: str | None, recent: list[dict[str, Any]]
) -> dict[str, Any]:
    total = _total(period)
    return {
        "acceptance_rate": _rate(total.accepted, total.suggested),
        "suggested": total.suggested,
        "accepted": total.accepted,
        "corrected": total.suggested - total.accepted,
        "by_version": _acceptance_by_version(period),
        "model_version": version,
        "recent_corrections": recent,
    }


async def daily_counts(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    calendar: WorkCalendar,
    department: str | None = None,
) -> dict[str, Any]:
    """Cases created per district-local day and department: {"days": [...], "series": {...}}.

    Series are keyed by department code (None = not dispatched yet); `start` should be a
    local midnight (see local_days_bounds). The UTC offset at `start` is used for the whole
    range, which is exact for zones without daylight saving such as Asia/Shanghai.
    """
    offset = calendar.to_local(start).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    if _dialect(session) == "sqlite":
        day = func.date(Case.created_at, f"{minutes:+d} minutes")
    else:
        shifted = Case.created_at + literal_column(f"interval '{minutes} minutes'")
        day = func.to_char(shifted, "YYYY-MM-DD")
    stmt = (
        select(day, Case.department_code, func.count())
        .where(Case.created_at >= start, Case.created_at < end, *_filters(department, None))
        .group_by(day, Case.department_code)
    )
    first = calendar.to_local(start).date()
    last = calendar.to_local(end - timedelta(microseconds=1)).date()
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    index = {d: i for i, d in enumerate(days)}
    series: dict[str | None, list[int]] = {}
    for day_value, dept, n in await session.exec(stmt):
        counts = series.setdefault(dept, [0] * len(days))
        if str(day_value) in index:
            counts[index[str(day_value)]] += n
    return {"days": days, "series": series}


def _ancestor_at(code: str, level: str, grids: dict[str, Grid]) -> str:
    """The grid `code` rolled up to `level` (itself when it is at that level or above it)."""
    node = grids.get(code)
    while node is not None:
        if node.level == level:
            return node.code
        node = grids.get(node.parent_code) if node.parent_code else None
    return code


async def by_grid(
    session: AsyncSession, *, start: datetime, end: datetime, level: str = "community"
) -> list[dict[str, Any]]:
    """Cases created in [start, end) per grid rolled up to `level` (社区/村 by default), most first.

    Cases without a grid are counted under code None (未关联网格).
    """
    stmt = (
        select(Case.grid_code, func.count())
        .where(Case.created_at >= start, Case.created_at < end, Case.status != MERGED)
        .group_by(Case.grid_code)
    )
    rows = (await session.exec(stmt)).all()
    grids = {g.code: g for g in (await session.exec(select(Grid))).all()}
    counts: Counter = Counter()
    for code, n in rows:
        counts[_ancestor_at(code, level, grids) if code else None] += n
    return [
        {"code": code, "name": grids[code].name if code in grids else (code or NO_GRID), "count": n}
        for code, n in sorted(counts.items(), key=lambda item: (-item[1], item[0] or "~"))
    ]


async def repeat_reports(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    level: str = "community",
    top: int = 5,
) -> dict[str, Any]:
    """重复反映 in [start, end): reports (every case opened, merged ones included, plus every
    关注该案件) against distinct cases (those not merged), and the grids (rolled up to `level`)
    where the same problem was reported most often: a merged case or a follower counts one
    repeat where the case it joined is."""
    created = (
        await session.exec(
            select(func.count())
            .select_from(Case)
            .where(Case.created_at >= start, Case.created_at < end)
        )
    ).one()
    merged = (
        await session.exec(
            select(func.count())
            .select_from(Case)
            .where(Case.created_at >= start, Case.created_at < end, Case.status == MERGED)
        )
    ).one()
    kept = Case.__table__.alias("kept")
    repeats = (
        await session.exec(
            select(kept.c.grid_code, func.count())
            .select_from(Case.__table__.join(kept, kept.c.id == Case.merged_into_id))
            .where(Case.created_at >= start, Case.created_at < end, Case.status == MERGED)
            .group_by(kept.c.grid_code)
        )
    ).all()
    following = (
        await session.exec(
            select(Case.grid_code, func.count())
            .select_from(CaseFollower)
            .join(Case, Case.id == CaseFollower.case_id)
            .where(
                CaseFollower.at >= start,
                CaseFollower.at < end,
                CaseFollower.merged_from_id.is_(None),
            )  # a merged case counts once, above
            .group_by(Case.grid_code)
        )
    ).all()
    grids = {g.code: g for g in (await session.exec(select(Grid))).all()}
    counts: Counter = Counter()
    for code, n in [*repeats, *following]:
        counts[_ancestor_at(code, level, grids) if code else None] += n
    return {
        "reports": created + sum(n for _, n in following),
        "distinct": created - merged,
        "hotspots": [
            {
                "code": code,
                "name": grids[code].name if code in grids else (code or NO_GRID),
                "repeats": n,
            }
            for code, n in sorted(counts.items(), key=lambda i: (-i[1], i[0] or "~"))[:top]
        ],
    }


async def learning_curve(session: AsyncSession, *, since: datetime) -> list[dict[str, Any]]:
    """The share of suggestions staff kept, per week (Monday) and model version, oldest first:
    is the learning loop making routing better? (models/learning.acceptance_by_week)"""
    return [
        {
            "week": week.isoformat(),
            "model_version": version,
            "reviewed": a.reviewed,
            "accepted": a.accepted,
            "acceptance_rate": a.rate,
        }
        for week, version, a in await learning.acceptance_by_week(session, since)
    ]


async def red_cases(
    session: AsyncSession, *, now: datetime, rules: Rules, limit: int = 20
) -> list[dict[str, Any]]:
    """Red cases, most overdue first: reference, department, stage, hours overdue."""
    deadline = running_deadline_sql()
    stmt = (
        select(Case)
        .where(
            or_(
                *(
                    and_(Case.status == status, getattr(Case, name) < now)
                    for status, name in RUNNING_DEADLINE.items()
                )
            )
        )
        .order_by(deadline)
        .limit(limit)
    )
    names = await department_names(session)
    out = []
    for c in await session.exec(stmt):
        if case_light(c, now, rules) != RED:
            continue  # case_light() has the last word on what is red
        due = running_deadline(c)
        out.append(
            {
                "ref": c.ref,
                "department_code": c.department_code,
                "department": names.get(c.department_code, c.department_code or ""),
                "stage": "签收超时" if c.status == DISPATCHED else "办理超时",
                "priority": c.priority,
                "deadline": due,
                "hours_overdue": round((now - due).total_seconds() / 3600, 1),
            }
        )
    return out


async def hard_cases(
    session: AsyncSession, *, now: datetime, rules: Rules, limit: int = 20
) -> dict[str, Any]:
    """攻坚哨 as the district counts them (今年以来 N 个) and the open ones, oldest first, each
    with its lead and every part's state and light (no personal data)."""
    cal = rules.calendar
    year = cal.to_local(now).year
    start, end = local_days_bounds(date(year, 1, 1), date(year, 12, 31), cal)
    this_year = (
        await session.exec(
            select(func.count())
            .select_from(Case)
            .where(Case.is_hard, Case.hard_at >= start, Case.hard_at < end)
        )
    ).one()
    open_count = (
        await session.exec(
            select(func.count())
            .select_from(Case)
            .where(Case.is_hard, Case.status.in_(OPEN_STATUSES))
        )
    ).one()
    names = await department_names(session)
    listed = []
    for c, case_parts in await open_hard_cases(session, limit):
        listed.append(
            {
                "ref": c.ref,
                "lead": names.get(c.department_code, c.department_code or ""),
                "status": STATUS_NAMES.get(c.status, c.status),
                "light": case_light(c, now, rules),
                "parts": [
                    {
                        "department": names.get(p.department_code, p.department_code),
                        "status": PART_STATUS_NAMES.get(p.status, p.status),
                        "light": case_light(p, now, rules),
                    }
                    for p in case_parts
                ],
            }
        )
    return {"year": this_year, "open": open_count, "cases": listed}


# ---------------------------------------------------------------- the dashboard in one call


async def dashboard_data(
    engine: AsyncEngine,
    *,
    now: datetime,
    rules: Rules,
    trend_days: int = 30,
    red_limit: int = 20,
    corrections: int = 10,
) -> dict[str, Any]:
    """Everything the dashboard shows (no personal data), JSON-ready apart from datetimes.

    The independent queries run at once, each in its own read-only session (connection), so
    the answer takes as long as the slowest query rather than all of them added up.
    """
    cal = rules.calendar
    month = month_bounds(now, cal)
    today = today_bounds(now, cal)
    trend_start = last_days_bounds(now, cal, trend_days)[0]

    async def read(query, *args, **kwargs):
        async with session_scope(engine) as session:
            return await query(session, *args, **kwargs)

    async def reference(session: AsyncSession):
        departments = list((await session.exec(select(Department))).all())
        return departments, await _period_tallies(session, *today)

    (
        period,
        current,
        (departments, today_tallies),
        trend,
        grids,
        reds,
        recent,
        version,
        hard,
        repeats,
        curve,
    ) = await asyncio.gather(
        read(_period_tallies, *month),
        read(_open_tallies, now, rules.yellow_ratio),
        read(reference),
        read(daily_counts, start=trend_start, end=today[1], calendar=cal),
        read(by_grid, start=month[0], end=month[1]),
        read(red_cases, now=now, rules=rules, limit=red_limit),
        read(recent_corrections, corrections),
        read(latest_model_version),
        read(hard_cases, now=now, rules=rules, limit=red_limit),
        read(repeat_reports, start=month[0], end=month[1]),
        read(learning_curve, since=now - timedelta(weeks=LEARNING_WEEKS)),
    )
    month_total = _total(period)
    overall = month_total + _total(current)
    enterprise = _regroup(period, 1).get(ENTERPRISE, Tally())
    names = {d.code: d.name for d in departments}
    return {
        "now": now,
        "period": {"start": month[0], "end": month[1]},
        "headline": {
            "today": _total(today_tallies).created,
            "month": month_total.created,
            "open": overall.open,
            "yellow": overall.yellow,
            "red": overall.red,
            "completion_rate": _rate(month_total.done, month_total.dispatched),
            "on_time_rate": _rate(month_total.on_time, month_total.timed),
            "satisfaction_rate": _rate(month_total.content, month_total.rated),
            "enterprise": enterprise.created,
            "enterprise_completion_rate": _rate(enterprise.done, enterprise.dispatched),
        },
        "departments": _league(period, current, departments),
        "trend": {
            "days": trend["days"],
            "series": [
                {
                    "code": code,
                    "name": names.get(code, code) if code else NO_DEPARTMENT,
                    "counts": counts,
                }
                for code, counts in sorted(trend["series"].items(), key=lambda i: i[0] or "~")
            ],
        },
        "grids": grids,
        "classifier": _classifier_summary(period, version, recent) | {"learning_curve": curve},
        "repeats": repeats,
        "red_cases": reds,
        "hard_cases": hard,
    }


# ---------------------------------------------------------------- export (CSV rows)

# (header, personal?) — personal columns are exported for admins only (one place for the rule).
EXPORT_COLUMNS: tuple[tuple[str, bool], ...] = (
    ("编号", False),
    ("类型", False),
    ("承办部门", False),
    ("网格", False),
    ("状态", False),
    ("紧急程度", False),
    ("提交时间", False),
    ("派单时间", False),
    ("签收时间", False),
    ("办结时间", False),
    ("结案时间", False),
    ("签收时限", False),
    ("办结时限", False),
    ("当前灯色", False),
    ("按时办结", False),
    ("满意度", False),
    ("重办次数", False),
    ("建议部门", False),
    ("建议置信度", False),
    ("模型版本", False),
    ("反映内容", True),
    ("地址", True),
    ("纬度", True),
    ("经度", True),
    ("办理结果", True),
    ("评价意见", True),
    ("反映人", True),
    ("反映人Telegram ID", True),
    ("联系电话", True),
    ("企业名称", True),
)


def export_header(include_personal: bool) -> list[str]:
    """Column headers of the case export; personal columns only when include_personal."""
    return [name for name, personal in EXPORT_COLUMNS if include_personal or not personal]


async def export_rows(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    rules: Rules,
    include_personal: bool,
    batch: int = 2000,
) -> AsyncIterator[list[str]]:
    """Rows (strings, matching export_header) of cases created in [start, end), oldest first.

    Streams from the database, so a long period does not sit in memory. Times are district-local.
    """
    cal = rules.calendar
    names = await department_names(session)
    grid_names = dict((await session.exec(select(Grid.code, Grid.name))).all())
    columns = [
        Case.ref,
        Case.kind,
        Case.department_code,
        Case.grid_code,
        Case.status,
        Case.priority,
        Case.created_at,
        Case.dispatched_at,
        Case.signed_at,
        Case.resolved_at,
        Case.closed_at,
        Case.sign_by,
        Case.resolve_by,
        Case.satisfaction,
        Case.reopen_count,
        Case.suggested_department,
        Case.suggested_confidence,
        Case.model_version,
    ]
    personal = [
        Case.text,
        Case.address,
        Case.latitude,
        Case.longitude,
        Case.resolution,
        Case.satisfaction_comment,
        Reporter.display_name,
        Reporter.telegram_id,
        Reporter.phone,
        Enterprise.name.label("enterprise_name"),
    ]
    # Personal columns are not even read unless they are to be exported.
    stmt = select(*columns, *(personal if include_personal else []))
    if include_personal:
        stmt = stmt.join(Reporter, Reporter.id == Case.reporter_id).outerjoin(
            Enterprise, Enterprise.id == Case.enterprise_id
        )
    stmt = (
        stmt.where(Case.created_at >= start, Case.created_at < end)
        .order_by(Case.created_at, Case.id)
        .execution_options(yield_per=batch)
    )

    def when(value: datetime | None) -> str:
        if value is None:
            return ""
        t = cal.to_local(value)
        return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}"

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    result = await session.stream(stmt)
    async for rows in result.partitions():  # a batch at a time: far fewer awaits than per row
        for c in rows:
            light = case_light(c, now, rules)  # a row has the columns case_light reads
            done = c.status in DONE_STATUSES and c.resolved_at and c.resolve_by
            values = [
                c.ref,
                KIND_SHORT_NAMES.get(c.kind, c.kind),
                names.get(c.department_code, "") if c.department_code else "",
                grid_names.get(c.grid_code, text(c.grid_code)),
                STATUS_NAMES.get(c.status, c.status),
                PRIORITY_NAMES.get(c.priority, "普通"),
                when(c.created_at),
                when(c.dispatched_at),
                when(c.signed_at),
                when(c.resolved_at),
                when(c.closed_at),
                when(c.sign_by),
                when(c.resolve_by),
                LIGHT_NAMES.get(light, ""),
                ("是" if c.resolved_at <= c.resolve_by else "否") if done else "",
                SATISFACTION_NAMES.get(c.satisfaction, text(c.satisfaction)),
                str(c.reopen_count),
                names.get(c.suggested_department, text(c.suggested_department)),
                f"{c.suggested_confidence:.2f}" if c.suggested_confidence is not None else "",
                text(c.model_version),
            ]
            if include_personal:
                values += [
                    c.text,
                    text(c.address),
                    text(c.latitude),
                    text(c.longitude),
                    text(c.resolution),
                    text(c.satisfaction_comment),
                    text(c.display_name),
                    text(c.telegram_id),
                    text(c.phone),
                    text(c.enterprise_name),
                ]
            yield values
