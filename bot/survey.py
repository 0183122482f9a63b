"""回访 in the chat: the survey's buttons (满意 / 基本满意 / 不满意) and the 不满意 comment.

满意 and 基本满意 close the case; 不满意 asks for an optional comment (or 直接提交), then reopens
the case back to the same department. The follow-up duties (bot/duties/) send the surveys and
submit a 不满意 whose comment never came.
"""

from __future__ import annotations

import logging
from datetime import datetime

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import Application, filters

from bot import callbacks as cb
from bot import delivery, notices, posts
from bot.common import alert, department_name, fit, local_time, snippet
from bot.context import Context
from bot.services import Services, services_of
from bot.texts import followup as texts
from bot.texts import gridwork as grid_texts
from bot.texts import intake
from bot.texts.errors import error_text
from models import cases, drafts, followers, gridwork, outbox, reference
from models.cases import Actor
from models.lifecycle import CaseError, IllegalTransition, NotPermitted, StaleVersion
from models.tables import GRID_ASSIGNED, RESOLVED, UNSATISFIED, Case

log = logging.getLogger(__name__)

RATINGS = ("satisfied", "basic", "unsatisfied")
COMMENT_MAX = 1000
PENDING_PREFIX = "survey:"  # BotState "survey:<user id>": a 不满意 waiting for its comment
STATE_KEY = "survey"  # bot_data: the filter of users whose comment is awaited


def survey_keyboard(case: Case, verb: str = cb.RATE) -> InlineKeyboardMarkup:
    """The three answers; a follower's (cb.RATE_FOLLOWER) are recorded, not acted on."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    texts.BTN_RATE[r], callback_data=cb.make(verb, case.id, case.version, r)
                )
                for r in RATINGS
            ]
        ]
    )


async def on_follower_rate(update: Update, context: Context) -> None:
    """A follower's 回访 answer: thanked, kept with their follow (models/followers.rate)."""
    query = update.callback_query
    button = cb.parse(query.data)
    if button is None or button.arg not in RATINGS:
        await alert(query, intake.BUTTON_INVALID)
        return
    services = context.services
    try:
        async with services.session() as session:
            case = await followers.rate(
                session, button.case_id, query.from_user.id, button.arg, services.clock()
            )
    except CaseError as exc:
        await alert(query, error_text(exc))
        return
    await query.edit_message_text(
        texts.FOLLOWER_RATED.format(rating=texts.RATING_NAMES[button.arg], ref=case.ref),
        reply_markup=None,
    )
    await query.answer()  # last: the spinner stops once the thanks is showing


async def submit_rating(
    session,
    services: Services,
    user_id: int,
    case_id: int,
    version: int,
    rating: str,
    comment: str | None,
    now: datetime,
) -> Case:
    """The reporter's answer; 不满意 reopens the case and sends it back to the department (or
    the grid that resolved it) with the comment (department post + reporter notice, in the same transaction). The
    notice is the reporter's only word of the reopening, whichever way the 不满意 came."""
    case = await cases.rate(
        session,
        case_id,
        Actor.reporter(user_id),
        rating,
        comment,
        now,
        rules=services.rules,
        expected_version=version,
    )
    if rating == UNSATISFIED:
        await _queue_reopened(session, services, case, comment, now)
    return case


async def _queue_reopened(
    session, services: Services, case: Case, comment: str | None, now: datetime
) -> None:
    dept = await reference.get_department(session, case.department_code)
    if case.status == GRID_ASSIGNED:  # resolved in the grid: back to the grid's staff
        headline = grid_texts.POST_GRID_REOPENED.format(
            ref=case.ref, comment=comment or texts.NO_COMMENT
        )
        staff = await gridwork.staff_of_grid(session, case.handling_grid_code)
        text = posts.grid_text(case, services, headline=headline)
        await outbox.enqueue_many(
            session,
            [
                notices.push_row(
                    case, "reopened", chat_id, text, "grid", now, markup=posts.grid_keyboard(case)
                )
                for chat_id in staff
            ],
        )
    elif dept is not None and dept.chat_id:
        text = texts.POST_REOPENED.format(
            ref=case.ref,
            comment=comment or texts.NO_COMMENT,
            resolution=case.resolution or "",
            sign_by=local_time(services, case.sign_by),
            resolve_by=local_time(services, case.resolve_by),
            snippet=snippet(case),
        )
        await outbox.enqueue(
            session,
            key=notices.case_key(case, "reopened", dept.chat_id),
            chat_id=dept.chat_id,
            text=fit(text, delivery.MAX_TEXT),
            kind="department",
            now=now,
            case_id=case.id,
            reply_markup=posts.as_dict(posts.department_keyboard(case)),
        )
    notice = await notices.reporter_notice(session, services, case, "reopened", now)
    if notice is not None:
        await outbox.enqueue_many(session, [notice])


