"""A staff button that needs a few words: ask the presser in the group, act on the answer.

The bot asks with a ForceReply addressed to the presser (mention + selective); what the button
was about waits in user_data under `key`, per group, until the answer completes the action,
/cancel drops it or the conversation times out. Used by the department's 退回 / 办结 / 申请延期
(bot/department.py), triage's 不予受理 其他 / 重复反映 (bot/triage.py), the 攻坚哨's decision and
part results (bot/hard.py) and the grid staff's 办结 / 吹哨 / 核查 (bot/grid.py), each from a small
ConversationHandler per (chat, staff member) that `conversation` assembles the same way for all.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from telegram import ForceReply, Update
from telegram.constants import ParseMode
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import actions, texts
from bot import callbacks as cb
from bot.buttons import attempt, post_for
from bot.common import MAX_CAPTION, MAX_TEXT, buttons_start_conversations, fit, kick_delivery
from bot.context import Context
from bot.services import Services
from models.lifecycle import CaseError, StaleVersion
from models.validation import InvalidInput

END = ConversationHandler.END
Action = Callable[[Services, int, cb.Callback], Awaitable[actions.Acted]]
Check = Callable[[actions.Acted], None]
Step = Callable[[Update, Context], Awaitable[int | None]]

# What a staff member types in answer: words, not a command (/cancel, /skip are handled apart).
WORDS = filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND
# How long a typed reason or result may be: checked here so that a bad answer is asked again
# in the same conversation (the store checks again when it writes).
REASON_MIN, REASON_MAX, RESULT_MAX = 2, 500, 2000


def pending(context: Context, key: str, chat_id: int) -> dict | None:
    """What the user is in the middle of in this chat, or None."""
    return context.user_data.get(key, {}).get(str(chat_id))


def set_pending(context: Context, key: str, chat_id: int, value: dict | None) -> None:
    waiting = context.user_data.setdefault(key, {})
    if value is None:
        waiting.pop(str(chat_id), None)
        if not waiting:
            context.user_data.pop(key, None)
    else:
        waiting[str(chat_id)] = value


async def ask(update: Update, prompt: str) -> None:
    """Ask the presser in the group with a ForceReply aimed at them (mention + selective)."""
    user = update.effective_user
    mention = f'<a href="tg://user?id={user.id}">{html.escape(user.full_name)}</a>'
    await update.effective_chat.send_message(
        f"{mention} {html.escape(prompt)}",
        parse_mode=ParseMode.HTML,
        reply_markup=ForceReply(selective=True),
    )


def words_problem(text: str, high: int) -> str | None:
    """Why these typed words cannot be a reason or result (at most `high` characters), or None."""
    text = text.strip()
    if len(text) < REASON_MIN:
        return texts.REASON_TOO_SHORT.format(min=REASON_MIN)
    if len(text) > high:
        return texts.REASON_TOO_LONG.format(max=high)
    return None


async def typed_words(update: Update, high: int) -> str | None:
    """The words the staff member typed, stripped; None, once told why, when they are too
    short or too long (the conversation stays in its state to be answered again)."""
    words = update.message.text.strip()
    problem = words_problem(words, high)
    if problem:
        await update.message.reply_text(problem)
        return None
    return words


async def keep_words(
    update: Update,
    context: Context,
    *,
    key: str,
    field: str,
    high: int,
    next_prompt: str,
    next_state: int,
) -> int | None:
    """Store typed words (a result, a reason) under `field` of what waits under `key`, then ask
    the next question; bad words are answered and asked again (state unchanged)."""
    words = await typed_words(update, high)
    if words is None:
        return None
    waiting = pending(context, key, update.effective_chat.id)
    if waiting is None:  # dropped meanwhile (/cancel in another update, a timeout)
        return END
    waiting[field] = words
    await ask(update, next_prompt)
    return next_state


async def begin(
    update: Update,
    context: Context,
    *,
    key: str,
    audience: str,
    state: int,
    prompt: str,
    check: Check | None = None,
) -> int | None:
    """Entry of a button that needs words: check the presser may act now (and `check`, which
    raises a CaseError when the case cannot take this action), then ask for the words."""

    async def checked(services: Services, user_id: int, button: cb.Callback) -> actions.Acted:
        acted = await actions.check_button(services, user_id, button)
        if check is not None:
            check(acted)
        return acted

    result = await attempt(update, context, audience, checked)
    if result is None:
        return None
    button, acted = result
    query = update.callback_query
    message = query.message
    set_pending(
        context,
        key,
        message.chat.id,
        {
            "verb": button.verb,
            "case_id": button.case_id,
            "version": button.version,
            "arg": button.arg,  # e.g. where a 吹哨 goes (bot/grid.py)
            "ref": acted.case.ref,
            "message_id": message.message_id,
            "photo_post": bool(getattr(message, "photo", None)),
            # The 申请延期 prompt's example date counts from the deadline the presser saw.
            "resolve_by": acted.case.resolve_by.isoformat() if acted.case.resolve_by else None,
        },
    )
    await ask(update, prompt)
    await query.answer()
    return state


async def finish(
    update: Update,
    context: Context,
    *,
    key: str,
    audience: str,
    action: Action,
    done: Callable[[actions.Acted], str],
    answer: Callable[[actions.Acted], str],
) -> int | None:
    """Run `action` for the waiting button, redraw the post it was on, end the conversation.

    Bad words (InvalidInput) are answered and asked for again; any other refusal ends it.
    `done(acted)` is the footer the post gets, `answer(acted)` the reply to the presser.
    """
    services = context.services
    chat_id = update.effective_chat.id
    waiting = pending(context, key, chat_id)
    if waiting is None:
        return END
    button = cb.Callback(
        waiting["verb"], waiting["case_id"], waiting["version"], waiting.get("arg")
    )
    try:
        acted = await action(services, update.effective_user.id, button)
    except InvalidInput as exc:
        await update.effective_message.reply_text(texts.error_text(exc))
        return None
    except CaseError as exc:
        set_pending(context, key, chat_id, None)
        message = texts.BUTTON_EXPIRED if isinstance(exc, StaleVersion) else texts.error_text(exc)
        await update.effective_message.reply_text(message)
        return END
    kick_delivery(context.application)
    set_pending(context, key, chat_id, None)
    await update.effective_message.reply_text(answer(acted))
    await _redraw(
        context, services, chat_id, waiting, post_for(acted, services, audience, done(acted))
    )
    return END


async def _redraw(
    context: Context, services: Services, chat_id: int, waiting: dict, post: tuple[str, object]
) -> None:
    """Bring the post the button was on up to date (new buttons, who did what)."""
    text, keyboard = post
    try:
        if waiting["photo_post"]:
            await context.bot.edit_message_caption(
                chat_id,
                waiting["message_id"],
                caption=fit(text, MAX_CAPTION),
                reply_markup=keyboard,
            )
        else:
            await context.bot.edit_message_text(
                fit(text, MAX_TEXT), chat_id, waiting["message_id"], reply_markup=keyboard
            )
    except Exception:  # noqa: BLE001 - the action is done; an old post may be uneditable
        return


async def cancel(update: Update, context: Context, key: str) -> int:
    set_pending(context, key, update.effective_chat.id, None)
    await update.effective_message.reply_text(texts.STAFF_ACTION_CANCELLED)
    return END


async def timed_out(update: Update, context: Context, key: str) -> None:
    chat = update.effective_chat
    if chat is None:
        return
    set_pending(context, key, chat.id, None)
    minutes = context.services.settings.conversation.idle_timeout_minutes
    await context.bot.send_message(chat.id, texts.STAFF_TIMED_OUT.format(minutes=int(minutes)))


# ---------------------------------------------------------------- assembly


def typed(step: Step) -> list[BaseHandler]:
    """A state that waits for the staff member's typed words."""
    return [MessageHandler(WORDS, step)]


