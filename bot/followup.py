"""The follow-up engine (跟踪督办): nothing is left hanging.

One pass, `run_followup_pass`, runs every followup.poll_seconds inside the bot (or on any
number of workers against one PostgreSQL database) and turns time into pushes:

1. 红黄灯 — the department group gets a reminder when a case turns yellow and an alarm when it
   turns red; once it has been red for followup.escalate_after_red_hours the leader chat gets a
   督办 (and the department a notice), recorded in the case's events.
2. The leaders' daily digest of red cases per department, once a day after followup.digest_time.
3. 回访 — the reporter gets a survey (满意 / 基本满意 / 不满意) after resolution, one reminder
   after survey_reminder_days, and the case closes as 未评价 after survey_close_days.
   不满意 asks for an optional comment, then reopens the case back to the same department.
4. Reporter notices for every status change (dispatched, signed, resolved, extended,
   reopened), read from the case events. The bot already queues most of them in the same
   transaction as the change under the same key, f"case:{id}:{event}:{version}:{chat}", so
   the outbox keeps one; this catches the rest (extensions, changes made elsewhere). Both
   build them with bot/notices.py, which holds a 派单 notice back a minute for a re-route to
   replace; a 派单 that was replaced before it was told is never told.

Everything goes through the outbox under idempotency keys, and each alert is claimed with a
compare-and-set on the case, so running the pass twice, or on several workers, queues each push
once. bot/delivery.py sends them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot import callbacks as cb
from bot import delivery, notices, posts
from bot.common import alert, department_name, fit, local_time
from bot.services import Services, services_of
from bot.texts import followup as texts
from bot.texts import intake
from bot.texts.errors import error_text
from models import cases, deadlines, drafts, outbox, people, reference
from models import followup as fq
from models.cases import Actor
from models.deadlines import RED
from models.lifecycle import (
    CaseError,
    IllegalTransition,
    NotPermitted,
    StaleVersion,
    running_deadline,
    running_stage,
)
from models.tables import RESOLVED, UNSATISFIED, URGENT, Case

log = logging.getLogger(__name__)
Context = ContextTypes.DEFAULT_TYPE

RATE = cb.RATE  # "rate:<case>:<version>:<rating>" on the survey
RATE_NOW = "ratenow"  # "直接提交": 不满意 without a comment
RATINGS = ("satisfied", "basic", "unsatisfied")
COMMENT_MAX = 1000
PENDING_PREFIX = "survey:"  # BotState "survey:<user id>": a 不满意 waiting for its comment
NOTICE_CURSOR = "followup:notices"  # BotState: last case event the notices have passed
# An event is passed by the cursor only once it is this old: a transaction that took an
# event id earlier but committed later is still seen (ids are not commit-ordered on PG).
NOTICE_SETTLE = timedelta(seconds=60)
NOTICE_CATCH_UP = timedelta(hours=24)  # a fresh cursor looks this far back
DIGEST_CASES_PER_DEPARTMENT = 3
SNIPPET = 40
STATE_KEY = "followup"


@dataclass(frozen=True)
class FollowupConfig:
    """The [followup] settings, parsed once."""

    escalate_after: timedelta
    survey_reminder: timedelta
    survey_close: timedelta
    digest_time: time
    comment_timeout: timedelta
    leader_chat: int | None

    @classmethod
    def from_settings(cls, settings) -> FollowupConfig:
        f = settings.followup
        hh, mm = (int(x) for x in str(f.get("digest_time", "08:30")).split(":"))
        leader = settings.telegram.get("leader_chat_id")
        return cls(
            escalate_after=timedelta(hours=float(f.get("escalate_after_red_hours", 24))),
            survey_reminder=timedelta(days=float(f.get("survey_reminder_days", 3))),
            survey_close=timedelta(days=float(f.get("survey_close_days", 6))),
            digest_time=time(hh, mm),
            comment_timeout=timedelta(
                minutes=float(settings.conversation.get("idle_timeout_minutes", 30))),
            leader_chat=int(leader) if leader else None,
        )


def _services(app_or_services) -> Services:
    return app_or_services if isinstance(app_or_services, Services) else services_of(
        app_or_services)


def snippet(case: Case) -> str:
    """The start of the case's text, on one line."""
    return intake.snippet(case.text, SNIPPET)


