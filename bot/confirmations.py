"""The 受理 confirmation ("已受理，编号 WC-…"): it must arrive (issue #15).

It is queued in the outbox in the case's own transaction, due a little later (GRACE), and
sent at once as an ordinary reply: when the reply goes out, the queued copy is marked sent;
when it fails (500, a 429 that outlasts its retry, a timeout) the copy is made due now and the
sender retries it with back-off; when the process dies before or during the reply, the copy
comes due after GRACE and whoever runs the sender then sends it. The direct reply keeps the
answer as fast as any other (the sender's 30 a second would queue a busy bot's answers).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from telegram import ReplyKeyboardMarkup
from telegram.error import TelegramError

from bot import delivery, texts
from bot.context import Context
from models import outbox
from models.engine import STORE_DOWN
from models.followup import bring_forward
from models.tables import ENTERPRISE, Case

log = logging.getLogger(__name__)

GRACE = timedelta(seconds=10)  # > the reply's send timeout: the queued copy waits for it
MARK_RETRY_SECONDS = 0.5  # how often a copy is marked sent again while the store is away


def key_of(case: Case) -> str:
    return f"submitted:{case.id}"


def text_of(case: Case) -> str:
    template = texts.SUBMITTED_ENTERPRISE if case.kind == ENTERPRISE else texts.SUBMITTED
    return template.format(ref=case.ref)


def queued(case: Case, now: datetime, *, chat_id: int, menu: ReplyKeyboardMarkup) -> dict:
    """The outbox row of the confirmation, for the case's transaction."""
    return outbox.push_row(
        key=key_of(case),
        chat_id=chat_id,
        text=text_of(case),
        kind="reply",
        now=now,
        due_at=now + GRACE,
        reply_markup=menu.to_dict(),
        case_id=case.id,
    )


async def send(context: Context, case: Case, *, chat_id: int, menu: ReplyKeyboardMarkup) -> None:
    """Reply with the confirmation now; the queued copy is dropped on success, hurried on
    failure."""
    services = context.services
    try:
        message = await context.bot.send_message(chat_id, text_of(case), reply_markup=menu)
    except TelegramError as exc:
        log.warning("confirmation of %s not sent (%s): the outbox retries it", case.ref, exc)
        await hurry(context, case)
        return
    try:
        await _mark_sent(services, case, message.message_id)
    except STORE_DOWN as exc:
        # The reference went out but the store went away (a database restart): the report
        # is stored, so no apology; the copy is marked sent as soon as the store is back.
        log.warning("confirmation of %s sent, not yet marked (%s): retrying", case.ref, exc)
        context.application.create_task(_mark_sent_when_back(context, case, message.message_id))


async def _mark_sent(services, case: Case, message_id: int) -> None:
    await services.gathered.run(
        lambda session: outbox.mark_sent_by_key(
            session, key_of(case), message_id=message_id, now=services.clock()
        )
    )


async def _mark_sent_when_back(context: Context, case: Case, message_id: int) -> None:
    """Retry marking the queued copy sent while the bot runs. The copy is due GRACE after
    the case, and the sender needs the store to claim it too: after an outage shorter than
    GRACE this always wins; after a longer one it races the sender's first pass."""
    while context.application.running:
        await asyncio.sleep(MARK_RETRY_SECONDS)
        try:
            await _mark_sent(context.services, case, message_id)
            return
        except STORE_DOWN:
            continue


async def hurry(context: Context, case: Case) -> None:
    """Let the sender send the queued confirmation now (if it still waits)."""
    services = context.services
    async with services.session() as session:
        await bring_forward(session, [key_of(case)], services.clock())
    delivery.kick(context.application)
