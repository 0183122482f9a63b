"""What the handlers and jobs need besides Telegram: settings, database, rules, classifier, clock.

Built once per Application and kept in ``application.bot_data["services"]``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import is_sqlite_file, make_engine, session_scope
from models.deadlines import Rules
from whistle.config import Settings

if TYPE_CHECKING:
    from classifier import Suggester

SERVICES_KEY = "services"

# Set while the current task holds the SQLite write lock, so a nested session doesn't wait
# for itself.
_holding_lock: ContextVar[bool] = ContextVar("holding_sqlite_lock", default=False)


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

    def __init__(self, session: Callable[[], Any],
                 handle: Callable[[AsyncSession, list], Awaitable[list]]) -> None:
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


def utc_now() -> datetime:
    """The real clock: naive UTC, like every datetime in the store."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    rules: Rules
    suggester: Suggester
    clock: Callable[[], datetime] = utc_now
    # Where read_session reads: on SQLite, threaded connections to the same file, so a long
    # scan never holds up the loop that `engine` runs its statements on. None: `engine`.
    read_engine: AsyncEngine | None = None
    owns_engine: bool = field(default=False, repr=False)  # dispose it when the bot shuts down
    _turns: TurnLock = field(default_factory=TurnLock, init=False, repr=False)
    _gathered: GatheredWrites | None = field(default=None, init=False, repr=False)

    @property
    def gathered(self) -> GatheredWrites:
        """Writes that may be batched with others (see GatheredWrites)."""
        if self._gathered is None:
            self._gathered = GatheredWrites(self.session)
        return self._gathered

    @asynccontextmanager
    async def session(self, *, urgent: bool = False) -> AsyncIterator[AsyncSession]:
        """One short unit of work (commits on success).

        On SQLite the bot's units of work take turns (urgent ones first): SQLite has one
        writer at a time, and a transaction that finds the database locked waits with
        growing back-off (models/sqlite_inline.py) — under load that wastes far more time
        than queueing here does. Its statements run in place on the loop's thread, so a
        unit of work that awaits nothing else holds the turn only while SQLite works.
        PostgreSQL runs them side by side.
        """
        if self.engine.dialect.name != "sqlite" or _holding_lock.get():
            async with session_scope(self.engine) as session:
                yield session
            return
        await self._turns.acquire(urgent)
        token = _holding_lock.set(True)
        try:
            async with session_scope(self.engine) as session:
                yield session
        finally:
            _holding_lock.reset(token)
            self._turns.release()

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that only reads. It never waits for the writer's turn: SQLite's
        WAL lets readers run beside the one writer, so scans don't hold up replies."""
        async with session_scope(self.read_engine or self.engine) as session:
            yield session

    async def dispose(self) -> None:
        """Close the engines this Services created (not one handed in)."""
        if self.owns_engine:
            for engine in {self.engine, self.read_engine or self.engine}:
                await engine.dispose()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        engine: AsyncEngine | None = None,
        suggester: Suggester | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> Services:
        """Services for `settings`, creating the engine and loading the classifier if not given."""
        if suggester is None:
            from classifier import Suggester

            suggester = Suggester.from_settings(settings)
        read_engine, owns_engine = None, engine is None
        if owns_engine:
            url, echo = settings.database_url, settings.database_echo
            engine = make_engine(url, echo, in_place=True)
            if is_sqlite_file(url):  # an in-memory database can't be shared by two engines
                read_engine = make_engine(url, echo, checkpoint_interval=None)
        return cls(
            settings=settings,
            engine=engine,
            read_engine=read_engine,
            rules=Rules.from_settings(settings),
            suggester=suggester,
            clock=clock or utc_now,
            owns_engine=owns_engine,
        )


def services_of(context_or_app) -> Services:
    """The Services of a CallbackContext or an Application."""
    app = getattr(context_or_app, "application", None) or context_or_app
    return app.bot_data[SERVICES_KEY]
