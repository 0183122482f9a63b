"""Reporter messages outside the report conversation: greetings, help, free messages (offered
as a report by bot/conversation.py), unsupported content, edited messages, stray commands and buttons."""

from __future__ import annotations

from telegram import Update

from bot import callbacks as cb
from bot import texts
from bot.common import alert, display_name, is_private
from bot.context import Context
from bot.conversation import (
    answer_submitted_press,
    description_problem,
    draft_of,
    main_menu,
    show_summary,
)
from models import people


async def start(update: Update, context: Context) -> None:
    """/start: greet (staff see their role) and show the menu keyboard."""
    services = context.services
    user = update.effective_user
    async with services.session() as session:
        staff = await people.get_staff(session, user.id)
        if staff is None and is_private(update):
            await people.get_or_create_reporter(
                session, user.id, display_name(user), now=services.clock()
            )
    if not is_private(update):
        await update.effective_message.reply_text(texts.STAFF_HELP)
        return
    parts = [texts.WELCOME.format(district=services.settings.district.name)]
    if staff is not None:
        parts.append(
            texts.WELCOME_STAFF.format(
                name=staff.name, role=texts.ROLE_NAMES.get(staff.role, staff.role)
            )
        )
    if draft_of(context):
        parts.append(texts.WELCOME_DRAFT_PENDING)
    await update.effective_message.reply_text("\n\n".join(parts), reply_markup=main_menu())


async def help_command(update: Update, context: Context) -> None:
    """/help or 使用帮助."""
    async with context.services.session() as session:
        staff = await people.get_staff(session, update.effective_user.id)
    text = texts.HELP + (f"\n\n{texts.STAFF_HELP}" if staff else "")
    await update.effective_message.reply_text(text)


async def location_outside(update: Update, context: Context) -> None:
    await update.message.reply_text(texts.LOCATION_WITHOUT_REPORT)


async def unsupported(update: Update, context: Context) -> None:
    """Stickers, voice, documents … outside a conversation."""
    await update.effective_message.reply_text(
        f"{texts.UNSUPPORTED_CONTENT}\n{texts.START_REPORT_HINT}"
    )


async def nothing_to_cancel(update: Update, context: Context) -> None:
    await update.effective_message.reply_text(texts.NOTHING_TO_CANCEL, reply_markup=main_menu())


async def unknown_command(update: Update, context: Context) -> None:
    await update.effective_message.reply_text(texts.UNKNOWN_COMMAND)


async def edited(update: Update, context: Context) -> None:
    """An edited message: update the draft's description if it was that message, else explain.

    Submitted reports never change behind the staff's back.
    """
    message = update.edited_message
    if message is None or not is_private(update):
        return  # staff editing in groups: their original message already counted
    draft = draft_of(context)
    if draft and message.text and draft.get("text_msg") == message.message_id:
        problem = description_problem(context, message.text)
        if problem:
            await message.reply_text(problem)
            return
        draft["text"] = message.text.strip()
        await message.reply_text(texts.EDITED_DRAFT_UPDATED)
        if draft.get("summary_shown"):
            await show_summary(update, context)  # the suggestion may differ now
        return
    await message.reply_text(texts.EDITED_IGNORED)


async def stray_button(update: Update, context: Context) -> None:
    """A button no handler claimed: forged, garbled or from a finished conversation."""
    query = update.callback_query
    if await answer_submitted_press(update, context):
        return
    known = cb.parse(query.data) is not None
    await alert(query, texts.BUTTON_EXPIRED if known else texts.BUTTON_INVALID)


async def on_my_chat_member(update: Update, context: Context) -> None:
    """A user blocked (or unblocked) the bot in their private chat: stop (or resume) pushes."""
    change = update.my_chat_member
    if change is None or change.chat.type != "private":
        return
    status = change.new_chat_member.status
    reachable = status not in ("kicked", "left")
    services = context.services
    async with services.session() as session:
        await people.set_reporter_reachable(session, change.chat.id, reachable)