def stage_name(case: Case) -> str:
    """签收 while the case waits to be signed for, 办结 once it has been."""
    return texts.STAGE_NAMES[running_stage(case.status) or "resolve"]


def _key(case: Case, event: str, chat_id: int, version: int | None = None) -> str:
    """The outbox key scheme shared with bot/routing.py."""
    return f"case:{case.id}:{event}:{case.version if version is None else version}:{chat_id}"


# ---------------------------------------------------------------- the pass


async def run_followup_pass(app_or_services, now: datetime | None = None) -> Counter:
    """One pass of everything above; returns how many pushes of each kind it queued."""
    services = _services(app_or_services)
    now = now or services.clock()
    config = FollowupConfig.from_settings(services.settings)
    counts: Counter = Counter()
    counts.update(await queue_deadline_alerts(services, config, now))
    counts.update(await queue_digest(services, config, now))
    counts.update(await submit_stale_ratings(services, config, now))
    counts.update(await queue_surveys(services, config, now))
    counts.update(await queue_status_notices(services, now))
    if isinstance(app_or_services, Application) and sum(counts.values()):
        delivery.kick(app_or_services)
    return counts


# ---------------------------------------------------------------- 红黄灯 and 督办


async def queue_deadline_alerts(services: Services, config: FollowupConfig,
                                now: datetime) -> Counter:
    """Yellow reminders, red alarms and escalations for the cases that need one now."""
    async with services.read_session() as session:  # the scan needs no writer's turn
        due = await fq.due_alerts(session, now, services.rules,
                                  escalate_after=config.escalate_after)
        chats = await fq.department_chats(session)
    counts: Counter = Counter()
    for kind, found in (("yellow", due.yellow), ("red", due.red),
                        ("escalation", due.escalation)):
        for case in found:
            async with services.session() as session:
                if not await fq.claim_alert(session, case, kind, now):
                    continue  # another worker did it, or the case moved: next pass decides
                for chat_id, text, markup in _alert_pushes(kind, case, services, config, chats,
                                                          now):
                    await outbox.enqueue(session, key=_key(case, kind, chat_id), chat_id=chat_id,
                                         text=text, kind=kind, now=now, case_id=case.id,
                                         reply_markup=posts.as_dict(markup))
                if kind == "escalation":
                    await fq.record_escalation(session, case, now,
                                               hours_overdue=_overdue_hours(case, now))
            counts[kind] += 1
    return counts


def _overdue_hours(case: Case, now: datetime) -> float:
    return (now - running_deadline(case)).total_seconds() / 3600


def _alert_pushes(kind: str, case: Case, services: Services, config: FollowupConfig,
                  chats: dict[str, tuple[str, int | None]], now: datetime):
    """(chat id, text, keyboard) of each push an alert makes."""
    name, dept_chat = chats.get(case.department_code, (case.department_code or "", None))
    deadline = running_deadline(case)
    fields = {"ref": case.ref, "stage": stage_name(case), "snippet": snippet(case),
              "deadline": local_time(services, deadline), "department": name,
              "left": texts.span((deadline - now).total_seconds()),
              "over": texts.span((now - deadline).total_seconds()),
              "escalate_hours": f"{config.escalate_after.total_seconds() / 3600:g}",
              "urgent": texts.ESCALATION_URGENT if case.priority == URGENT else ""}
    keyboard = posts.department_keyboard(case)
    pushes = []
    if kind == "yellow":
        pushes.append((dept_chat, texts.REMINDER_YELLOW.format(**fields), keyboard))
    elif kind == "red":
        pushes.append((dept_chat, texts.ALARM_RED.format(**fields), keyboard))
    else:
        pushes.append((config.leader_chat, texts.ESCALATION_LEADER.format(**fields), None))
        pushes.append((dept_chat, texts.ESCALATION_DEPARTMENT.format(**fields), keyboard))
    for chat_id, _, _ in pushes:
        if chat_id is None:
            log.warning("%s of %s: no chat configured, push skipped", kind, case.ref)
    return [p for p in pushes if p[0] is not None]


