"""Handlers that run around all others: the duplicate-update guard, the record of handled
updates and the error handler."""

from __future__ import annotations

import logging
from collections import OrderedDict

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ApplicationHandlerStop

from bot import failpoints, persistence, texts
from bot.context import Context
from bot.services import Services
from models import drafts
from models.engine import STORE_DOWN, Gathered, store_unavailable

log = logging.getLogger(__name__)

RECENT_KEY = "recent_update_ids"
RECENT_SIZE = 10_000  # in-memory shortcut; the ProcessedUpdate table is the authority
CHECKS_KEY = "update_checks"
UPDATES_REMEMBERED = persistence.UPDATES_REMEMBERED
AFTER_ALL = 1_000  # the handler group that runs after every other one


class HandledUpdates:
    """Looks update ids up in the store, many per transaction.

    The updates of one getUpdates answer are looked up together, and so are those that
    arrive while the previous look-up waits for the database. The look-up only reads: an
    update is recorded as handled after its handlers ran, with its conversation step
    (record_handled), so a redelivery after a crash is handled, one after success is not.
    """

    def __init__(self, services: Services) -> None:
        self._services = services
        self._gathered = Gathered(lambda: services.session(urgent=True), self._look_up)

    async def seen(self, update_id: int) -> bool:
        """Whether this update id was handled before (by this or an earlier process)."""
        return await self._gathered.submit(update_id)

    async def _look_up(self, session, update_ids: list[int]) -> list[bool]:
        since = self._services.clock() - UPDATES_REMEMBERED
        handled = await drafts.handled_updates(session, update_ids, since=since)
        return [update_id in handled for update_id in update_ids]


async def drop_duplicates(update: object, context: Context) -> None:
    """Group -1: stop a Telegram update that was already handled (redelivered after a
    restart, a lost getUpdates answer, or a webhook retry) before any handler sees it."""
    if not isinstance(update, Update):
        return
    recent: OrderedDict = context.bot_data.setdefault(RECENT_KEY, OrderedDict())
    if update.update_id in recent:  # handled, or being handled, by this process
        log.info("duplicate update %s ignored", update.update_id)
        raise ApplicationHandlerStop
    checks = context.bot_data.get(CHECKS_KEY)
    if checks is None:
        checks = context.bot_data[CHECKS_KEY] = HandledUpdates(context.services)
    recent[update.update_id] = True  # before the await: a concurrent copy must not pass
    if len(recent) > RECENT_SIZE:
        recent.popitem(last=False)
    try:
        seen = await checks.seen(update.update_id)
    except Exception as exc:
        recent.pop(update.update_id, None)  # not handled: a redelivery must get through
        # The store is unreachable (a database restart): no handler may run unguarded — PTB
        # would go on to the next group after an error — so apologize and stop here.
        log.error("update %s not handled: the store is unreachable", update.update_id, exc_info=exc)
        await apologize(update, context, texts.STORE_UNAVAILABLE)
        raise ApplicationHandlerStop from exc
    if seen:
        log.info("duplicate update %s ignored (seen before restart)", update.update_id)
        raise ApplicationHandlerStop
    await failpoints.reached(failpoints.update_point(update))


async def record_handled(update: object, context: Context) -> None:
    """Group AFTER_ALL: the update's handlers are done; it counts as handled once the
    persistence round that stores its conversation step commits (bot/persistence.py)."""
    if not isinstance(update, Update):
        return
    store = context.application.persistence
    if isinstance(store, persistence.StorePersistence):
        store.handled(update.update_id)
        return
    services = context.services  # an application without the store's persistence
    async with services.session() as session:
        now = services.clock()
        await drafts.claim_updates(session, [update.update_id], now, since=now - UPDATES_REMEMBERED)


async def on_error(update: object, context: Context) -> None:
    """Log the error and say sorry to the person whose update failed (never a traceback)."""
    reason = store_unavailable(context.error)
    if reason is None and update is None and isinstance(context.error, STORE_DOWN):
        reason = "unreachable"  # a background job while the database restarts
    if reason is not None:
        # The store could not take the step (a full disk, a long-held lock; for a job also a
        # restart): it
        # was not done and nothing was written, so the person is told to do it again and
        # the operator gets one line naming the cause, not a traceback each time (a job runs
        # again at its next tick). A full disk needs the operator; the rest pass by themselves.
        level = logging.ERROR if reason == "full" else logging.WARNING
        what = "update not handled" if isinstance(update, Update) else "background job skipped"
        cause = getattr(context.error, "orig", context.error)  # not the statement (personal data)
        log.log(level, "%s, the store is %s: %r", what, reason, cause)
        if isinstance(update, Update):
            await apologize(update, context, texts.STORE_UNAVAILABLE)
        return
    log.error("error while handling update", exc_info=context.error)
    if isinstance(update, Update):
        await apologize(update, context, texts.SORRY_ERROR)


async def apologize(update: Update, context: Context, text: str) -> None:
    """Say sorry to the person whose update failed: an alert on a button press, a message in
    a private chat (never in a group)."""
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(text[:200], show_alert=True)
        elif update.effective_chat is not None and update.effective_chat.type == "private":
            await context.bot.send_message(update.effective_chat.id, text)
    except TelegramError:
        log.warning("could not tell the user about the error", exc_info=True)
