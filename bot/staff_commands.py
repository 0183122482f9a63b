"""Commands of the follow-up side: /overdue and /stats for staff, /policy to post 惠企政策, and
/subscribe, /unsubscribe (or the button under each policy) for enterprises.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot import callbacks as cb
from bot import delivery
from bot.common import alert, department_name, fit, local_time, snippet, stage_name
from bot.context import Context
from bot.services import Services
from bot.texts import followup as texts
from bot.texts import grids as grid_texts
from bot.texts import intake
from bot.texts.errors import error_text
from models import auth, gridstats, outbox, people, policy, stats
from models import followup as fq
from models.deadlines import LIGHT_EMOJI, RED, YELLOW, WorkCalendar
from models.lifecycle import CaseError, running_deadline
from models.tables import Case, CasePart, Staff

OVERDUE_LINES = 30  # cases listed at most; the counts above them are exact
ALL_DEPARTMENTS_ROLES = ("triage", "admin", "leader")
# Staff who answer for a grid and everything below it (a street's staff: a street-level grid).
GRID_ROLES = ("grid", "street")
_MONTH = re.compile(r"^(\d{4})(?:-|年)(\d{1,2})月?$")
_DAY = r"(\d{4})-(\d{1,2})-(\d{1,2})"
_DAYS = re.compile(rf"^{_DAY}(?:\s*[~～至到]\s*{_DAY})?$")
# The words /stats understands for the periods that are not a month or a range of dates.
_PERIOD_WORDS = {
    "today": ("today", "今天", "今日"),
    "week": ("week", "本周", "这周"),
    "last_week": ("last-week", "lastweek", "上周"),
    "month": ("month", "本月", "这个月"),
    "last_month": ("last-month", "lastmonth", "上个月", "上月"),
    "year": ("year", "今年", "本年"),
}
_PERIOD_OF_WORD = {word: period for period, words in _PERIOD_WORDS.items() for word in words}
_LINK_LINE = re.compile(r"^(?:链接|网址|link|url)\s*[:：]\s*(.*)$", re.IGNORECASE)
_TAGS_LINE = re.compile(r"^(?:标签|tags?)\s*[:：]\s*(.*)$", re.IGNORECASE)


def _args_text(update: Update) -> str:
    """What follows the /command on its line and below it."""
    text = update.effective_message.text or ""
    parts = text.split(maxsplit=1)
    return parts[1] if len(parts) > 1 else ""


async def _staff(services: Services, user_id: int) -> Staff | None:
    async with services.session() as session:
        return await people.get_staff(session, user_id)


# ---------------------------------------------------------------- /overdue


async def overdue_command(update: Update, context: Context) -> None:
    """/overdue: department staff see their red and yellow cases, grid staff their grid's,
    triage, leaders and admins all of them grouped by department."""
    services = context.services
    staff = await _staff(services, update.effective_user.id)
    if staff is None:
        await update.effective_message.reply_text(texts.OVERDUE_NOT_STAFF)
        return
    now = services.clock()
    department = staff.department_code if staff.role == "department" else None
    grid = staff.grid_code if staff.role in GRID_ROLES else None
    async with services.read_session() as session:  # a scan: never on the loop's thread
        counts = await fq.light_counts(
            session, now, services.rules, department=department, grid=grid
        )
        cases = await fq.lit_cases(
            session, now, services.rules, department=department, grid=grid, limit=OVERDUE_LINES
        )
        # 攻坚哨 parts are departments' work, not a grid's
        parts = (
            []
            if grid
            else await fq.lit_parts_now(session, now, services.rules, department=department)
        )
    if department:
        scope = department_name(services, department)
    elif grid:
        scope = texts.OVERDUE_SCOPE_GRID.format(grid=services.gridmap.path_names(grid) or grid)
    else:
        scope = texts.OVERDUE_SCOPE_ALL
    text = overdue_text(
        services,
        scope,
        counts,
        cases,
        now,
        grouped=staff.role in ALL_DEPARTMENTS_ROLES,
        parts=parts,
        by_grid=grid is not None,
    )
    await update.effective_message.reply_text(text)


def overdue_text(
    services: Services,
    scope: str,
    counts: dict[str, int],
    cases: list[tuple[Case, str]],
    now: datetime,
    *,
    grouped: bool,
    parts: Sequence[tuple[CasePart, Case, str]] = (),
    by_grid: bool = False,
) -> str:
    """The /overdue answer: totals, then the most urgent cases (by department if grouped,
    by the grid each lies in for grid staff), most urgent group first, then the 攻坚哨 parts
    that are red or yellow."""
    if not counts[RED] and not counts[YELLOW] and not parts:
        return texts.OVERDUE_NONE.format(scope=scope)
    lines = [
        texts.OVERDUE_TITLE.format(
            scope=scope, time=local_time(services, now), red=counts[RED], yellow=counts[YELLOW]
        )
    ]
    groups: dict[str | None, list[tuple[Case, str]]] = {}
    for case, light in cases:
        key = case.department_code if grouped else case.grid_code if by_grid else None
        groups.setdefault(key, []).append((case, light))
    for code, items in groups.items():
        red = sum(1 for _, light in items if light == RED)
        if grouped:
            lines.append(
                texts.OVERDUE_DEPARTMENT.format(
                    department=department_name(services, code), red=red, yellow=len(items) - red
                )
            )
        elif by_grid:
            name = services.gridmap.name(code) or grid_texts.OVERDUE_NO_GRID_NAME.format(code=code)
            lines.append(
                grid_texts.OVERDUE_GRID.format(grid=name, red=red, yellow=len(items) - red)
            )
        lines.extend(_overdue_line(case, light, now) for case, light in items)
    if counts[RED] + counts[YELLOW] > len(cases):
        lines.append(texts.OVERDUE_TRUNCATED.format(count=len(cases)))
    if parts:
        lines.append(texts.OVERDUE_PARTS)
        for part, case, light in parts:
            ref = texts.PART_REF.format(
                ref=case.ref, department=department_name(services, part.department_code)
            )
            lines.append(_overdue_line(case, light, now, part=part, ref=ref))
    return fit("\n".join(lines), delivery.MAX_TEXT)


def _overdue_line(
    case: Case, light: str, now: datetime, *, part: CasePart | None = None, ref: str | None = None
) -> str:
    """One case (or one 攻坚哨 part, by its own deadline, under `ref`) of /overdue."""
    lit = part or case
    deadline, stage = running_deadline(lit), stage_name(lit)
    ref = ref or case.ref
    if light == RED:
        return texts.OVERDUE_RED_LINE.format(
            ref=ref,
            stage=stage,
            snippet=snippet(case),
            over=texts.span((now - deadline).total_seconds()),
        )
    return texts.OVERDUE_YELLOW_LINE.format(
        ref=ref,
        stage=stage,
        snippet=snippet(case),
        left=texts.span((deadline - now).total_seconds()),
    )


# ---------------------------------------------------------------- /stats


def _month(first: date, calendar: WorkCalendar) -> tuple[str, datetime, datetime]:
    """The calendar month that starts on `first`, named 2026年11月."""
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    name = texts.STATS_MONTH.format(year=first.year, month=first.month)
    return (name, *stats.local_days_bounds(first, last, calendar))


def _named_period(
    period: str, today: date, calendar: WorkCalendar
) -> tuple[str, datetime, datetime]:
    """One of _PERIOD_WORDS as (name, start, end) around `today` (district time)."""
    monday = today - timedelta(days=today.weekday())
    if period == "today":
        return (texts.STATS_PERIOD_NAMES["today"], *stats.local_days_bounds(today, today, calendar))
    if period in ("week", "last_week"):
        first = monday if period == "week" else monday - timedelta(days=7)
        return (
            texts.STATS_PERIOD_NAMES[period],
            *stats.local_days_bounds(first, first + timedelta(days=6), calendar),
        )
    if period == "month":
        return (texts.STATS_PERIOD_NAMES["month"], *_month(today.replace(day=1), calendar)[1:])
    if period == "last_month":
        return _month((today.replace(day=1) - timedelta(days=1)).replace(day=1), calendar)
    return (
        texts.STATS_YEAR.format(year=today.year),
        *stats.local_days_bounds(date(today.year, 1, 1), date(today.year, 12, 31), calendar),
    )


def _dates(match: re.Match) -> tuple[date, date] | None:
    """The first and last day of a YYYY-MM-DD[~YYYY-MM-DD] match; None if not real dates."""
    numbers = [int(g) for g in match.groups() if g is not None]
    try:
        first = date(*numbers[:3])
        last = date(*numbers[3:]) if len(numbers) == 6 else first
    except ValueError:
        return None
    return (first, last) if first.year >= 2000 and first <= last else None


def stats_period(
    arg: str, now: datetime, services: Services
) -> tuple[str, datetime, datetime] | None:
    """(name, start, end) in UTC of the period /stats was asked about (district time): a word
    of _PERIOD_WORDS (default 本月), YYYY-MM, YYYY-MM-DD or YYYY-MM-DD~YYYY-MM-DD; None if
    the argument is none of those."""
    calendar = services.rules.calendar
    arg = arg.strip().lower() or "month"
    today = calendar.to_local(now).date()
    if arg in _PERIOD_OF_WORD:
        return _named_period(_PERIOD_OF_WORD[arg], today, calendar)
    if (match := _MONTH.match(arg)) and 1 <= int(match[2]) <= 12 and int(match[1]) >= 2000:
        return _month(date(int(match[1]), int(match[2]), 1), calendar)
    if (match := _DAYS.match(arg)) and (days := _dates(match)):
        return ("", *stats.local_days_bounds(*days, calendar))  # the title shows the dates
    return None


async def stats_command(update: Update, context: Context) -> None:
    """/stats [period]: 办结率, on-time rate and 满意率, by department (see stats_period)."""
    services = context.services
    message = update.effective_message
    staff = await _staff(services, update.effective_user.id)
    if staff is None:
        await message.reply_text(texts.STATS_NOT_STAFF)
        return
    now = services.clock()
    period = stats_period(_args_text(update), now, services)
    if period is None:
        await message.reply_text(texts.STATS_USAGE)
        return
    name, start, end = period
    if start > now:
        first = services.rules.calendar.to_local(start).date().isoformat()
        period_name = name or texts.STATS_RANGE_FROM.format(start=first)
        await message.reply_text(texts.STATS_NOT_STARTED.format(period=period_name))
        return
    if staff.role in GRID_ROLES and staff.grid_code:
        await message.reply_text(
            await _grid_stats(services, staff.grid_code, name, start, end, now)
        )
        return
    async with services.read_session() as session:  # ~0.2 s on a year of cases: threaded
        total = await stats.summary(session, start=start, end=end, now=now, rules=services.rules)
        rows = await stats.by_department(
            session, start=start, end=end, now=now, rules=services.rules
        )
    await message.reply_text(stats_text(services, name, start, end, total, rows))


async def _grid_stats(
    services: Services, code: str, name: str, start: datetime, end: datetime, now: datetime
) -> str:
    """Grid staff's /stats: their grid and everything below it, the grids below by name."""
    async with services.read_session() as session:
        view = await gridstats.area_view(
            session, code, start=start, end=end, now=now, rules=services.rules
        )
    if view is None:
        return grid_texts.STATS_GRID_GONE.format(code=code)
    return grid_stats_text(services, name, start, end, view)


