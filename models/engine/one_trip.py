"""aiosqlite connections that make one trip to their thread per statement instead of four.

aiosqlite runs each call on the connection's own thread, and SQLAlchemy makes four calls per
statement: create a cursor, execute, fetch the rows, close the cursor. Every trip waits for
the event loop to come round again, so in a busy bot a dozen-statement transaction held
SQLite's write lock for ~15 ms while doing ~3 ms of work. Here execute also fetches the rows
(the first PREFETCH of them) on the thread, and creating and closing a cursor (no I/O,
nothing else using the connection: SQLAlchemy runs one statement at a time per connection)
happen in place.

Still worth it with the bot's writes in place (inline.py): the bot's read_session and the
dashboard of `whistle run` read through these connections on the bot's busy loop. Measured
with bench/one_trip_bench.py (store_bench's operations, 100,000 cases, medians of 3 rounds):
on an idle loop no different from plain aiosqlite; on a loop busy as a loaded bot's, 2-4
times faster (due scan 51-93 ms against 127-204, a transition 14-26 ms against 47-55).

This leans on aiosqlite's internals (Connection._execute and _conn, Cursor._cursor), as
SQLAlchemy's own aiosqlite dialect does; no version is pinned for it, so tests/models/test_db.py
counts the trips and fails if a new aiosqlite changes them.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Iterable
from threading import Thread
from typing import Any

import aiosqlite


class OneTripCursor(aiosqlite.Cursor):
    """execute() runs the statement and fetches its first rows in a single trip; the rest of a
    long result (a streamed export) comes in further trips as it is asked for."""

    PREFETCH = 500  # rows fetched with the statement: all of any ordinary result

    def __init__(self, conn: aiosqlite.Connection, cursor: sqlite3.Cursor) -> None:
        super().__init__(conn, cursor)
        self._buffer: deque = deque()
        self._more = False  # rows may remain in the sqlite3 cursor beyond the buffer

    def __await__(self):
        """`await connection.cursor()` as with aiosqlite's own cursors (none is needed: the
        cursor is made in place)."""
        return self._ready().__await__()

    async def _ready(self) -> OneTripCursor:
        return self

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> OneTripCursor:
        def run() -> list:
            self._cursor.execute(sql, [] if parameters is None else parameters)
            return self._cursor.fetchmany(self.PREFETCH) if self._cursor.description else []

        rows = await self._execute(run)
        self._buffer, self._more = deque(rows), len(rows) == self.PREFETCH
        return self

    async def _take(self, count: int | None) -> list:
        """Up to `count` rows (all if None): the buffer first, then the cursor."""
        wanted = len(self._buffer) if count is None else min(count, len(self._buffer))
        rows = [self._buffer.popleft() for _ in range(wanted)]
        if self._more and (count is None or len(rows) < count):
            rest = (
                await super().fetchall()
                if count is None
                else await super().fetchmany(count - len(rows))
            )
            self._more = count is not None and len(rest) == count - len(rows)
            rows += rest
        return rows

    async def fetchall(self) -> list:
        return await self._take(None)

    async def fetchmany(self, size: int | None = None) -> list:
        return await self._take(self.arraysize if size is None else size)

    async def fetchone(self) -> Any:
        rows = await self._take(1)
        return rows[0] if rows else None

    async def close(self) -> None:
        self._buffer, self._more = deque(), False
        self._cursor.close()


class OneTripConnection(aiosqlite.Connection):
    """aiosqlite.Connection whose cursors are OneTripCursor, made without a trip, and
    which skips the trip for a rollback with no transaction open (the pool's reset of
    every connection handed back after a commit)."""

    def cursor(self) -> OneTripCursor:
        """A cursor made in place (no trip); use it with `async with` or `await`, as
        aiosqlite's."""
        return OneTripCursor(self, self._conn.cursor())

    async def rollback(self) -> None:
        if self._connection is not None and not self._connection.in_transaction:
            return
        await super().rollback()


def one_trip_creator(path: str) -> Callable[[], OneTripConnection]:
    """An `async_creator` for create_async_engine: one-trip connections to the file `path`."""

    def connect() -> OneTripConnection:
        # check_same_thread=False as SQLAlchemy's own aiosqlite dialect passes for files.
        connection = OneTripConnection(
            lambda: sqlite3.connect(path, check_same_thread=False), iter_chunk_size=64
        )
        # As the dialect does: never blocks interpreter exit (before aiosqlite 0.22 the
        # connection was itself the thread).
        thread = connection if isinstance(connection, Thread) else connection._thread
        thread.daemon = True
        return connection

    return connect
