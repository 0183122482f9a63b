"""What the handlers and jobs need besides Telegram: settings, database, rules, classifier, clock.

Built once per Application and kept in ``application.bot_data["services"]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from models.deadlines import Rules
from models.engine import GatheredWrites, TurnLock, is_sqlite_file, make_engine, session_scope
from models.gridmap import GridMap, log_problems
from whistle.config import Settings

if TYPE_CHECKING:
    from classifier import Suggester

SERVICES_KEY = "services"

# Set while the current task holds the SQLite write lock, so a nested session doesn't wait
# for itself.
_holding_lock: ContextVar[bool] = ContextVar("holding_sqlite_lock", default=False)


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
    gridmap: GridMap = field(default_factory=GridMap)  # empty: no case is located in a grid
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
        growing back-off (models/engine/inline.py) — under load that wastes far more time
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
        gridmap: GridMap | None = None,
    ) -> Services:
        """Services for `settings`, creating the engine and loading the classifier if not given."""
        if suggester is None:
            from classifier import Suggester

            suggester = Suggester.from_settings(settings)
        if gridmap is None:
            gridmap = GridMap.from_settings(settings)
            log_problems(gridmap)
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
            gridmap=gridmap,
            owns_engine=owns_engine,
        )


def services_of(application: Any) -> Services:
    """The Services an Application was built with, for code that holds the Application
    rather than a context (the sender, the follow-up pass); handlers use context.services."""
    return application.bot_data[SERVICES_KEY]