# ---------------------------------------------------------------- daily digest


async def queue_digest(services: Services, config: FollowupConfig, now: datetime) -> Counter:
    """The leaders' digest of red cases, once per district-local day after digest_time."""
    local = services.rules.calendar.to_local(now)
    if config.leader_chat is None or local.time() < config.digest_time:
        return Counter()
    key = f"digest:{local:%Y%m%d}:{config.leader_chat}"
    async with services.session() as session:
        if await fq.outbox_key_exists(session, key):
            return Counter()
        counts = await fq.red_counts(session, now, services.rules)
        reds = await fq.lit_cases(session, now, services.rules, lights=(RED,), limit=1000)
        chats = await fq.department_chats(session)
        text = digest_text(local.date().strftime("%m月%d日"), counts, reds, chats, now)
        queued = await outbox.enqueue(session, key=key, chat_id=config.leader_chat, text=text,
                                      kind="digest", now=now)
    return Counter(digest=1 if queued else 0)


def digest_text(day: str, counts: dict[str, int], reds: list[tuple[Case, str]],
                chats: dict[str, tuple[str, int | None]], now: datetime) -> str:
    """Red cases per department, most first, with the longest overdue few of each."""
    lines = [texts.DIGEST_TITLE.format(date=day)]
    total = sum(counts.values())
    if not total:
        return "\n".join(lines + [texts.DIGEST_NONE])
    lines.append(texts.DIGEST_TOTAL.format(count=total))
    by_department: dict[str | None, list[Case]] = {}
    for case, _ in reds:
        by_department.setdefault(case.department_code, []).append(case)
    for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0] or "")):
        name = chats.get(code, (code or "—", None))[0]
        lines.append(texts.DIGEST_DEPARTMENT.format(department=name, count=count))
        shown = by_department.get(code, [])[:DIGEST_CASES_PER_DEPARTMENT]
        for case in shown:
            over = texts.span((now - running_deadline(case)).total_seconds())
            lines.append(texts.DIGEST_CASE.format(ref=case.ref, stage=stage_name(case), over=over))
        if count > len(shown):
            lines.append(texts.DIGEST_MORE.format(count=count - len(shown)))
    return fit("\n".join(lines), delivery.MAX_TEXT)


# ---------------------------------------------------------------- 回访 (surveys)


def survey_keyboard(case: Case) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[
        InlineKeyboardButton(texts.BTN_RATE[r], callback_data=cb.make(RATE, case.id,
                                                                      case.version, r))
        for r in RATINGS]])


async def queue_surveys(services: Services, config: FollowupConfig, now: datetime) -> Counter:
    """New surveys, the one reminder, and closing unanswered ones as 未评价."""
    counts: Counter = Counter()
    async with services.read_session() as session:
        new = await fq.surveys_due(session)
        reminders = await fq.survey_reminders_due(session, now, after=config.survey_reminder)
        expired = await fq.surveys_expired(session, now, after=config.survey_close)
        waiting = {v.get("case_id") for v in
                   (await drafts.load_states(session, PENDING_PREFIX)).values()}
    for case in new:
        counts["survey"] += await _queue_survey(services, config, case, now, reminder=False)
    for case in reminders:
        counts["survey_reminder"] += await _queue_survey(services, config, case, now,
                                                         reminder=True)
    for case in expired:
        if case.id in waiting:
            continue  # a 不满意 is waiting for its comment: it is submitted, not closed
        try:
            async with services.session() as session:
                await cases.close_unrated(session, case.id, now, rules=services.rules)
            counts["closed_unrated"] += 1
        except CaseError:
            pass  # answered (or reopened) meanwhile
    return counts


