"""Handlers that run around all others: the duplicate-update guard and the error handler."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from datetime import timedelta

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot import texts
from bot.services import Services, services_of
from models import drafts

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
        self._waiting: dict[int, list[asyncio.Future]] = {}
        self._writer: asyncio.Task | None = None

    async def claim(self, update_id: int) -> bool:
        """True for the first delivery of this update id, False for any later one."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(update_id, []).append(future)
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write())
        return await future

    def _take_waiting(self) -> dict[int, list[asyncio.Future]]:
        batch, self._waiting, self._writer = self._waiting, {}, None
        return batch

    async def _write(self) -> None:
        services = self._services
        batch: dict[int, list[asyncio.Future]] | None = None
        await asyncio.sleep(0)  # the other updates of this moment join
        try:
            async with services.session(urgent=True) as session:
                # Everything that queued up while we waited for the database goes in now.
                batch = self._take_waiting()
                now = services.clock()
                fresh = await drafts.claim_updates(session, list(batch), now,
                                                   since=now - UPDATES_REMEMBERED)
        except Exception as exc:  # noqa: BLE001 - each waiting handler gets the error
            for futures in (batch if batch is not None else self._take_waiting()).values():
                for future in futures:
                    future.set_exception(exc)
            return
        for update_id, futures in batch.items():
            for i, future in enumerate(futures):
                future.set_result(i == 0 and update_id in fresh)


async def drop_duplicates(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
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
        claims = context.bot_data[CLAIMS_KEY] = UpdateClaims(services_of(context))
    if not await claims.claim(update.update_id):
        log.info("duplicate update %s ignored (seen before restart)", update.update_id)
        raise ApplicationHandlerStop
    recent[update.update_id] = True
    if len(recent) > RECENT_SIZE:
        recent.popitem(last=False)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
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
