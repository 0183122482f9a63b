"""Grid (and street) staff's buttons on the cases their grid handles — 吹哨报到:

签收 and 核查通过 are one press; 吹哨 shows where to (the street or a district department),
and the three that need a few words are a small ConversationHandler per (chat, staff member),
asked with a ForceReply as in bot/department.py:

    办结 ─▶ RESOLVE_RESULT ─▶ RESOLVE_PHOTO (/skip) ─▶ resolved, reporter told
    吹哨 ─▶ 吹哨至 X ─▶ WHISTLE_REASON ─▶ the street's staff or X's 工作群 get it
    核查不通过 ─▶ VERIFY_REASON ─▶ back to the department

and 我要吹哨 (/whistle): a grid worker's own 雷锋哨 from the field, one message long:

    /whistle ─▶ FIELD_TEXT ─▶ a case in their grid, with the grid's staff at once
"""

from __future__ import annotations

from datetime import timedelta

from telegram import Update
from telegram.ext import (
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot import actions, posts, staff_replies, texts
from bot import callbacks as cb
from bot.buttons import done, post_for, press, swap_keyboard
from bot.common import edit_post, kick_delivery
from bot.context import Context
from bot.conversation import description_problem
from bot.services import Services
from models.lifecycle import CaseError

GRID = posts.GRID_AUDIENCE
RESOLVE_RESULT, RESOLVE_PHOTO, WHISTLE_REASON, VERIFY_REASON, FIELD_TEXT = range(40, 45)
FIELD_NAME = "field_report"
END = ConversationHandler.END
NAME = "grid_staff"
PENDING = "grid_action"  # user_data key: {chat id: what the staff member is in the middle of}


# ---------------------------------------------------------------- one press


async def sign(update: Update, context: Context) -> None:
    """✍️ 签收 by the grid (or the street)."""
    result = await press(update, context, actions.grid_sign, GRID)
    if result:
        await edit_post(
            update.callback_query,
            *post_for(result[1], context.services, GRID, texts.DONE_GRID_SIGNED),
        )
        await done(update.callback_query)


async def verify_passed(update: Update, context: Context) -> None:
    """✅ 核查通过: the department's 办结 stands; the reporter is told and asked (回访)."""

    async def action(services, user_id, button):
        return await actions.verify(services, user_id, button, passed=True)

    result = await press(update, context, action, GRID)
    if result:
        await edit_post(
            update.callback_query, *post_for(result[1], context.services, GRID, texts.DONE_VERIFIED)
        )
        await done(update.callback_query)


async def show_whistle_targets(update: Update, context: Context) -> None:
    """📣 吹哨: the street (if it has staff and the case is below it) and every department."""

    async def targets(services: Services, user_id: int, button: cb.Callback):
        street = await actions.whistle_street(services, user_id, button)
        case, _ = await actions.current_case(services, button.case_id)
        return posts.whistle_picker(case, services, street), texts.PICK_WHISTLE_TARGET

    await swap_keyboard(update, context, GRID, targets)


async def hide_whistle_targets(update: Update, context: Context) -> None:
    """↩️ 返回: the post's own buttons again."""

    async def own_buttons(services: Services, user_id: int, button: cb.Callback):
        case, _ = await actions.current_case(services, button.case_id)
        return posts.grid_keyboard(case), None

    await swap_keyboard(update, context, GRID, own_buttons)


# ---------------------------------------------------------------- the words


async def _begin(update: Update, context: Context, state: int, prompt: str) -> int | None:
    return await staff_replies.begin(
        update, context, key=PENDING, audience=GRID, state=state, prompt=prompt
    )


async def begin_resolve(update: Update, context: Context) -> int | None:
    return await _begin(update, context, RESOLVE_RESULT, texts.ASK_RESOLUTION)


async def begin_whistle(update: Update, context: Context) -> int | None:
    button = cb.parse(update.callback_query.data)
    target = actions.whistle_target_name(context.services, button.arg if button else None)
    return await _begin(
        update, context, WHISTLE_REASON, texts.ASK_WHISTLE_REASON.format(target=target)
    )


async def begin_verify_fail(update: Update, context: Context) -> int | None:
    return await _begin(update, context, VERIFY_REASON, texts.ASK_VERIFY_REASON)


def _pending(context: Context, chat_id: int) -> dict | None:
    return staff_replies.pending(context, PENDING, chat_id)


async def got_resolution(update: Update, context: Context) -> int | None:
    return await staff_replies.keep_words(
        update,
        context,
        key=PENDING,
        field="result",
        high=staff_replies.RESULT_MAX,
        next_prompt=texts.ASK_RESOLUTION_PHOTO,
        next_state=RESOLVE_PHOTO,
    )


async def _resolve(update: Update, context: Context, photo: str | None) -> int | None:
    waiting = _pending(context, update.effective_chat.id)
    if waiting is None:
        return END
    result = waiting["result"]

    async def action(services, user_id, button):
        return await actions.grid_resolve(services, user_id, button, result, photo)

    return await staff_replies.finish(
        update,
        context,
        key=PENDING,
        audience=GRID,
        action=action,
        done=lambda acted: texts.DONE_GRID_RESOLVED,
        answer=lambda acted: texts.GRID_RESOLVED_OK.format(ref=acted.case.ref),
    )


async def got_resolution_photo(update: Update, context: Context) -> int | None:
    return await _resolve(update, context, update.message.photo[-1].file_id)


async def skip_resolution_photo(update: Update, context: Context) -> int | None:
    return await _resolve(update, context, None)


async def got_whistle_reason(update: Update, context: Context) -> int | None:
    reason = await staff_replies.typed_words(update, staff_replies.REASON_MAX)
    if reason is None:
        return None
    services = context.services

    async def action(services, user_id, button):
        return await actions.whistle(services, user_id, button, reason)

    def target(acted) -> str:
        street = acted.case.department_code is None
        return (
            services.gridmap.name(acted.case.handling_grid_code)
            if street
            else actions.whistle_target_name(services, acted.case.department_code)
        )

    return await staff_replies.finish(
        update,
        context,
        key=PENDING,
        audience=GRID,
        action=action,
        done=lambda acted: texts.DONE_WHISTLED.format(target=target(acted)),
        answer=lambda acted: texts.WHISTLED_OK.format(ref=acted.case.ref, target=target(acted)),
    )


async def got_verify_reason(update: Update, context: Context) -> int | None:
    reason = await staff_replies.typed_words(update, staff_replies.REASON_MAX)
    if reason is None:
        return None
    services = context.services

    async def action(services, user_id, button):
        return await actions.verify(services, user_id, button, passed=False, reason=reason)

    return await staff_replies.finish(
        update,
        context,
        key=PENDING,
        audience=GRID,
        action=action,
        done=lambda acted: texts.DONE_VERIFY_FAILED.format(
            department=actions.whistle_target_name(services, acted.case.department_code)
        ),
        answer=lambda acted: texts.VERIFY_FAILED_OK.format(ref=acted.case.ref),
    )


def build(idle_minutes: float) -> ConversationHandler:
    """The grid staff's ConversationHandler, one conversation per (chat, staff member)."""
    return staff_replies.conversation(
        name=NAME,
        key=PENDING,
        idle_minutes=idle_minutes,
        buttons=[
            (cb.GRID_RESOLVE, begin_resolve),
            (cb.WHISTLE_TO, begin_whistle),
            (cb.VERIFY_FAIL, begin_verify_fail),
        ],
        states={
            RESOLVE_RESULT: staff_replies.typed(got_resolution),
            RESOLVE_PHOTO: staff_replies.photo_or_skip(got_resolution_photo, skip_resolution_photo),
            WHISTLE_REASON: staff_replies.typed(got_whistle_reason),
            VERIFY_REASON: staff_replies.typed(got_verify_reason),
        },
    )


# ---------------------------------------------------------------- 我要吹哨 (/whistle)


async def start_field_report(update: Update, context: Context) -> int:
    """/whistle: grid and street staff only; ask for the one message that describes it."""
    try:
        await actions.field_reporter(context.services, update.effective_user.id)
    except CaseError as exc:
        await update.message.reply_text(texts.error_text(exc))
        return END
    await update.message.reply_text(texts.ASK_FIELD_REPORT)
    return FIELD_TEXT


async def got_field_report(update: Update, context: Context) -> int | None:
    text = update.message.text.strip()
    problem = description_problem(context, text)  # the same rule as a resident's report
    if problem:
        await update.message.reply_text(problem)
        return None
    user = update.effective_user
    try:
        case, handler = await actions.field_report(
            context.services, user.id, user.full_name, text, update.message.message_id
        )
    except CaseError as exc:
        await update.message.reply_text(texts.error_text(exc))
        return None
    kick_delivery(context.application)
    grid = context.services.gridmap.name(handler.grid_code) if handler else "—"
    await update.message.reply_text(texts.FIELD_REPORT_OK.format(ref=case.ref, grid=grid))
    return END


async def field_report_not_text(update: Update, context: Context) -> None:
    await update.effective_message.reply_text(texts.FIELD_REPORT_TEXT_ONLY)


async def cancel_field_report(update: Update, context: Context) -> int:
    await update.effective_message.reply_text(texts.FIELD_REPORT_CANCELLED)
    return END


def build_field_report(idle_minutes: float) -> ConversationHandler:
    """我要吹哨: /whistle (or the words 我要吹哨) in a private chat, then one message."""
    private = filters.ChatType.PRIVATE
    words = filters.UpdateType.MESSAGE & private & filters.TEXT & ~filters.COMMAND
    return ConversationHandler(
        entry_points=[
            CommandHandler("whistle", start_field_report, filters=private),
            MessageHandler(words & filters.Text([texts.MENU_WHISTLE]), start_field_report),
        ],
        states={
            FIELD_TEXT: [
                MessageHandler(words, got_field_report),
                MessageHandler(
                    filters.UpdateType.MESSAGE & private & ~filters.COMMAND, field_report_not_text
                ),
            ],
        },
        fallbacks=[CommandHandler("cancel", cancel_field_report)],
        name=FIELD_NAME,
        persistent=True,
        allow_reentry=True,
        conversation_timeout=timedelta(minutes=idle_minutes),
    )
