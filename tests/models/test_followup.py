"""The follow-up engine driven by a controllable clock (no sleeping): 红黄灯 reminders, alarms
and 督办, the daily digest, 回访 with its reminder and auto-close, reopen on 不满意, reporter
notices from case events, working-day arithmetic across holidays, two schedulers at once.

Runs on SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL (the `seeded` fixture).
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta

import pytest
from sqlmodel import select

from bot.duties import run_followup_pass
from bot.duties.status_notices import queue_status_notices
from bot.services import Services
from bot.survey import PENDING_PREFIX, submit_rating
from models import cases, drafts, outbox, people, stats
from models import followup as fq
from models.cases import Actor
from models.deadlines import RED, YELLOW, WorkCalendar, deadline_after, traffic_light
from models.engine import make_engine, session_scope
from models.tables import (
    CLOSED,
    DISPATCHED,
    RESOLVED,
    SIGNED,
    UNRATED,
    UNSATISFIED,
    Case,
    CaseEvent,
    Outbox,
)

# PostgreSQL adds nothing to some tests (pure Python paths): run those on SQLite only.
sqlite_only = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)

REPORTER = 1001
WATER_CHAT = -1000000000101
LEADER_CHAT = -1000000000002
# Monday 2026-11-23, 10:00 in Wangcheng (02:00 UTC): an ordinary working week.
MONDAY_10 = datetime(2026, 11, 23, 2, 0)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> datetime:
        self.now = moment
        return moment


def services_for(seeded, clock: Clock) -> Services:
    return Services(
        settings=seeded.settings,
        engine=seeded.engine,
        rules=seeded.rules,
        suggester=None,
        clock=clock,
    )


async def rows(seeded, **where) -> list[Outbox]:
    async with session_scope(seeded.engine) as session:
        stmt = select(Outbox).order_by(Outbox.id)
        for name, value in where.items():
            stmt = stmt.where(getattr(Outbox, name) == value)
        return list((await session.exec(stmt)).all())


async def fresh(seeded, case_id: int) -> Case:
    async with session_scope(seeded.engine) as session:
        return await cases.get_case(session, case_id)


async def events(seeded, case_id: int, action: str) -> list[CaseEvent]:
    async with session_scope(seeded.engine) as session:
        return [e for e in await cases.case_events(session, case_id) if e.action == action]


# ---------------------------------------------------------------- calendar


def test_working_days_skip_a_holiday_and_count_an_adjusted_workday(settings):
    """National Day 2026: Oct 1–7 off (with the weekend), Sat Oct 10 is a 调休 working day."""
    calendar = WorkCalendar.from_settings(settings)
    start = datetime(2026, 9, 30, 2, 0)  # Wed 10:00 local
    assert calendar.is_workday(date(2026, 10, 10)) and not calendar.is_workday(date(2026, 10, 5))
    # 1wd: the holiday week is skipped → Thu Oct 8, same time of day.
    assert deadline_after(start, "1wd", calendar) == datetime(2026, 10, 8, 2, 0)
    # 5wd: Oct 8, 9, 10 (调休 Saturday), 12, 13 → Tue Oct 13.
    assert deadline_after(start, "5wd", calendar) == datetime(2026, 10, 13, 2, 0)
    # A report on the holiday counts from the next working day's opening (09:00 local).
    on_holiday = datetime(2026, 10, 2, 6, 0)
    assert deadline_after(on_holiday, "1wd", calendar) == datetime(2026, 10, 9, 1, 0)
    # Clock-hour limits ignore the calendar.
    assert deadline_after(start, "2h", calendar) == datetime(2026, 9, 30, 4, 0)


@sqlite_only
async def test_holiday_stretches_the_window_and_the_reminder_waits(seeded):
    clock = Clock(datetime(2026, 9, 30, 2, 0))
    services = services_for(seeded, clock)
    case = await seeded.case_in(DISPATCHED, clock.now)
    assert case.sign_by == datetime(2026, 10, 8, 2, 0)
    # 75 % of Sep 30 10:00 → Oct 8 10:00 is Oct 6 10:00 local: quiet until then.
    await run_followup_pass(services, clock.set(datetime(2026, 10, 6, 1, 59)))
    assert await rows(seeded, kind="yellow") == []
    await run_followup_pass(services, clock.set(datetime(2026, 10, 6, 2, 1)))
    assert len(await rows(seeded, kind="yellow")) == 1


# ---------------------------------------------------------------- 红黄灯 and 督办


async def test_green_yellow_red_escalation(seeded):
    clock = Clock(MONDAY_10)
    services = services_for(seeded, clock)
    case = await seeded.case_in(DISPATCHED, clock.now)
    sign_by = datetime(2026, 11, 24, 2, 0)  # 1 working day
    assert case.sign_by == sign_by

    # green: nothing to say
    counts = await run_followup_pass(services, clock.set(MONDAY_10 + timedelta(hours=17)))
    assert counts["yellow"] == counts["red"] == 0

    # yellow at 75 % of the 24 h window (18 h), once
    counts = await run_followup_pass(services, clock.set(MONDAY_10 + timedelta(hours=18)))
    assert counts["yellow"] == 1
    assert (await run_followup_pass(services, clock.now))["yellow"] == 0
    [reminder] = await rows(seeded, kind="yellow")
    assert reminder.chat_id == WATER_CHAT
    assert reminder.key == f"case:{case.id}:yellow:{case.version}:{WATER_CHAT}"
    assert "黄灯提醒" in reminder.text and case.ref in reminder.text and "签收" in reminder.text
    assert [b["text"] for b in reminder.reply_markup["inline_keyboard"][0]] == ["✍️ 签收", "↩️ 退回"]
    assert (await fresh(seeded, case.id)).version == case.version  # buttons stay valid

    # red just after the deadline, once
    counts = await run_followup_pass(services, clock.set(sign_by + timedelta(minutes=1)))
    assert counts["red"] == 1 and counts["escalation"] == 0
    [alarm] = await rows(seeded, kind="red")
    assert "超时报警" in alarm.text and alarm.chat_id == WATER_CHAT

    # 督办 after 24 h red: leader chat and department, and an audit event
    counts = await run_followup_pass(services, clock.set(sign_by + timedelta(hours=23)))
    assert counts["escalation"] == 0
    counts = await run_followup_pass(services, clock.set(sign_by + timedelta(hours=24, minutes=1)))
    assert counts["escalation"] == 1
    escalations = await rows(seeded, kind="escalation")
    assert {r.chat_id for r in escalations} == {LEADER_CHAT, WATER_CHAT}
    leader = next(r for r in escalations if r.chat_id == LEADER_CHAT)
    assert "督办" in leader.text and "水务局" in leader.text and "签收超时 1天" in leader.text
    [event] = await events(seeded, case.id, "escalated")
    assert event.details["stage"] == "sign"
    assert (await run_followup_pass(services, clock.now))["escalation"] == 0

    # Signing starts the resolve deadline afresh: its own yellow comes later.
    async with session_scope(seeded.engine) as session:
        signed = await cases.sign_for(
            session, case.id, Actor.staff(seeded.dept_staff["water"]), clock.now, rules=seeded.rules
        )
    assert signed.yellow_notified_at is None
    resolve_by = signed.resolve_by  # Mon Nov 30 10:00 local, 5 working days from dispatch
    assert resolve_by == datetime(2026, 11, 30, 2, 0)
    assert (await run_followup_pass(services, clock.now))["yellow"] == 0
    yellow_at = MONDAY_10 + (resolve_by - MONDAY_10) * seeded.rules.yellow_ratio
    counts = await run_followup_pass(services, clock.set(yellow_at + timedelta(minutes=1)))
    assert counts["yellow"] == 1
    second = (await rows(seeded, kind="yellow"))[-1]
    assert "办结" in second.text and second.key.endswith(f":{signed.version}:{WATER_CHAT}")
    assert [b["text"] for b in second.reply_markup["inline_keyboard"][0]] == [
        "✅ 办结",
        "⏳ 申请延期",
    ]


async def test_a_long_extension_still_gets_its_yellow_reminder(seeded):
    """An extension can make a window far longer than any configured limit: the scan finds
    such cases through the approved extension, not the near-deadline index range."""
    clock = Clock(MONDAY_10)
    services = services_for(seeded, clock)
    staff = Actor.staff(seeded.dept_staff["water"])
    case = await seeded.case_in(SIGNED, clock.now)
    new_deadline = MONDAY_10 + timedelta(days=40)
    async with session_scope(seeded.engine) as session:
        request = await cases.request_extension(
            session, case.id, staff, "需要协调多个单位", new_deadline, clock.now
        )
        await cases.decide_extension(
            session, request.id, Actor.staff(seeded.triage), True, clock.now, rules=seeded.rules
        )
        horizon = fq.yellow_horizon(
            seeded.rules, await fq._limits_in_use(session, seeded.rules), clock.now
        )
    turns_yellow = MONDAY_10 + timedelta(days=30)  # 75 % of 40 days
    assert new_deadline - turns_yellow > horizon  # outside the near-deadline range
    assert (await run_followup_pass(services, clock.set(turns_yellow - timedelta(hours=1))))[
        "yellow"
    ] == 0
    assert (await run_followup_pass(services, clock.set(turns_yellow + timedelta(minutes=1))))[
        "yellow"
    ] == 1


def test_yellow_horizon_covers_the_longest_holiday_window(rules):
    """Around the Spring Festival "5wd" spans 15 days; the horizon is a quarter of that."""
    limits = ("1d", "1wd", "2h", "5wd")
    horizon = fq.yellow_horizon(rules, limits, datetime(2026, 2, 24, 2, 0))
    assert horizon >= timedelta(days=15) * (1 - rules.yellow_ratio)
    quiet = fq.yellow_horizon(rules, limits, datetime(2026, 11, 24, 2, 0))
    assert timedelta(days=1) < quiet < horizon


async def test_scan_confirms_lights_with_the_one_rule(seeded):
    """Every case the scan returns has the light the store's case_light() gives it."""
    clock = Clock(MONDAY_10)
    cases = [await seeded.case_in(DISPATCHED, MONDAY_10 + timedelta(hours=h)) for h in range(6)]
    now = cases[0].sign_by + timedelta(minutes=30)
    async with session_scope(seeded.engine) as session:
        due = await fq.due_alerts(session, now, seeded.rules, escalate_after=timedelta(hours=24))
        lit = await fq.lit_cases(session, now, seeded.rules)
        counts = await fq.light_counts(session, now, seeded.rules)
    expected = {c.id: traffic_light(now, c.dispatched_at, c.sign_by, 0.75) for c in cases}
    assert {c.id for c in due.red} == {i for i, light in expected.items() if light == RED}
    assert {c.id for c in due.yellow} == {i for i, light in expected.items() if light == YELLOW}
    assert {c.id: light for c, light in lit} == {
        i: v for i, v in expected.items() if v in (RED, YELLOW)
    }
    assert counts == {RED: 1, YELLOW: 5}
    assert clock.now == MONDAY_10