def grid_stats_text(
    services: Services, name: str, start: datetime, end: datetime, view: dict
) -> str:
    calendar = services.rules.calendar
    first = calendar.to_local(start).date()
    last = calendar.to_local(end).date() - timedelta(days=1)
    node = view["node"]
    path = " › ".join(p["name"] for p in view["path"]) or node["name"]
    lines = [
        texts.STATS_TITLE.format(period=name, start=first.isoformat(), end=last.isoformat()),
        grid_texts.STATS_GRID_TOTAL.format(
            path=path,
            created=node["created"],
            dispatched=node["dispatched"],
            done=node["done"],
            completion=texts.percent(node["completion_rate"]),
            on_time=texts.percent(node["on_time_rate"]),
            satisfaction=texts.percent(node["satisfaction_rate"]),
            open=node["open"],
            red=node["red"],
            yellow=node["yellow"],
            in_grid=texts.percent(node["in_grid_rate"]),
            in_street=texts.percent(node["in_street_rate"]),
            grid_done=node["grid_done"],
        ),
    ]
    if view["rows"]:
        lines.append(grid_texts.STATS_GRID_BELOW.format(level=view["level_title"]))
    for row in view["rows"]:
        lines.append(
            grid_texts.STATS_GRID_ROW.format(
                light=LIGHT_EMOJI.get(row["light"], ""),
                name=row["name"],
                created=row["created"],
                open=row["open"],
                red=row["red"],
                completion=texts.percent(row["completion_rate"]),
                on_time=texts.percent(row["on_time_rate"]),
                satisfaction=texts.percent(row["satisfaction_rate"]),
                in_grid=texts.percent(row["in_grid_rate"]),
                in_street=texts.percent(row["in_street_rate"]),
            )
        )
    return fit("\n".join(lines), delivery.MAX_TEXT)