async def _queue_survey(services: Services, config: FollowupConfig, case: Case, now: datetime,
                        *, reminder: bool) -> int:
    """Queue the survey (or its reminder) for one case; 1 if this call queued it."""
    async with services.session() as session:
        if not await fq.claim_survey(session, case, now, reminder=reminder):
            return 0
        chat_id = await fq.reporter_chat(session, case)
        if chat_id is None:
            return 0  # blocked the bot: the case still closes as 未评价 in time
        # The 办结 notice carried the result: the survey only refers to it.
        subject = intake.subject(case.kind)
        if reminder:
            days = f"{(config.survey_close - config.survey_reminder).total_seconds() / 86400:g}"
            text = texts.SURVEY_REMINDER.format(ref=case.ref, subject=subject, days=days)
        else:
            text = texts.SURVEY.format(ref=case.ref, subject=subject)
        event = "survey_reminder" if reminder else "survey"
        await outbox.enqueue(session, key=_key(case, event, chat_id), chat_id=chat_id,
                             text=fit(text, delivery.MAX_TEXT), kind=event, now=now,
                             case_id=case.id, reply_markup=survey_keyboard(case).to_dict())
    return 1


async def submit_rating(session, services: Services, user_id: int, case_id: int, version: int,
                        rating: str, comment: str | None, now: datetime) -> Case:
    """The reporter's answer; 不满意 reopens the case and sends it back to the department
    with the comment (department post + reporter notice, in the same transaction). The
    notice is the reporter's only word of the reopening, whichever way the 不满意 came."""
    case = await cases.rate(session, case_id, Actor.reporter(user_id), rating, comment, now,
                            rules=services.rules, expected_version=version)
    if rating == UNSATISFIED:
        await _queue_reopened(session, services, case, comment, now)
    return case


async def _queue_reopened(session, services: Services, case: Case, comment: str | None,
                          now: datetime) -> None:
    dept = await reference.get_department(session, case.department_code)
    if dept is not None and dept.chat_id:
        text = texts.POST_REOPENED.format(
            ref=case.ref, comment=comment or texts.NO_COMMENT, resolution=case.resolution or "",
            sign_by=local_time(services, case.sign_by),
            resolve_by=local_time(services, case.resolve_by), snippet=snippet(case))
        await outbox.enqueue(session, key=_key(case, "reopened", dept.chat_id),
                             chat_id=dept.chat_id, text=fit(text, delivery.MAX_TEXT),
                             kind="department", now=now, case_id=case.id,
                             reply_markup=posts.as_dict(posts.department_keyboard(case)))
    chat_id = await fq.reporter_chat(session, case)
    if chat_id is not None:
        text, _ = notices.notice_text(services, case, "reopened")
        await outbox.enqueue_many(session, [
            await notices.notice_row(session, case, "reopened", chat_id, text, now)])


async def submit_stale_ratings(services: Services, config: FollowupConfig,
                               now: datetime) -> Counter:
    """A 不满意 whose comment never came is submitted without one after the idle timeout."""
    async with services.read_session() as session:
        pending = await drafts.load_states(session, PENDING_PREFIX)
    counts: Counter = Counter()
    for key, value in pending.items():
        if datetime.fromisoformat(value["at"]) > now - config.comment_timeout:
            continue
        user_id = int(key[len(PENDING_PREFIX):])
        try:
            async with services.session() as session:
                await submit_rating(session, services, user_id, value["case_id"],
                                    value["version"], UNSATISFIED, None, now)
                await drafts.save_states(session, {key: None}, now)
            counts["reopened"] += 1
        except CaseError as exc:
            log.info("stale rating of case %s dropped: %s", value["case_id"], exc)
            async with services.session() as session:
                await drafts.save_states(session, {key: None}, now)
    return counts


# ---------------------------------------------------------------- reporter notices from events


async def queue_status_notices(services: Services, now: datetime) -> Counter:
    """Queue a reporter notice for each recent status change that has none yet.

    The bot queues these itself as it makes each change; this catches changes made
    elsewhere (another worker, an admin tool). It reads without the writer's turn and
    writes only the notices that are really missing, so it costs replies nothing.
    """
    async with services.read_session() as session:
        state = await drafts.get_state(session, NOTICE_CURSOR)
        cursor = state["cursor"] if state else await fq.last_event_before(
            session, now - NOTICE_CATCH_UP)
        changes = await fq.status_notices(session, after_id=cursor)
        last_dispatch = {change.case.id: change.event.id for change in changes
                         if change.event.action == notices.DISPATCHED}
        wanted = {_notice_key(change): change for change in changes
                  if change.chat_id is not None and change.event.at >= now - NOTICE_CATCH_UP
                  and not _replaced(change, last_dispatch)}
        queued_before = await fq.existing_outbox_keys(session, list(wanted))
        missing = [change for key, change in wanted.items() if key not in queued_before]
    settled = _settled_cursor(cursor, changes, now)
    if not missing and settled == cursor and state is not None:
        return Counter()
    queued = 0
    async with services.session() as session:
        for change in missing:
            queued += await _queue_notice(session, services, change, now)
        await drafts.save_states(session, {NOTICE_CURSOR: {"cursor": settled}}, now)
    return Counter(notice=queued) if queued else Counter()