async def test_daily_digest_once_a_day_after_digest_time(seeded):
    clock = Clock(MONDAY_10)
    services = services_for(seeded, clock)
    for _ in range(2):
        await seeded.case_in(DISPATCHED, MONDAY_10)
    # Wed 08:29 local: too early; 08:31: sent; later that day: not again.
    wednesday = datetime(2026, 11, 25, 0, 29)
    assert (await run_followup_pass(services, clock.set(wednesday)))["digest"] == 0
    assert (await run_followup_pass(services, clock.set(wednesday + timedelta(minutes=2))))[
        "digest"
    ] == 1
    assert (await run_followup_pass(services, clock.set(wednesday + timedelta(hours=5))))[
        "digest"
    ] == 0
    [digest] = await rows(seeded, kind="digest")
    assert digest.chat_id == LEADER_CHAT and digest.key == f"digest:20261125:{LEADER_CHAT}"
    assert "11月25日" in digest.text and "共 2 件超时" in digest.text
    assert "水务局：2 件" in digest.text
    assert (await run_followup_pass(services, clock.set(wednesday + timedelta(days=1, minutes=2))))[
        "digest"
    ] == 1


# ---------------------------------------------------------------- 回访


async def test_survey_reminder_then_closed_as_unrated(seeded):
    clock = Clock(MONDAY_10)
    services = services_for(seeded, clock)
    case = await seeded.case_in(RESOLVED, clock.now)
    counts = await run_followup_pass(services, clock.now)
    assert counts["survey"] == 1
    [survey] = await rows(seeded, kind="survey")
    assert survey.chat_id == REPORTER and "回访" in survey.text
    # The 办结 notice carried the result: the survey refers to it instead of repeating it.
    assert f"请对您反映的问题 {case.ref} 的办理结果进行评价" in survey.text
    assert "已修复" not in survey.text
    buttons = survey.reply_markup["inline_keyboard"][0]
    assert [b["text"] for b in buttons] == ["😊 满意", "🙂 基本满意", "😞 不满意"]
    assert buttons[2]["callback_data"] == f"rate:{case.id}:{case.version}:unsatisfied"
    assert (await run_followup_pass(services, clock.now))["survey"] == 0

    start = clock.now
    assert (await run_followup_pass(services, clock.set(start + timedelta(days=2, hours=23))))[
        "survey_reminder"
    ] == 0
    assert (await run_followup_pass(services, clock.set(start + timedelta(days=3))))[
        "survey_reminder"
    ] == 1
    [reminder] = await rows(seeded, kind="survey_reminder")
    assert "温馨提醒" in reminder.text and "3 天内未评价将自动结案" in reminder.text
    assert (await run_followup_pass(services, clock.set(start + timedelta(days=5))))[
        "closed_unrated"
    ] == 0
    counts = await run_followup_pass(services, clock.set(start + timedelta(days=6)))
    assert counts["closed_unrated"] == 1 and counts["survey_reminder"] == 0
    closed = await fresh(seeded, case.id)
    assert closed.status == CLOSED and closed.satisfaction == UNRATED


