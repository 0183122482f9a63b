"""Handlers that run around all others: the duplicate-update guard and the error handler."""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import timedelta

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ApplicationHandlerStop

from bot import texts
from bot.context import Context
from bot.services import Services
from models import drafts
from models.engine import Gathered

log = logging.getLogger(__name__)

RECENT_KEY = "recent_update_ids"
RECENT_SIZE = 10_000  # in-memory shortcut; the ProcessedUpdate table is the authority
CLAIMS_KEY = "update_claims"
# Telegram redelivers an update within minutes to hours; after a week without updates it may
# start numbering afresh, so an id last seen longer ago than this is a new update.
UPDATES_REMEMBERED = timedelta(days=2)


class UpdateClaims:
    """Records handled update ids in the store, many per transaction.

    The updates of one getUpdates answer are claimed together, and so are those that arrive
    while the previous write waits for the database: one INSERT each time, so under load the
    duplicate check costs one short transaction per batch of updates instead of one per update.
    """

    def __init__(self, services: Services) -> None:
        self._services = services
        self._gathered = Gathered(lambda: services.session(urgent=True), self._claim_all)

    async def claim(self, update_id: int) -> bool:
        """True for the first delivery of this update id, False for any later one."""
        return await self._gathered.submit(update_id)

    async def _claim_all(self, session, update_ids: list[int]) -> list[bool]:
        now = self._services.clock()
        fresh = await drafts.claim_updates(session, update_ids, now,
                                           since=now - UPDATES_REMEMBERED)
        claimed = []
        for update_id in update_ids:  # the same id twice in one batch: the first one has it
            claimed.append(update_id in fresh)
            fresh.discard(update_id)
        return claimed


async def drop_duplicates(update: object, context: Context) -> None:
    """Group -1: stop a Telegram update that was already handled (redelivered after a
    restart, a lost getUpdates answer, or a webhook retry) before any handler sees it."""
    if not isinstance(update, Update):
        return
    recent: OrderedDict = context.bot_data.setdefault(RECENT_KEY, OrderedDict())
    if update.update_id in recent:
        log.info("duplicate update %s ignored", update.update_id)
        raise ApplicationHandlerStop
    claims = context.bot_data.get(CLAIMS_KEY)
    if claims is None:
        claims = context.bot_data[CLAIMS_KEY] = UpdateClaims(context.services)
    if not await claims.claim(update.update_id):
        log.info("duplicate update %s ignored (seen before restart)", update.update_id)
        raise ApplicationHandlerStop
    recent[update.update_id] = True
    if len(recent) > RECENT_SIZE:
        recent.popitem(last=False)


async def on_error(update: object, context: Context) -> None:
    """Log the error and say sorry to the person whose update failed (never a traceback)."""
    log.error("error while handling update", exc_info=context.error)
    if not isinstance(update, Update):
        return
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(texts.SORRY_ERROR[:200], show_alert=True)
        elif update.effective_chat is not None and update.effective_chat.type == "private":
            await context.bot.send_message(update.effective_chat.id, texts.SORRY_ERROR)
    except TelegramError:
        log.warning("could not tell the user about the error", exc_info=True)