def stats_text(
    services: Services, name: str, start: datetime, end: datetime, total: dict, rows: list[dict]
) -> str:
    calendar = services.rules.calendar
    first = calendar.to_local(start).date()
    last = calendar.to_local(end).date() - timedelta(days=1)
    lines = [
        texts.STATS_TITLE.format(period=name, start=first.isoformat(), end=last.isoformat()),
        texts.STATS_TOTAL.format(
            created=total["created"],
            dispatched=total["dispatched"],
            done=total["done"],
            completion=texts.percent(total["completion_rate"]),
            on_time=texts.percent(total["on_time_rate"]),
            satisfaction=texts.percent(total["satisfaction_rate"]),
            open=total["open"],
            red=total["red"],
            yellow=total["yellow"],
        ),
        texts.STATS_DEPARTMENTS,
    ]
    for row in rows:
        lines.append(
            texts.STATS_DEPARTMENT.format(
                light=LIGHT_EMOJI.get(row["light"], ""),
                name=row["name"],
                dispatched=row["dispatched"],
                completion=texts.percent(row["completion_rate"]),
                on_time=texts.percent(row["on_time_rate"]),
                satisfaction=texts.percent(row["satisfaction_rate"]),
            )
        )
    return fit("\n".join(lines), delivery.MAX_TEXT)