def _notice_key(change: fq.StatusNotice) -> str:
    return notices.notice_key(change.case.id, change.event.action, change.version,
                              change.chat_id)


def _replaced(change: fq.StatusNotice, last_dispatch: dict[int, int]) -> bool:
    """A 派单 the case has moved on from (re-routed, returned, reopened): its notice, if it
    was never queued, would now be wrong; the later change has its own.

    `last_dispatch`: the newest 派单 event id per case among the changes read.
    """
    if change.event.action != notices.DISPATCHED:
        return False
    case, event = change.case, change.event
    return (last_dispatch[case.id] > event.id or case.dispatched_at is None
            or case.dispatched_at > event.at)


def _settled_cursor(cursor: int, changes: list[fq.StatusNotice], now: datetime) -> int:
    """The newest event before which every change is old enough (NOTICE_SETTLE) that no
    transaction still open can add one with a smaller id."""
    settled = cursor
    for change in changes:
        if change.event.at > now - NOTICE_SETTLE:
            break
        settled = change.event.id
    return settled


async def _queue_notice(session, services: Services, change: fq.StatusNotice,
                        now: datetime) -> bool:
    """The reporter's notice of one status change; True if this call queued it."""
    event, case = change.event, change.case
    text, photo = notices.notice_text(services, case, event.action, event.details)
    due = notices.dispatch_due(services, event.at) if event.action == notices.DISPATCHED else None
    row = await notices.notice_row(session, case, event.action, change.chat_id, text, now,
                                   photo=photo, version=change.version, due=due)
    queued = await outbox.enqueue(session, key=row["key"], chat_id=row["chat_id"],
                                  text=row["text"], kind=row["kind"], now=now, photo=row["photo"],
                                  case_id=row["case_id"], due_at=row["due_at"])
    return queued is not None


# ---------------------------------------------------------------- survey buttons and comments


def _pending_filter(application: Application) -> filters.User:
    """Users with a 不满意 waiting for its comment (loaded from the store by the first pass)."""
    return application.bot_data.setdefault(STATE_KEY, {}).setdefault(
        "pending", filters.User(allow_empty=False))


async def on_rate_button(update: Update, context: Context) -> None:
    """满意 / 基本满意 close the case; 不满意 asks for a comment; 直接提交 reopens without one."""
    query = update.callback_query
    button = cb.parse(query.data)
    if button is None or button.verb not in (RATE, RATE_NOW) or button.arg not in RATINGS:
        await alert(query, intake.BUTTON_INVALID)
        return
    services = services_of(context)
    user_id, now = query.from_user.id, services.clock()
    if button.verb == RATE and button.arg == UNSATISFIED:
        await _ask_comment(update, context, button)
        return
    try:
        async with services.session() as session:
            case = await submit_rating(session, services, user_id, button.case_id,
                                       button.version, button.arg, None, now)
            cleared = await _clear_pending(session, user_id, case.id, now)
    except CaseError as exc:
        await alert(query, _refusal(exc))
        return
    if cleared:
        _pending_filter(context.application).remove_user_ids(user_id)
    delivery.kick(context.application)
    await query.answer()
    if button.arg == UNSATISFIED:  # 直接提交: the reopened notice follows
        done = texts.SURVEY_SUBMITTED_NO_COMMENT
    else:
        done = texts.SURVEY_THANKS.format(rating=texts.RATING_NAMES[button.arg], ref=case.ref)
    await query.edit_message_text(done, reply_markup=None)


