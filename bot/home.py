"""A reporter tells the bot their 小区/村 once (/home, or the button offered after a report the
bot could place in no grid); later reports without a location or a place fall back to it.

    /home or 🏠 ─▶ ASK_HOME ─▶ a known place ─▶ saved (grid + the name given)
                          ├▶ unknown ─▶ asked again politely
                          └▶ /skip or /cancel ─▶ nothing saved
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot import callbacks as cb
from bot import texts
from bot.common import buttons_start_conversations
from bot.context import Context
from bot.conversation import NEW_MESSAGE, PRIVATE, TYPED, display_name, main_menu
from models import locating

ASK_HOME = 40
NAME = "home"  # the ConversationHandler's (persistent) name
END = ConversationHandler.END
SHOWN_CHARS = 30  # of an unknown answer, quoted back


async def ask(update: Update, context: Context) -> int:
    """/home or 🏠: ask for the 小区/村 (said at once when no grids are configured)."""
    if update.callback_query:
        await update.callback_query.answer()
    if context.services.gridmap.places is None:
        await update.effective_message.reply_text(texts.HOME_UNAVAILABLE)
        return END
    await update.effective_message.reply_text(texts.ASK_HOME)
    return ASK_HOME


async def got_home(update: Update, context: Context) -> int | None:
    """The answer is matched against the configured places; unknown → asked again."""
    services = context.services
    answer = update.message.text.strip()
    hit = services.gridmap.match_place(answer)
    if hit is None:
        shown = answer if len(answer) <= SHOWN_CHARS else answer[: SHOWN_CHARS - 1] + "…"
        await update.message.reply_text(texts.HOME_NOT_FOUND.format(text=shown))
        return None
    code, place = hit
    user = update.effective_user
    async with services.session() as session:
        await locating.set_home(
            session, user.id, code, place, now=services.clock(), display_name=display_name(user)
        )
    await update.message.reply_text(
        texts.HOME_SAVED.format(place=place, path=services.gridmap.path_names(code)),
        reply_markup=main_menu(),
    )
    return END


async def not_text(update: Update, context: Context) -> None:
    await update.effective_message.reply_text(texts.HOME_TEXT_ONLY)


async def skip(update: Update, context: Context) -> int:
    await update.effective_message.reply_text(texts.HOME_SKIPPED, reply_markup=main_menu())
    return END


def build() -> ConversationHandler:
    """Registered after the report conversation, so a report under way keeps its messages."""
    with buttons_start_conversations():
        return ConversationHandler(
            entry_points=[
                CommandHandler("home", ask, filters=PRIVATE),
                CallbackQueryHandler(ask, pattern=cb.pattern(cb.HOME)),
            ],
            states={
                ASK_HOME: [
                    MessageHandler(TYPED, got_home),
                    CommandHandler(["skip", "cancel"], skip, filters=PRIVATE),
                    MessageHandler(NEW_MESSAGE & ~filters.COMMAND, not_text),
                ]
            },
            fallbacks=[CommandHandler("home", ask, filters=PRIVATE)],
            name=NAME,
            persistent=True,
            allow_reentry=True,
        )
