"""Async engine and sessions. SQLite (aiosqlite) by default, PostgreSQL (asyncpg) for scale."""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from models import tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from models.engine.inline import inline_creator
from models.engine.one_trip import one_trip_creator

# A commit that pushes SQLite's write-ahead log past wal_autocheckpoint pages copies the log
# into the database file and fsyncs it before returning: 5-10 ms, once every ~70 transitions of
# the 1.6 GB benchmark store, which was the whole transition p99. So a thread per file
# checkpoints instead, and the commit-time checkpoint stays only as the bound on the log.
CHECKPOINT_INTERVAL_S = 0.2  # an idle PASSIVE checkpoint costs ~10 µs; fsyncs only after writes
WAL_AUTOCHECKPOINT_PAGES = 10_000  # 40 MB of log; reached only if the checkpointer falls behind


# What a store that cannot be reached raises (a PostgreSQL restart): the driver's errors wrapped
# by SQLAlchemy, and a refused connection (asyncpg's connect raises the OSError itself).
STORE_DOWN = (DBAPIError, OSError)

PG_DISK_FULL = "53100"  # PostgreSQL's SQLSTATE disk_full


def store_unavailable(exc: BaseException) -> str | None:
    """ "full" or "locked" when `exc` says the store cannot take a write for now — SQLite's
    SQLITE_FULL (or PostgreSQL's disk_full), a lock held past the busy timeout — else None
    (a bug, a constraint). Such a statement changed nothing, so the person can simply try
    again once space is freed or the other writer is done."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        code &= 0xFF  # the primary code; extended codes keep it in the low byte
        if code == sqlite3.SQLITE_FULL:
            return "full"
        return "locked" if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) else None
    return "full" if getattr(orig, "sqlstate", None) == PG_DISK_FULL else None


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def is_sqlite_file(url: str) -> bool:
    """A SQLite database in a file (several engines may share it), not in memory."""
    return is_sqlite(url) and _sqlite_file(url) is not None


def _sqlite_file(url: str) -> Path | None:
    """The database file of a plain SQLite URL; None for in-memory databases and file: URIs."""
    u = make_url(url)
    if not u.database or u.database == ":memory:" or u.query.get("uri") == "true":
        return None
    return Path(u.database)


def _sqlite_pragmas(dbapi_conn, _record, busy_timeout_ms: int = 5000) -> None:
    # WAL lets the dashboard read while the bot writes; foreign keys are off by default in
    # SQLite; the busy timeout turns brief write contention into a wait instead of an error
    # (in-place connections wait for the lock themselves, see models/engine/inline.py).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cur.close()


class WalCheckpointer:
    """Runs PRAGMA wal_checkpoint(PASSIVE) on one SQLite file every `interval` seconds.

    Its own connection on its own daemon thread: PASSIVE never waits for readers or writers,
    and the sqlite3 module releases the GIL while SQLite copies pages and fsyncs.
    """

    def __init__(self, path: Path, interval: float):
        self.path, self.interval = path.resolve(), interval
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.checkpoints = 0  # completed runs, for tests and diagnostics

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread unless it runs already (called on every new pooled connection)."""
        with self._lock:
            if self.running:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run,
                args=(self._stop,),
                daemon=True,
                name=f"wal-checkpoint:{self.path.name}",
            )
            self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """Stop the thread; with `wait`, return once its connection is closed."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run(self, stop: threading.Event) -> None:
        # mode=rw: never create the file (the engine's first connection already has).
        db = sqlite3.connect(
            f"file:{quote(str(self.path))}?mode=rw", uri=True, check_same_thread=False, timeout=5
        )
        try:
            while not stop.wait(self.interval):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error:
                    pass  # e.g. the file is locked for a moment; the next tick tries again
        finally:
            db.close()


_checkpointers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _attach_checkpointer(engine: AsyncEngine, path: Path, interval: float) -> WalCheckpointer:
    """Checkpoint `engine`'s file in the background while the engine has connections."""
    checkpointer = WalCheckpointer(path, interval)
    event.listen(engine.sync_engine, "connect", lambda _conn, _rec: checkpointer.start())
    event.listen(engine.sync_engine, "engine_disposed", lambda _eng: checkpointer.stop())
    # An engine dropped without dispose() must not leave its thread behind.
    weakref.finalize(engine.sync_engine, checkpointer.stop, False)
    _checkpointers[engine.sync_engine] = checkpointer
    return checkpointer


def wal_checkpointer(engine: AsyncEngine) -> WalCheckpointer | None:
    """The engine's background checkpointer (SQLite files only), for tests and diagnostics."""
    return _checkpointers.get(engine.sync_engine)


def make_engine(
    url: str,
    echo: bool = False,
    checkpoint_interval: float | None = CHECKPOINT_INTERVAL_S,
    *,
    in_place: bool = False,
) -> AsyncEngine:
    """Create the async engine for `url`, creating the SQLite file's folder if needed.

    A SQLite file engine makes one trip to its connection's thread per statement
    (models/engine/one_trip.py), or with `in_place` none at all: its statements run on the
    event loop's thread (models/engine/inline.py; for short statements only). It checkpoints
    its log on a thread every `checkpoint_interval` seconds, from the first connection until
    dispose() (None: only commits do, at the safety net).
    """
    if is_sqlite(url):
        path = _sqlite_file(url)
        in_place = in_place and path is not None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        creator = (
            None
            if path is None
            else inline_creator(str(path))
            if in_place
            else one_trip_creator(str(path))
        )
        engine = create_async_engine(url, echo=echo, async_creator=creator)
        event.listen(
            engine.sync_engine,
            "connect",
            partial(_sqlite_pragmas, busy_timeout_ms=0 if in_place else 5000),
        )
        if path is not None and checkpoint_interval is not None:
            _attach_checkpointer(engine, path, checkpoint_interval)
        return engine
    return create_async_engine(url, echo=echo, pool_size=10, max_overflow=10, pool_pre_ping=True)


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def session_scope(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits on success, rolls back on any error."""
    async with sessionmaker(engine)() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def create_all(engine: AsyncEngine) -> None:
    """Create missing tables directly (tests); deployments use Alembic (`whistle migrate`)."""
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