def pending_filter(application: Application) -> filters.User:
    """Users with a 不满意 waiting for its comment (loaded from the store by the first pass)."""
    return application.bot_data.setdefault(STATE_KEY, filters.User(allow_empty=False))


async def on_rate_button(update: Update, context: Context) -> None:
    """满意 / 基本满意 close the case; 不满意 asks for a comment; 直接提交 reopens without one."""
    query = update.callback_query
    button = cb.parse(query.data)
    if button is None or button.verb not in (cb.RATE, cb.RATE_NOW) or button.arg not in RATINGS:
        await alert(query, intake.BUTTON_INVALID)
        return
    services = context.services
    user_id, now = query.from_user.id, services.clock()
    if button.verb == cb.RATE and button.arg == UNSATISFIED:
        await _ask_comment(update, context, button)
        return
    try:
        async with services.session() as session:
            case = await submit_rating(
                session, services, user_id, button.case_id, button.version, button.arg, None, now
            )
            cleared = await _clear_pending(session, user_id, case.id, now)
    except CaseError as exc:
        await alert(query, _refusal(exc))
        return
    if cleared:
        pending_filter(context.application).remove_user_ids(user_id)
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
    services = context.services
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
            await drafts.save_states(
                session,
                {
                    f"{PENDING_PREFIX}{user_id}": {
                        "case_id": case.id,
                        "version": case.version,
                        "at": now.isoformat(),
                    }
                },
                now,
            )
    if refusal:
        await alert(query, refusal)
        return
    pending_filter(context.application).add_user_ids(user_id)
    await query.answer()
    name = department_name(services, case.department_code)
    submit = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    texts.BTN_SUBMIT_RATING,
                    callback_data=cb.make(cb.RATE_NOW, case.id, case.version, UNSATISFIED),
                )
            ]
        ]
    )
    await query.edit_message_text(
        fit(query.message.text or "", delivery.MAX_TEXT - 40)
        + "\n\n"
        + texts.SURVEY_ANSWERED.format(rating=texts.RATING_NAMES[UNSATISFIED]),
        reply_markup=None,
    )
    await context.bot.send_message(
        user_id,
        texts.SURVEY_ASK_COMMENT.format(max=COMMENT_MAX, department=name),
        reply_markup=submit,
    )


async def _submit_earlier_pending(
    services: Services, user_id: int, case_id: int, now: datetime
) -> None:
    """One comment is awaited per person: a 不满意 still waiting on another case is submitted
    without its comment rather than forgotten."""
    key = f"{PENDING_PREFIX}{user_id}"
    async with services.session() as session:
        earlier = await drafts.get_state(session, key)
    if earlier is None or earlier["case_id"] == case_id:
        return
    try:
        async with services.session() as session:
            await submit_rating(
                session,
                services,
                user_id,
                earlier["case_id"],
                earlier["version"],
                UNSATISFIED,
                None,
                now,
            )
    except CaseError as exc:
        log.info("earlier rating of case %s dropped: %s", earlier["case_id"], exc)


async def on_comment(update: Update, context: Context) -> None:
    """The reason for 不满意, typed by a reporter the bot just asked."""
    services = context.services
    user_id, now = update.effective_user.id, services.clock()
    message = update.effective_message
    key = f"{PENDING_PREFIX}{user_id}"
    async with services.session() as session:
        pending = await drafts.get_state(session, key)
    if pending is None:  # answered meanwhile (another device, the timeout)
        pending_filter(context.application).remove_user_ids(user_id)
        return
    comment = (message.text or "").strip()
    if len(comment) > COMMENT_MAX:
        await message.reply_text(
            texts.SURVEY_COMMENT_TOO_LONG.format(length=len(comment), max=COMMENT_MAX)
        )
        return
    refusal = None
    try:
        async with services.session() as session:
            await submit_rating(
                session,
                services,
                user_id,
                pending["case_id"],
                pending["version"],
                UNSATISFIED,
                comment or None,
                now,
            )
            await drafts.save_states(session, {key: None}, now)
    except CaseError as exc:
        async with services.session() as session:
            await drafts.save_states(session, {key: None}, now)
        refusal = _refusal(exc)
    pending_filter(context.application).remove_user_ids(user_id)
    delivery.kick(context.application)  # the reopened notice is the answer
    if refusal:
        await message.reply_text(refusal)


async def load_pending(application: Application) -> None:
    """After a restart, reporters asked for a 不满意 comment are recognised again."""
    services = services_of(application)
    async with services.session() as session:
        pending = await drafts.load_states(session, PENDING_PREFIX)
    pending_filter(application).add_user_ids([int(k[len(PENDING_PREFIX) :]) for k in pending])