@sqlite_only
async def test_satisfied_answer_closes_the_case(seeded):
    clock = Clock(MONDAY_10)
    services = services_for(seeded, clock)
    case = await seeded.case_in(RESOLVED, clock.now)
    async with session_scope(seeded.engine) as session:
        done = await submit_rating(
            session, services, REPORTER, case.id, case.version, "satisfied", None, clock.now
        )
    assert done.status == CLOSED and done.satisfaction == "satisfied"
    await run_followup_pass(services, clock.set(clock.now + timedelta(days=7)))
    assert await rows(seeded, kind="survey_reminder") == []


async def test_unsatisfied_reopens_to_the_department_and_counts_against_it(seeded):
    clock = Clock(MONDAY_10)
    services = services_for(seeded, clock)
    case = await seeded.case_in(RESOLVED, clock.now)
    await run_followup_pass(services, clock.now)  # the survey
    clock.set(clock.now + timedelta(hours=5))
    async with session_scope(seeded.engine) as session:
        reopened = await submit_rating(
            session, services, REPORTER, case.id, case.version, UNSATISFIED, "水还是浑的", clock.now
        )
    assert reopened.status == DISPATCHED and reopened.department_code == "water"
    assert reopened.reopen_count == 1 and reopened.dispatched_at == clock.now
    assert reopened.satisfaction == UNSATISFIED
    [event] = await events(seeded, case.id, "reopened")
    assert event.details["comment"] == "水还是浑的"

    posts = await rows(seeded, chat_id=WATER_CHAT, kind="department")
    assert len(posts) == 1 and "群众不满意" in posts[0].text and "水还是浑的" in posts[0].text
    assert posts[0].key == f"case:{case.id}:reopened:{reopened.version}:{WATER_CHAT}"
    notices = [r for r in await rows(seeded, chat_id=REPORTER) if ":reopened:" in r.key]
    assert len(notices) == 1 and "重新交 水务局 办理" in notices[0].text

    # The event-driven notices find the reopen already told: no second notice.
    assert (await run_followup_pass(services, clock.now))["notice"] == 0
    async with session_scope(seeded.engine) as session:
        figures = await stats.summary(
            session,
            start=MONDAY_10,
            end=clock.now + timedelta(1),
            now=clock.now,
            rules=seeded.rules,
            department="water",
        )
    assert figures["satisfaction_rate"] == 0.0

    # The reopened case runs on fresh deadlines and gets its own reminders.
    counts = await run_followup_pass(services, clock.set(reopened.sign_by + timedelta(minutes=1)))
    assert counts["red"] == 1


