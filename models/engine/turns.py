"""Taking turns at SQLite's one write lock, and sharing one transaction among requests.

SQLite has one writer at a time; the bot's units of work queue here (urgent ones first)
instead of finding the database locked and backing off (models/engine/inline.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession


class TurnLock:
    """A lock whose waiters take turns in order, urgent ones ahead of the rest.

    The duplicate-update check is a tiny write every update waits for; letting it pass a
    queue of longer transactions keeps ordinary replies quick while a burst of reports is
    being stored.
    """

    def __init__(self) -> None:
        self._locked = False
        self._urgent: deque[asyncio.Future] = deque()
        self._normal: deque[asyncio.Future] = deque()

    async def acquire(self, urgent: bool = False) -> None:
        if not self._locked:
            self._locked = True
            return
        turn = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._normal
        queue.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # the lock was handed to us just as we were cancelled
            else:
                queue.remove(turn)
            raise

    def release(self) -> None:
        """Hand the lock to the next waiter (urgent first), or unlock."""
        for queue in (self._urgent, self._normal):
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._locked = False


class Gathered:
    """Requests made at about the same time, handled together in one transaction.

    `handle(session, items)` gets every request queued while the batch waited for its turn
    and returns one result per item; each requester gets its own. If the transaction fails,
    every requester of the batch gets the error.
    """

    def __init__(
        self, session: Callable[[], Any], handle: Callable[[AsyncSession, list], Awaitable[list]]
    ) -> None:
        self._session = session
        self._handle = handle
        self._queued: list[tuple[Any, asyncio.Future]] = []
        self._flush: asyncio.Future | None = None

    async def submit(self, item: Any) -> Any:
        done = asyncio.get_running_loop().create_future()
        self._queued.append((item, done))
        if self._flush is None:
            self._flush = asyncio.ensure_future(self._handle_batch())
        return await done

    def _take_queued(self) -> list[tuple[Any, asyncio.Future]]:
        batch, self._queued, self._flush = self._queued, [], None
        return batch

    async def _handle_batch(self) -> None:
        await asyncio.sleep(0)  # let the others of this moment join
        batch: list | None = None
        try:
            async with self._session() as session:
                batch = self._take_queued()  # all that queued while we waited for the turn
                results = await self._handle(session, [item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 - handed to every requester of the batch
            for _, done in batch if batch is not None else self._take_queued():
                if not done.done():
                    done.set_exception(exc)
            return
        for (_, done), result in zip(batch, results, strict=True):
            if not done.done():
                done.set_result(result)


class GatheredWrites(Gathered):
    """Small writes that share one transaction with the others queued at about the same time.

    The sender records each push's outcome as Telegram answers; dozens of answers arrive per
    second, and a transaction each would cost more than the writes themselves.
    """

    def __init__(self, session: Callable[[], Any]) -> None:
        super().__init__(session, _each_write)

    async def run(self, write: Callable[[AsyncSession], Awaitable[Any]]) -> None:
        await self.submit(write)


async def _each_write(session: AsyncSession, writes: list) -> list[None]:
    for write in writes:
        await write(session)
    return [None] * len(writes)