# ---------------------------------------------------------------- /policy


def parse_policy(body: str) -> dict | None:
    """The /policy message: title on the first line, then the summary; lines starting with
    链接： or 标签： give the link and tags. None if the title or summary is missing."""
    title, link, tags, summary = None, None, None, []
    for line in (raw.strip() for raw in body.splitlines()):
        if not line:
            continue
        if title is None:
            title = line
        elif match := _LINK_LINE.match(line):
            link = match.group(1).strip()
        elif match := _TAGS_LINE.match(line):
            tags = match.group(1)
        else:
            summary.append(line)
    if not title or not summary:
        return None
    return {"title": title, "summary": "\n".join(summary), "link": link, "tags": tags}


def policy_message(item) -> tuple[str, InlineKeyboardMarkup]:
    """The text and unsubscribe button enterprises receive."""
    parts = [texts.POLICY_MESSAGE.format(title=item.title, summary=item.summary)]
    if item.link:
        parts.append(texts.POLICY_LINK.format(link=item.link))
    if item.tags:
        parts.append(texts.POLICY_TAGS.format(tags="、".join(item.tags)))
    parts.append(texts.POLICY_FOOTER)
    button = InlineKeyboardButton(
        texts.BTN_UNSUBSCRIBE, callback_data=cb.make(cb.NEWS, 0, item.id, "off")
    )
    return fit("\n\n".join(parts), delivery.MAX_TEXT), InlineKeyboardMarkup([[button]])