@sqlite_only
async def test_unanswered_comment_is_submitted_after_the_idle_timeout(seeded):
    clock = Clock(MONDAY_10)
    services = services_for(seeded, clock)
    case = await seeded.case_in(RESOLVED, clock.now)
    async with session_scope(seeded.engine) as session:
        await drafts.save_states(
            session,
            {
                f"{PENDING_PREFIX}{REPORTER}": {
                    "case_id": case.id,
                    "version": case.version,
                    "at": clock.now.isoformat(),
                }
            },
            clock.now,
        )
    await run_followup_pass(services, clock.set(MONDAY_10 + timedelta(minutes=29)))
    assert (await fresh(seeded, case.id)).status == RESOLVED
    counts = await run_followup_pass(services, clock.set(MONDAY_10 + timedelta(minutes=31)))
    assert counts["reopened"] == 1
    assert (await fresh(seeded, case.id)).status == DISPATCHED
    told = [r for r in await rows(seeded, chat_id=REPORTER) if ":reopened:" in r.key]
    assert len(told) == 1  # the reporter hears of it once, ...
    later = clock.set(clock.now + timedelta(minutes=2))
    assert (await run_followup_pass(services, later))["notice"] == 0  # ... not again
    async with session_scope(seeded.engine) as session:
        assert await drafts.get_state(session, f"{PENDING_PREFIX}{REPORTER}") is None


