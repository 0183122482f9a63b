"""Working calendar, deadline arithmetic and the one traffic-light rule (红黄灯).

All datetimes in Whistle are naive UTC. The calendar turns them into district-local dates only
to decide which days are working days (weekends, holidays, 调休 adjusted working days).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from models.lifecycle import light_start, running_deadline
from models.tables import URGENT, Case, CasePart, Department

GREEN, YELLOW, RED = "green", "yellow", "red"
LIGHT_EMOJI = {GREEN: "🟢", YELLOW: "🟡", RED: "🔴"}
LIGHT_NAMES = {GREEN: "绿灯", YELLOW: "黄灯", RED: "红灯"}

_LIMIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(wd|h|d)\s*$")


@dataclass(frozen=True)
class WorkCalendar:
    """Which local dates are working days: Mon–Fri, minus holidays, plus adjusted workdays."""

    timezone: str = "Asia/Shanghai"
    holidays: frozenset[date] = field(default_factory=frozenset)
    adjusted_workdays: frozenset[date] = field(default_factory=frozenset)
    workday_start: str = "09:00"

    @classmethod
    def from_settings(cls, settings) -> WorkCalendar:
        cal = settings.calendar
        return cls(
            timezone=settings.district.timezone,
            holidays=frozenset(date.fromisoformat(d) for d in cal.holidays),
            adjusted_workdays=frozenset(date.fromisoformat(d) for d in cal.adjusted_workdays),
            workday_start=cal.workday_start,
        )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_workday(self, day: date) -> bool:
        if day in self.adjusted_workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def to_local(self, utc: datetime) -> datetime:
        return utc.replace(tzinfo=ZoneInfo("UTC")).astimezone(self.tz)

    def to_utc(self, local: datetime) -> datetime:
        return local.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)

    def add_working_days(self, start_utc: datetime, days: int) -> datetime:
        """Same local time of day on the Nth following working day.

        A start on a non-working day counts from the next working day's opening time, so a
        report sent on Saturday is due N working days after Monday morning, not Friday.
        """
        local = self.to_local(start_utc)
        if not self.is_workday(local.date()):
            hh, mm = (int(x) for x in self.workday_start.split(":"))
            day = local.date()
            while not self.is_workday(day):
                day += timedelta(days=1)
            local = local.replace(
                year=day.year,
                month=day.month,
                day=day.day,
                hour=hh,
                minute=mm,
                second=0,
                microsecond=0,
            )
        day = local.date()
        remaining = days
        while remaining > 0:
            day += timedelta(days=1)
            if self.is_workday(day):
                remaining -= 1
        return self.to_utc(local.replace(year=day.year, month=day.month, day=day.day))


def parse_limit(limit: str) -> tuple[float, str]:
    """'5wd' → (5, 'wd'); '2h' → (2, 'h'); '1d' → (1, 'd'). Raises ValueError otherwise."""
    m = _LIMIT.match(limit or "")
    if not m:
        raise ValueError(f"无法识别的时限 {limit!r}（应为 5wd、2h 或 1d 这样的写法）")
    amount, unit = float(m.group(1)), m.group(2)
    if unit == "wd" and amount != int(amount):
        raise ValueError(f"工作日时限必须是整数: {limit!r}")
    return amount, unit


def deadline_after(start: datetime, limit: str, calendar: WorkCalendar) -> datetime:
    """The deadline a limit gives from `start` (working days follow the calendar)."""
    amount, unit = parse_limit(limit)
    if unit == "wd":
        return calendar.add_working_days(start, int(amount))
    if unit == "h":
        return start + timedelta(hours=amount)
    return start + timedelta(days=amount)


def traffic_light(
    now: datetime, start: datetime, deadline: datetime, yellow_ratio: float = 0.75
) -> str:
    """红黄灯: green below `yellow_ratio` of the time allowed, yellow until the deadline, red after.

    The share is wall-clock time between start and deadline; the deadline itself already
    skips non-working days, so a weekend simply stretches the window.
    """
    if now > deadline:
        return RED
    allowed = (deadline - start).total_seconds()
    if allowed <= 0:
        return YELLOW  # no time was allowed at all, but it is not overdue yet
    used = (now - start).total_seconds() / allowed
    return YELLOW if used >= yellow_ratio else GREEN


def yellow_at(start: datetime, deadline: datetime, yellow_ratio: float = 0.75) -> datetime:
    """When a case running from start to deadline turns yellow."""
    return start + (deadline - start) * yellow_ratio


DEFAULT_LIMITS = {
    "sign_normal": "1wd",
    "sign_urgent": "2h",
    "resolve_normal": "5wd",
    "resolve_urgent": "1d",
}


@dataclass(frozen=True)
class Rules:
    """Deadline rules, built once per process with Rules.from_settings(settings)."""

    calendar: WorkCalendar
    default_limits: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    yellow_ratio: float = 0.75
    # 吹哨报到 in the grid ([routing]): a grid's (or the street's) sign and resolve limits,
    # and the 核查 limit counted from a department's 办结.
    grid_limits: tuple[str, str] = ("1d", "3wd")
    verify_limit: str = "2wd"

    @classmethod
    def from_settings(cls, settings) -> Rules:
        routing = settings.routing
        return cls(
            calendar=WorkCalendar.from_settings(settings),
            default_limits={**DEFAULT_LIMITS, **dict(settings.limits)},
            yellow_ratio=settings.followup.yellow_ratio,
            grid_limits=(routing.grid_sign_limit, routing.grid_resolve_limit),
            verify_limit=routing.verify_limit,
        )

    def grid_deadlines(self, start: datetime) -> tuple[datetime, datetime]:
        """(sign_by, resolve_by) of a case handed to a grid's staff at `start`."""
        sign_limit, resolve_limit = self.grid_limits
        return (
            deadline_after(start, sign_limit, self.calendar),
            deadline_after(start, resolve_limit, self.calendar),
        )

    def verify_deadline(self, start: datetime) -> datetime:
        """verify_by of a department's 办结 at `start` that the grid's staff check (核查)."""
        return deadline_after(start, self.verify_limit, self.calendar)

    def limits_for(self, department: Department | None, priority: str) -> tuple[str, str]:
        """(sign-for limit, resolve limit) of a department for a priority, e.g. ('1wd', '5wd')."""
        if department is None:
            return (
                self.default_limits[f"sign_{priority}"],
                self.default_limits[f"resolve_{priority}"],
            )
        if priority == URGENT:
            return department.sign_limit_urgent, department.resolve_limit_urgent
        return department.sign_limit_normal, department.resolve_limit_normal

    def deadlines(
        self, department: Department | None, priority: str, start: datetime
    ) -> tuple[datetime, datetime]:
        """(sign_by, resolve_by) for a case dispatched at `start`; both count from dispatch."""
        sign_limit, resolve_limit = self.limits_for(department, priority)
        return (
            deadline_after(start, sign_limit, self.calendar),
            deadline_after(start, resolve_limit, self.calendar),
        )


def case_light(case: Case | CasePart, now: datetime, rules: Rules) -> str | None:
    """红黄灯 of an open case (or a 攻坚哨 part, which has the same columns) against its current
    deadline (sign-for, then resolve; a grid's or 核查's in those stages); else None."""
    deadline, start = running_deadline(case), light_start(case)
    if deadline is None or start is None:
        return None
    return traffic_light(now, start, deadline, rules.yellow_ratio)
