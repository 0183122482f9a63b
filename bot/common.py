"""Small helpers the handlers share: time, names, lights, safe edits, waking the sender."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from telegram import CallbackQuery, InlineKeyboardMarkup, Update, User
from telegram.error import BadRequest
from telegram.ext import Application
from telegram.warnings import PTBUserWarning

from bot import delivery, texts
from bot.context import Context
from bot.delivery import MAX_CAPTION, MAX_TEXT
from bot.services import Services
from bot.texts import followup as followup_texts
from bot.texts import intake as intake_texts
from models.deadlines import LIGHT_EMOJI, case_light
from models.lifecycle import running_stage
from models.tables import Case

log = logging.getLogger(__name__)

SNIPPET = 40  # characters of a case's text quoted in alerts, digests and lists


def now_of(context: Context) -> datetime:
    """The services' clock (naive UTC): the only 'now' handlers use."""
    return context.services.clock()


def department_name(services: Services, code: str | None) -> str:
    """The department's Chinese name from config.toml (the code if unknown)."""
    if not code:
        return "—"
    dept = services.settings.department(code)
    return dept.name if dept else code


def local_time(services: Services, moment: datetime | None) -> str:
    """'11-24 10:05' in district time."""
    if moment is None:
        return "—"
    return services.rules.calendar.to_local(moment).strftime("%m-%d %H:%M")


def light_of(case: Case, services: Services, now: datetime) -> str:
    """The case's 红黄灯 emoji (⚪ when no deadline is running)."""
    light = case_light(case, now, services.rules)
    return LIGHT_EMOJI[light] if light else texts.NO_LIGHT


def display_name(user: User | None) -> str:
    return user.full_name if user else ""


def fit(text: str, limit: int) -> str:
    """Cut text to Telegram's limit, marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def alert(query: CallbackQuery, text: str) -> None:
    """Answer a button press with a pop-up (Telegram allows 200 characters)."""
    await query.answer(fit(text, 200), show_alert=True)


async def edit_post(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
    """Rewrite the message a button sits on (caption for photo posts); unchanged is fine."""
    message = query.message
    if message is None:
        return
    try:
        if getattr(message, "photo", None):
            await query.edit_message_caption(caption=fit(text, MAX_CAPTION), reply_markup=markup)
        else:
            await query.edit_message_text(text=fit(text, MAX_TEXT), reply_markup=markup)
    except BadRequest as exc:
        # Two presses racing to the same result, or a message too old to edit: the store
        # change already happened, so a stale display is not worth failing the action for.
        if "not modified" not in str(exc).lower():
            log.warning("could not edit message %s: %s", message.message_id, exc)


def kick_delivery(application: Application) -> None:
    """Wake the outbox sender now, so new pushes go out in milliseconds, not poll_seconds."""
    delivery.kick(application)


def is_private(update: Update) -> bool:
    chat = update.effective_chat
    return chat is not None and chat.type == "private"


@contextmanager
def buttons_start_conversations() -> Iterator[None]:
    """Build a ConversationHandler whose steps are buttons without PTB's per_message warning.

    One conversation per person and chat (per_message=False) is exactly what we want; PTB
    warns about that pairing because it cannot tell.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*per_message=False.*", category=PTBUserWarning)
        yield


def snippet(case: Case) -> str:
    """The start of the case's text, on one line."""
    return intake_texts.snippet(case.text, SNIPPET)


def stage_name(case: Case) -> str:
    """签收 while the case waits to be signed for, 办结 once it has been."""
    return followup_texts.STAGE_NAMES[running_stage(case.status) or "resolve"]
