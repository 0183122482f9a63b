"""A PTB persistence backed by the store's BotState table, so conversations and drafts
survive a restart.

Only user_data (the drafts) and conversation states are kept. PTB hands changes over every
`update_interval` seconds and on shutdown; the many small calls of one such round are
collected and written in a single short transaction. A stop saves everything; a crash loses
at most the last SAVE_SECONDS of conversation steps (the bot at 330 updates/s: 0.2 s costs
~2 % of a core more than 2 s, and nothing in latency).

The ids of the updates handled since the last round are recorded in the same transaction
(bot/guards.py): an update counts as handled only once its conversation step is stored, so
after a crash Telegram's redelivery of it is handled again rather than dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram.ext import BasePersistence, PersistenceInput

from models import drafts

log = logging.getLogger(__name__)

SAVE_SECONDS = 0.2
# Telegram redelivers an update within minutes to hours; after a week without updates it may
# start numbering afresh, so an id last seen longer ago than this is a new update.
UPDATES_REMEMBERED = timedelta(days=2)
USER_PREFIX = "user:"
CONV_PREFIX = "conv:"


def _conv_key(name: str, key: tuple[int | str, ...]) -> str:
    return CONV_PREFIX + name + ":" + ":".join(str(part) for part in key)


def _parse_conv_key(name: str, stored: str) -> tuple[int | str, ...]:
    parts = stored[len(CONV_PREFIX + name + ":") :].split(":")
    return tuple(int(p) if p.lstrip("-").isdigit() else p for p in parts)


class StorePersistence(BasePersistence):
    """user_data and ConversationHandler states in BotState rows ("user:ID", "conv:NAME:KEY")."""

    def __init__(
        self,
        session: Callable[[], AbstractAsyncContextManager[AsyncSession]],
        clock: Callable[[], datetime],
        update_interval: float = SAVE_SECONDS,
    ) -> None:
        super().__init__(
            store_data=PersistenceInput(
                bot_data=False, chat_data=False, user_data=True, callback_data=False
            ),
            update_interval=update_interval,
        )
        self._session = session  # e.g. Services.session
        self._clock = clock
        self._pending: dict[str, dict | None] = {}
        self._batch: asyncio.Future | None = None
        self._handled: list[int] = []
        self._fallback: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- handled updates
    def handled(self, update_id: int) -> None:
        """Record `update_id` as handled with the next round of writes.

        PTB hands over the update's user_data and conversation state in its next round
        (within update_interval); the id rides in that round's transaction. An update that
        changed nothing PTB keeps (no user) is written by a fallback round a little later.
        """
        self._handled.append(update_id)
        if self._fallback is None:
            self._fallback = asyncio.get_running_loop().call_later(
                2 * self.update_interval, self._fallback_round
            )

    def _fallback_round(self) -> None:
        self._fallback = None
        if self._handled and self._batch is None:
            self._batch = asyncio.ensure_future(self._write_batch())
            self._batch.add_done_callback(self._after_fallback)

    def _after_fallback(self, batch: asyncio.Future) -> None:
        # Nobody awaits a fallback round: a failure (the database restarting) is logged here
        # and the round tried again later, or the ids would wait for the next update.
        if batch.cancelled() or batch.exception() is None:
            return
        log.warning("could not record handled updates, trying again: %s", batch.exception())
        if self._fallback is None:
            self._fallback = asyncio.get_running_loop().call_later(
                2 * self.update_interval, self._fallback_round
            )

    # ---------------------------------------------------------------- writing, batched
    async def _put(self, key: str, value: dict | None) -> None:
        self._pending[key] = value
        if self._batch is None:
            self._batch = asyncio.ensure_future(self._write_batch())
        await asyncio.shield(self._batch)

    async def _write_batch(self) -> None:
        # Let the other update_* calls of this round (PTB gathers them) join the batch.
        await asyncio.sleep(0)
        items, self._pending, self._batch = self._pending, {}, None
        handled, self._handled = self._handled, []
        try:
            async with self._session() as session:
                now = self._clock()
                await drafts.save_states(session, items, now)
                await drafts.claim_updates(session, handled, now, since=now - UPDATES_REMEMBERED)
        except Exception:
            # Keep the values for the next round rather than losing a draft; newer values
            # that arrived meanwhile win.
            self._pending = {**items, **self._pending}
            self._handled = handled + self._handled
            raise

    async def update_user_data(self, user_id: int, data: dict) -> None:
        # An empty user_data means nothing is in progress: keep no row for it.
        await self._put(f"{USER_PREFIX}{user_id}", dict(data) if data else None)

    async def drop_user_data(self, user_id: int) -> None:
        await self._put(f"{USER_PREFIX}{user_id}", None)

    async def update_conversation(self, name: str, key: tuple, new_state: object | None) -> None:
        value = None if new_state is None else {"state": new_state}
        await self._put(_conv_key(name, key), value)

    async def flush(self) -> None:
        if self._batch is not None:
            await asyncio.shield(self._batch)
        if self._handled or self._pending:  # the last handled ids at a stop
            self._batch = asyncio.ensure_future(self._write_batch())
            await asyncio.shield(self._batch)
        if self._fallback is not None:
            self._fallback.cancel()
            self._fallback = None

    # ---------------------------------------------------------------- reading at start-up
    async def get_user_data(self) -> dict[int, dict]:
        async with self._session() as session:
            rows = await drafts.load_states(session, USER_PREFIX)
        return {int(key[len(USER_PREFIX) :]): value for key, value in rows.items()}

    async def get_conversations(self, name: str) -> dict:
        async with self._session() as session:
            rows = await drafts.load_states(session, f"{CONV_PREFIX}{name}:")
        return {_parse_conv_key(name, key): value["state"] for key, value in rows.items()}

    # ---------------------------------------------------------------- not kept
    async def get_chat_data(self) -> dict[int, dict]:
        return {}

    async def get_bot_data(self) -> dict:
        return {}

    async def get_callback_data(self) -> None:
        return None

    async def update_chat_data(self, chat_id: int, data: dict) -> None:
        return None

    async def update_bot_data(self, data: dict) -> None:
        return None

    async def update_callback_data(self, data) -> None:
        return None

    async def drop_chat_data(self, chat_id: int) -> None:
        return None

    async def refresh_user_data(self, user_id: int, user_data: dict) -> None:
        return None

    async def refresh_chat_data(self, chat_id: int, chat_data: dict) -> None:
        return None

    async def refresh_bot_data(self, bot_data: dict) -> None:
        return None
