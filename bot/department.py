"""Department staff's buttons on dispatched cases: 签收, and the three that need a few words —
退回 (reason), 办结 (result + optional photo) and 申请延期 (reason + new date).

The three are a small ConversationHandler per (group, staff member): the bot asks with a
ForceReply addressed to that person, and the answer completes the action.

    退回 ─▶ RETURN_REASON ─▶ returned to triage
    办结 ─▶ RESOLVE_RESULT ─▶ RESOLVE_PHOTO (/skip) ─▶ resolved, reporter told
    申请延期 ─▶ EXTENSION_REASON ─▶ EXTENSION_DATE ─▶ request sent to triage
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from telegram import Update
from telegram.ext import (
    ConversationHandler,
)

from bot import actions, posts, staff_replies, texts
from bot import callbacks as cb
from bot.buttons import done, post_for, press
from bot.common import edit_post, local_time, now_of
from bot.context import Context
from bot.services import Services
from models.deadlines import deadline_after

DEPARTMENT = posts.DEPARTMENT_AUDIENCE
RETURN_REASON, RESOLVE_RESULT, RESOLVE_PHOTO, EXTENSION_REASON, EXTENSION_DATE = range(10, 15)
END = ConversationHandler.END
NAME = "staff"
PENDING = "staff_action"  # user_data key: {chat id: what the staff member is in the middle of}


# ---------------------------------------------------------------- 签收 (one press)


async def sign(update: Update, context: Context) -> None:
    """✍️ 签收: the department takes the case; the reporter is told."""
    result = await press(update, context, actions.sign, DEPARTMENT)
    if result:
        services = context.services
        await edit_post(
            update.callback_query, *post_for(result[1], services, DEPARTMENT, texts.DONE_SIGNED)
        )
        await done(update.callback_query)


# ---------------------------------------------------------------- the pending action
# (bot/staff_replies.py asks for the words and acts on them; these name this module's key)


def _pending(context: Context, chat_id: int) -> dict | None:
    return staff_replies.pending(context, PENDING, chat_id)


async def _begin(update: Update, context: Context, state: int, prompt: str) -> int | None:
    """Entry of 退回 / 办结 / 申请延期: check the presser may act, then ask for the words."""
    return await staff_replies.begin(
        update, context, key=PENDING, audience=DEPARTMENT, state=state, prompt=prompt
    )


async def begin_return(update: Update, context: Context) -> int | None:
    return await _begin(update, context, RETURN_REASON, texts.ASK_RETURN_REASON)


async def begin_resolve(update: Update, context: Context) -> int | None:
    return await _begin(update, context, RESOLVE_RESULT, texts.ASK_RESOLUTION)


async def begin_extension(update: Update, context: Context) -> int | None:
    return await _begin(update, context, EXTENSION_REASON, texts.ASK_EXTENSION_REASON)


async def _finish(update: Update, context: Context, action, done: str, ok_text: str) -> int | None:
    """Run the action for the pending button; update the original post; end the conversation.

    Bad words (InvalidInput) keep the question open; any other refusal ends it.
    """
    return await staff_replies.finish(
        update,
        context,
        key=PENDING,
        audience=DEPARTMENT,
        action=action,
        done=lambda acted: done,
        answer=lambda acted: ok_text.format(ref=acted.case.ref),
    )


# ---------------------------------------------------------------- 退回


async def got_return_reason(update: Update, context: Context) -> int | None:
    reason = await staff_replies.typed_words(update, staff_replies.REASON_MAX)
    if reason is None:
        return None

    async def action(services, user_id, button):
        return await actions.return_to_triage(services, user_id, button, reason)

    return await _finish(update, context, action, texts.DONE_RETURNED, texts.RETURNED_OK)


# ---------------------------------------------------------------- 办结


async def _keep_words(
    update: Update, context: Context, field: str, high: int, next_prompt: str, next_state: int
) -> int | None:
    return await staff_replies.keep_words(
        update,
        context,
        key=PENDING,
        field=field,
        high=high,
        next_prompt=next_prompt,
        next_state=next_state,
    )


async def got_resolution(update: Update, context: Context) -> int | None:
    return await _keep_words(
        update,
        context,
        "result",
        staff_replies.RESULT_MAX,
        texts.ASK_RESOLUTION_PHOTO,
        RESOLVE_PHOTO,
    )


async def _resolve(update: Update, context: Context, photo: str | None) -> int | None:
    pending = _pending(context, update.effective_chat.id)
    if pending is None:
        return END
    result = pending["result"]

    async def action(services, user_id, button):
        return await actions.resolve_case(services, user_id, button, result, photo)

    return await _finish(update, context, action, texts.DONE_RESOLVED, texts.RESOLVED_OK)


async def got_resolution_photo(update: Update, context: Context) -> int | None:
    return await _resolve(update, context, update.message.photo[-1].file_id)


async def skip_resolution_photo(update: Update, context: Context) -> int | None:
    return await _resolve(update, context, None)


# ---------------------------------------------------------------- 申请延期

_FULL_DATE = re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$")
_SHORT_DATE = re.compile(r"^(\d{1,2})[-/.月](\d{1,2})日?$")


def parse_new_deadline(text: str, services: Services, now: datetime) -> datetime | None:
    """'2026-12-01', '12-01' or '12月1日' → that day's end of work (district time) in UTC.

    None when unreadable or not after today.
    """
    calendar = services.rules.calendar
    today = calendar.to_local(now).date()
    raw = text.strip().replace(" ", "")
    try:
        if m := _FULL_DATE.match(raw):
            day = date(int(m[1]), int(m[2]), int(m[3]))
        elif m := _SHORT_DATE.match(raw):
            day = date(today.year, int(m[1]), int(m[2]))
            if day <= today:  # "01-05" said in December means next January
                day = day.replace(year=today.year + 1)
        else:
            return None
    except ValueError:
        return None
    if day <= today or day > today + timedelta(days=366):
        return None
    end_of_work = time.fromisoformat(services.settings.calendar.workday_end)
    local = datetime.combine(day, end_of_work, tzinfo=calendar.tz)
    return calendar.to_utc(local)


EXAMPLE_EXTENSION = "3wd"  # the prompt's example date: this long after the current deadline


def example_date(services: Services, resolve_by: datetime | None, now: datetime) -> date:
    """A date the 申请延期 prompt can give as its example: a few working days after the
    current deadline (or after now, for an overdue case), so always one the parser takes."""
    calendar = services.rules.calendar
    start = max(resolve_by or now, now)
    return calendar.to_local(deadline_after(start, EXAMPLE_EXTENSION, calendar)).date()


def _current_deadline(context: Context, chat_id: int) -> datetime | None:
    """The resolve_by of the case the pending 申请延期 is about (as its button was pressed)."""
    resolve_by = (_pending(context, chat_id) or {}).get("resolve_by")
    return datetime.fromisoformat(resolve_by) if resolve_by else None


def _example(context: Context, chat_id: int) -> date:
    return example_date(context.services, _current_deadline(context, chat_id), now_of(context))


async def got_extension_reason(update: Update, context: Context) -> int | None:
    chat_id = update.effective_chat.id
    example = _example(context, chat_id)
    prompt = texts.ASK_EXTENSION_DATE.format(
        deadline=local_time(context.services, _current_deadline(context, chat_id)),
        example=example.isoformat(),
        short=f"{example:%m-%d}",
    )
    return await _keep_words(
        update, context, "reason", staff_replies.REASON_MAX, prompt, EXTENSION_DATE
    )


async def got_extension_date(update: Update, context: Context) -> int | None:
    services = context.services
    new_resolve_by = parse_new_deadline(update.message.text, services, now_of(context))
    if new_resolve_by is None:
        example = _example(context, update.effective_chat.id)
        await update.message.reply_text(
            texts.EXTENSION_DATE_INVALID.format(example=example.isoformat())
        )
        return None
    pending = _pending(context, update.effective_chat.id)
    if pending is None:
        return END
    reason = pending["reason"]

    async def action(services, user_id, button):
        acted, _request = await actions.ask_extension(
            services, user_id, button, reason, new_resolve_by
        )
        return acted

    done = texts.DONE_EXT_REQUESTED.format(date=local_time(services, new_resolve_by))
    return await _finish(update, context, action, done, texts.EXTENSION_REQUESTED_OK)


# ---------------------------------------------------------------- cancel, timeout, assembly


def build(idle_minutes: float) -> ConversationHandler:
    """The staff ConversationHandler, one conversation per (group, staff member)."""
    return staff_replies.conversation(
        name=NAME,
        key=PENDING,
        idle_minutes=idle_minutes,
        buttons=[
            (cb.RETURN, begin_return),
            (cb.RESOLVE, begin_resolve),
            (cb.EXTEND, begin_extension),
        ],
        states={
            RETURN_REASON: staff_replies.typed(got_return_reason),
            RESOLVE_RESULT: staff_replies.typed(got_resolution),
            RESOLVE_PHOTO: staff_replies.photo_or_skip(got_resolution_photo, skip_resolution_photo),
            EXTENSION_REASON: staff_replies.typed(got_extension_reason),
            EXTENSION_DATE: staff_replies.typed(got_extension_date),
        },
    )