async def policy_command(update: Update, context: Context) -> None:
    """/policy: store a policy and queue it for every matching subscribed enterprise, in one
    transaction (key policy:{id}:{chat})."""
    services = context.services
    message, user_id = update.effective_message, update.effective_user.id
    if not policy.can_post_policy(await _staff(services, user_id)):
        await message.reply_text(texts.POLICY_NOT_ALLOWED)
        return
    fields = parse_policy(_args_text(update))
    if fields is None:
        await message.reply_text(texts.POLICY_USAGE)
        return
    now = services.clock()
    try:
        async with services.session() as session:
            item = await policy.post_policy(session, **fields, posted_by=user_id, now=now)
            text, markup = policy_message(item)
            chats = await policy.policy_recipients(session, item)
            for chat_id in chats:
                await outbox.enqueue(
                    session,
                    key=f"policy:{item.id}:{chat_id}",
                    chat_id=chat_id,
                    text=text,
                    kind="policy",
                    now=now,
                    reply_markup=markup.to_dict(),
                )
    except CaseError as exc:  # InvalidInput: which field to fix
        await message.reply_text(error_text(exc))
        return
    delivery.kick(context.application)
    template = texts.POLICY_POSTED if chats else texts.POLICY_POSTED_NONE
    await message.reply_text(template.format(title=item.title, count=len(chats)))


# ---------------------------------------------------------------- subscriptions


async def _set_subscription(services: Services, user_id: int, subscribed: bool) -> str:
    try:
        async with services.session() as session:
            await people.set_news_subscription(session, user_id, subscribed)
    except CaseError:
        return texts.NEWS_NOT_ENTERPRISE
    return texts.NEWS_SUBSCRIBED if subscribed else texts.NEWS_UNSUBSCRIBED


async def unsubscribe_command(update: Update, context: Context) -> None:
    reply = await _set_subscription(context.services, update.effective_user.id, False)
    await update.effective_message.reply_text(reply)


async def subscribe_command(update: Update, context: Context) -> None:
    reply = await _set_subscription(context.services, update.effective_user.id, True)
    await update.effective_message.reply_text(reply)


async def on_news_button(update: Update, context: Context) -> None:
    """「不再接收政策推送」under a policy."""
    query = update.callback_query
    button = cb.parse(query.data)
    if button is None or button.verb != cb.NEWS or button.arg != "off":
        await alert(query, intake.BUTTON_INVALID)
        return
    reply = await _set_subscription(context.services, query.from_user.id, False)
    await alert(query, reply)
    if reply == texts.NEWS_UNSUBSCRIBED:
        await query.edit_message_reply_markup(reply_markup=None)


# ---------------------------------------------------------------- /dashboard


async def dashboard_command(update: Update, context: Context) -> None:
    """/dashboard (private chat): a one-time login code for the web dashboard."""
    services = context.services
    try:
        async with services.session() as session:
            code = await auth.issue_login_code(session, update.effective_user.id, services.clock())
    except CaseError:
        await update.effective_message.reply_text(texts.DASHBOARD_NOT_STAFF)
        return
    d = services.settings.dashboard
    await update.effective_message.reply_text(
        texts.DASHBOARD_CODE.format(code=code, host=d.host, port=d.port)
    )