# ---------------------------------------------------------------- reporter notices


async def test_status_changes_reach_the_reporter_once(seeded):
    clock = Clock(MONDAY_10)
    services = services_for(seeded, clock)
    staff = Actor.staff(seeded.dept_staff["water"])
    # Dispatched directly in the store (as the dashboard might): nobody queued a notice.
    case = await seeded.case_in(DISPATCHED, clock.now)
    async with session_scope(seeded.engine) as session:
        signed = await cases.sign_for(session, case.id, staff, clock.now, rules=seeded.rules)
        # The bot queues its own notice for 签收 with the shared key scheme ...
        await outbox.enqueue(
            session,
            key=f"case:{case.id}:signed:{signed.version}:{REPORTER}",
            chat_id=REPORTER,
            text="bot's own",
            kind="progress",
            now=clock.now,
        )
        request = await cases.request_extension(
            session, case.id, staff, "需要更换主管道", datetime(2026, 12, 10, 2, 0), clock.now
        )
        extended = await cases.decide_extension(
            session, request.id, Actor.staff(seeded.triage), True, clock.now, rules=seeded.rules
        )
    counts = await queue_status_notices(services, clock.now)
    notices = await rows(seeded, chat_id=REPORTER)
    by_event = {r.key.split(":")[2]: r for r in notices}
    assert set(by_event) == {"dispatched", "signed", "extended"}
    assert counts["notice"] == 2  # ... so only dispatched and extended were added
    assert by_event["signed"].text == "bot's own"
    assert by_event["dispatched"].key == f"case:{case.id}:dispatched:{case.version}:{REPORTER}"
    assert by_event["extended"].key == (f"case:{case.id}:extended:{extended.version}:{REPORTER}")
    assert (
        "12-10 10:00" in by_event["extended"].text and "需要更换主管道" in by_event["extended"].text
    )
    # Running again (or on another worker) adds nothing.
    assert (await queue_status_notices(services, clock.now))["notice"] == 0
    assert len(await rows(seeded, chat_id=REPORTER)) == 3


async def test_routes_changed_within_a_minute_are_told_once(seeded):
    """Dispatched to one department and re-routed to another inside the minute, elsewhere
    than in the bot: the safety net tells the reporter only where the case is now."""
    clock = Clock(MONDAY_10)
    services = services_for(seeded, clock)
    case = await seeded.case_in(DISPATCHED, clock.now)  # to 水务局, nobody told the reporter
    clock.set(clock.now + timedelta(seconds=30))
    async with session_scope(seeded.engine) as session:
        moved = await cases.redispatch(
            session, case.id, "housing", Actor.staff(seeded.triage), clock.now, rules=seeded.rules
        )
    counts = await queue_status_notices(services, clock.now)
    [notice] = await rows(seeded, chat_id=REPORTER)
    assert counts["notice"] == 1 and "住建局" in notice.text
    assert notice.key == f"case:{case.id}:dispatched:{moved.version}:{REPORTER}"
    assert notice.due_at == clock.now + timedelta(seconds=60)  # a re-route may still replace it

    # Re-routed once more before it went: the waiting notice is replaced, not added to.
    clock.set(clock.now + timedelta(seconds=20))
    async with session_scope(seeded.engine) as session:
        await cases.redispatch(
            session, case.id, "water", Actor.staff(seeded.triage), clock.now, rules=seeded.rules
        )
    await queue_status_notices(services, clock.now)
    waiting = [r for r in await rows(seeded, chat_id=REPORTER) if r.status == "pending"]
    assert len(waiting) == 1 and "水务局" in waiting[0].text

    # 签收 settles where the case is: the waiting notice goes at once, the 签收 right after.
    clock.set(clock.now + timedelta(seconds=5))
    async with session_scope(seeded.engine) as session:
        await cases.sign_for(
            session, case.id, Actor.staff(seeded.dept_staff["water"]), clock.now, rules=seeded.rules
        )
    await queue_status_notices(services, clock.now)
    waiting = [r for r in await rows(seeded, chat_id=REPORTER) if r.status == "pending"]
    assert [(r.key.split(":")[2], r.due_at) for r in waiting] == [
        ("dispatched", clock.now),
        ("signed", clock.now),
    ]
    assert (await queue_status_notices(services, clock.now + timedelta(minutes=5)))["notice"] == 0