async def _clear_pending(session, user_id: int, case_id: int, now: datetime) -> bool:
    """Forget the user's awaited comment if it is about this case; True if there was one."""
    key = f"{PENDING_PREFIX}{user_id}"
    pending = await drafts.get_state(session, key)
    if pending is None or pending.get("case_id") != case_id:
        return False
    await drafts.save_states(session, {key: None}, now)
    return True


def _refusal(exc: CaseError) -> str:
    if isinstance(exc, StaleVersion):
        return intake.BUTTON_EXPIRED
    if isinstance(exc, IllegalTransition):  # AlreadyDone included: answered or closed
        return texts.SURVEY_ALREADY_DONE
    if isinstance(exc, NotPermitted):
        return texts.SURVEY_NOT_YOURS
    return error_text(exc)


async def _ask_comment(update: Update, context: Context, button: cb.Callback) -> None:
    """不满意: remember it and ask for the reason (or 直接提交)."""
    query = update.callback_query
    services = services_of(context)
    user_id, now = query.from_user.id, services.clock()
    async with services.session() as session:
        case = await session.get(Case, button.case_id)
        reporter = await drafts.reporter_of_case(session, case) if case else None
        refusal = None
        if case is None or case.status != RESOLVED:
            refusal = texts.SURVEY_ALREADY_DONE
        elif reporter is None or reporter.telegram_id != user_id:
            refusal = texts.SURVEY_NOT_YOURS
        elif case.version != button.version:
            refusal = intake.BUTTON_EXPIRED
    if refusal is None:
        await _submit_earlier_pending(services, user_id, case.id, now)
        async with services.session() as session:
            await drafts.save_states(session, {f"{PENDING_PREFIX}{user_id}": {
                "case_id": case.id, "version": case.version, "at": now.isoformat()}}, now)
    if refusal:
        await alert(query, refusal)
        return
    _pending_filter(context.application).add_user_ids(user_id)
    await query.answer()
    name = department_name(services, case.department_code)
    submit = InlineKeyboardMarkup([[InlineKeyboardButton(
        texts.BTN_SUBMIT_RATING, callback_data=cb.make(RATE_NOW, case.id, case.version,
                                                       UNSATISFIED))]])
    await query.edit_message_text(
        fit(query.message.text or "", delivery.MAX_TEXT - 40) + "\n\n"
        + texts.SURVEY_ANSWERED.format(rating=texts.RATING_NAMES[UNSATISFIED]),
        reply_markup=None)
    await context.bot.send_message(
        user_id, texts.SURVEY_ASK_COMMENT.format(max=COMMENT_MAX, department=name),
        reply_markup=submit)


async def _submit_earlier_pending(services: Services, user_id: int, case_id: int,
                                  now: datetime) -> None:
    """One comment is awaited per person: a 不满意 still waiting on another case is submitted
    without its comment rather than forgotten."""
    key = f"{PENDING_PREFIX}{user_id}"
    async with services.session() as session:
        earlier = await drafts.get_state(session, key)
    if earlier is None or earlier["case_id"] == case_id:
        return
    try:
        async with services.session() as session:
            await submit_rating(session, services, user_id, earlier["case_id"],
                                earlier["version"], UNSATISFIED, None, now)
    except CaseError as exc:
        log.info("earlier rating of case %s dropped: %s", earlier["case_id"], exc)


async def on_comment(update: Update, context: Context) -> None:
    """The reason for 不满意, typed by a reporter the bot just asked."""
    services = services_of(context)
    user_id, now = update.effective_user.id, services.clock()
    message = update.effective_message
    key = f"{PENDING_PREFIX}{user_id}"
    async with services.session() as session:
        pending = await drafts.get_state(session, key)
    if pending is None:  # answered meanwhile (another device, the timeout)
        _pending_filter(context.application).remove_user_ids(user_id)
        return
    comment = (message.text or "").strip()
    if len(comment) > COMMENT_MAX:
        await message.reply_text(texts.SURVEY_COMMENT_TOO_LONG.format(length=len(comment),
                                                                      max=COMMENT_MAX))
        return
    refusal = None
    try:
        async with services.session() as session:
            await submit_rating(session, services, user_id, pending["case_id"],
                                pending["version"], UNSATISFIED, comment or None, now)
            await drafts.save_states(session, {key: None}, now)
    except CaseError as exc:
        async with services.session() as session:
            await drafts.save_states(session, {key: None}, now)
        refusal = _refusal(exc)
    _pending_filter(context.application).remove_user_ids(user_id)
    delivery.kick(context.application)  # the reopened notice is the answer
    if refusal:
        await message.reply_text(refusal)


