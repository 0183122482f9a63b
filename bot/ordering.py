"""Updates of different people are handled side by side; one person's updates one at a time.

PTB's concurrent processing would otherwise let two messages of one person race through the
conversation: an album arrives as one message per photo, and both photos would see the
conversation in the state before either had moved it on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor


def _person(update: object) -> int | None:
    if not isinstance(update, Update):
        return None
    user = update.effective_user
    if user is not None:
        return user.id
    return update.effective_chat.id if update.effective_chat is not None else None


class OneAtATimePerPerson(BaseUpdateProcessor):
    """Up to `max_concurrent_updates` at once, but each person's in the order they came."""

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        # person -> (lock, how many of their updates hold or wait for it)
        self._turns: dict[int, tuple[asyncio.Lock, int]] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        person = _person(update)
        if person is None:
            await coroutine
            return
        lock, waiting = self._turns.get(person, (None, 0))
        lock = lock or asyncio.Lock()
        self._turns[person] = (lock, waiting + 1)
        try:
            async with lock:  # asyncio.Lock is fair: first come, first served
                await coroutine
        finally:
            lock, waiting = self._turns[person]
            if waiting == 1:
                del self._turns[person]  # keep no lock for people who have gone quiet
            else:
                self._turns[person] = (lock, waiting - 1)

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None