@sqlite_only
async def test_notice_cursor_waits_for_late_commits_then_moves_on(seeded):
    clock = Clock(MONDAY_10)
    services = services_for(seeded, clock)
    case = await seeded.case_in(DISPATCHED, clock.now)
    await queue_status_notices(services, clock.now)
    async with session_scope(seeded.engine) as session:
        cursor = (await drafts.get_state(session, "followup:notices"))["cursor"]
        [dispatched] = await events(seeded, case.id, "dispatched")
    assert cursor < dispatched.id  # too young to pass: a lower id might still commit
    await queue_status_notices(services, clock.set(clock.now + timedelta(minutes=2)))
    async with session_scope(seeded.engine) as session:
        assert (await drafts.get_state(session, "followup:notices"))["cursor"] == dispatched.id


@sqlite_only
async def test_version_after_event_matches_the_case(seeded):
    clock = Clock(MONDAY_10)
    case = await seeded.case_in(RESOLVED, clock.now)
    async with session_scope(seeded.engine) as session:
        trail = await cases.case_events(session, case.id)
        [resolved] = [e for e in trail if e.action == "resolved"]
        assert await fq.version_after(session, resolved) == case.version


@sqlite_only
async def test_blocked_reporter_gets_no_survey_but_the_case_still_closes(seeded):
    clock = Clock(MONDAY_10)
    services = services_for(seeded, clock)
    case = await seeded.case_in(RESOLVED, clock.now)
    async with session_scope(seeded.engine) as session:
        await people.set_reporter_reachable(session, REPORTER, False)
    assert (await run_followup_pass(services, clock.now))["survey"] == 0
    assert await rows(seeded, chat_id=REPORTER) == []
    await run_followup_pass(services, clock.set(clock.now + timedelta(days=6, minutes=1)))
    assert (await fresh(seeded, case.id)).status == CLOSED


# ---------------------------------------------------------------- several schedulers


async def test_two_schedulers_at_once_queue_each_push_once(seeded):
    """Two passes racing (on PostgreSQL: two engines, i.e. two worker processes)."""
    clock = Clock(MONDAY_10)
    cases = [await seeded.case_in(DISPATCHED, clock.now) for _ in range(5)]
    resolved = await seeded.case_in(RESOLVED, clock.now, reporter=1002)
    url = seeded.engine.url.render_as_string(hide_password=False)
    other = make_engine(url) if seeded.dialect == "postgresql" else seeded.engine
    try:
        first = services_for(seeded, clock)
        second = Services(
            settings=seeded.settings, engine=other, rules=seeded.rules, suggester=None, clock=clock
        )
        now = cases[0].sign_by + timedelta(hours=25)
        results = await asyncio.gather(
            run_followup_pass(first, now), run_followup_pass(second, now)
        )
    finally:
        if other is not seeded.engine:
            await other.dispose()
    assert sum(r["red"] for r in results) == 5
    assert sum(r["escalation"] for r in results) == 5
    assert sum(r["survey"] for r in results) == 1
    assert len(await rows(seeded, kind="red")) == 5
    assert len(await rows(seeded, kind="escalation")) == 10  # leader + department each
    assert len(await rows(seeded, kind="survey")) == 1
    for case in cases:
        assert len(await events(seeded, case.id, "escalated")) == 1
    assert (await fresh(seeded, resolved.id)).survey_sent_at == now


@sqlite_only
async def test_a_quiet_store_sends_only_the_all_clear_digest(seeded):
    services = services_for(seeded, Clock(MONDAY_10))
    counts = await run_followup_pass(services, MONDAY_10 + timedelta(days=30))
    assert counts == {"digest": 1}
    [digest] = await rows(seeded)
    assert "目前没有超时案件" in digest.text