async def on_my_chat_member(update: Update, context: Context) -> None:
    """A user blocked (or unblocked) the bot in their private chat: stop (or resume) pushes."""
    change = update.my_chat_member
    if change is None or change.chat.type != "private":
        return
    status = change.new_chat_member.status
    reachable = status not in ("kicked", "left")
    services = services_of(context)
    async with services.session() as session:
        await people.set_reporter_reachable(session, change.chat.id, reachable)


# ---------------------------------------------------------------- registration


async def _followup_job(context: Context) -> None:
    state = context.application.bot_data.setdefault(STATE_KEY, {})
    lock = state.setdefault("lock", asyncio.Lock())
    if lock.locked():
        return  # the previous pass is still running
    async with lock:
        if not state.get("pending_loaded"):
            await _load_pending(context.application)
            state["pending_loaded"] = True
        await run_followup_pass(context.application)


async def _load_pending(application: Application) -> None:
    """After a restart, reporters asked for a 不满意 comment are recognised again."""
    services = services_of(application)
    async with services.session() as session:
        pending = await drafts.load_states(session, PENDING_PREFIX)
    _pending_filter(application).add_user_ids([int(k[len(PENDING_PREFIX):]) for k in pending])


def build_worker(settings, *, token: str | None = None, base_url: str | None = None,
                 services: Services | None = None) -> Application:
    """An Application that only runs the follow-up pass and the outbox sender: no handlers
    read updates. Start any number of them next to the bot against one PostgreSQL database
    (`run_worker`); the compare-and-set claims and SKIP LOCKED keep every push single."""
    from bot.app import api_urls
    from models.db import make_engine

    token = token or settings.telegram_token
    if not token:
        raise ValueError("a worker needs the bot's token (TELEGRAM_TOKEN)")
    services = services or Services(
        settings=settings, engine=make_engine(settings.database_url, settings.database_echo),
        rules=deadlines.Rules.from_settings(settings), suggester=None, owns_engine=True)
    builder = Application.builder().token(token)
    api = base_url or settings.telegram_base_url
    if api:
        bot_url, file_url = api_urls(api)
        builder = builder.base_url(bot_url).base_file_url(file_url)
    application = builder.build()
    application.bot_data["services"] = services
    poll = float(settings.followup.get("poll_seconds", 5))
    application.job_queue.run_repeating(_followup_job, interval=poll, first=1, name="followup",
                                        job_kwargs=delivery.OVERLAP_ALLOWED)
    delivery.register_delivery(application)
    return application


async def run_worker(settings, *, token: str | None = None, base_url: str | None = None,
                     services: Services | None = None) -> None:
    """Run a follow-up worker until cancelled."""
    application = build_worker(settings, token=token, base_url=base_url, services=services)
    async with application:
        await application.start()
        try:
            await asyncio.Event().wait()
        finally:
            await application.stop()
            await application.bot_data["services"].dispose()


def register_followup(application: Application) -> None:
    """The follow-up job (every followup.poll_seconds), survey buttons and comments, the
    staff commands (/overdue /stats /policy) and /subscribe, /unsubscribe."""
    from bot import staff_commands

    services = services_of(application)
    poll = float(services.settings.followup.get("poll_seconds", 5))
    if application.job_queue is None:
        raise RuntimeError("the follow-up engine needs python-telegram-bot[job-queue]")
    application.job_queue.run_repeating(_followup_job, interval=poll, first=1,
                                        name="followup", job_kwargs=delivery.OVERLAP_ALLOWED)
    private_text = (filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE & filters.TEXT
                    & ~filters.COMMAND)
    application.add_handlers([
        CallbackQueryHandler(on_rate_button, pattern=cb.pattern(RATE, RATE_NOW)),
        MessageHandler(private_text & _pending_filter(application), on_comment),
        ChatMemberHandler(on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER),
        *staff_commands.handlers(),
    ])