def photo_or_skip(got_photo: Step, skip: Step) -> list[BaseHandler]:
    """A state that waits for a photo of the result, or /skip."""
    return [
        MessageHandler(filters.UpdateType.MESSAGE & filters.PHOTO, got_photo),
        CommandHandler("skip", skip),
    ]


def conversation(
    *,
    name: str,
    key: str,
    idle_minutes: float,
    buttons: Sequence[tuple[str, Step]],
    states: dict[int, list[BaseHandler]],
) -> ConversationHandler:
    """One staff ConversationHandler per (chat, staff member): each (verb, step) button starts
    it, `states` wait for the words; /cancel and the idle timeout drop what waits under `key`."""

    async def cancel_step(update: Update, context: Context) -> int:
        return await cancel(update, context, key)

    async def timed_out_step(update: Update, context: Context) -> None:
        await timed_out(update, context, key)

    with buttons_start_conversations():
        return ConversationHandler(
            entry_points=[
                CallbackQueryHandler(step, pattern=cb.pattern(verb)) for verb, step in buttons
            ],
            states={**states, ConversationHandler.TIMEOUT: [TypeHandler(Update, timed_out_step)]},
            fallbacks=[CommandHandler("cancel", cancel_step)],
            name=name,
            persistent=True,
            allow_reentry=True,
            # Staff conversations are few, so PTB's timer job per update costs nothing here;
            # the reporters' conversation ends idle reports by a sweep instead
            # (conversation.end_idle_conversations).
            conversation_timeout=timedelta(minutes=idle_minutes),
        )
