"""aiosqlite connections that run SQLite right on the event loop's thread: no trips at all.

Even at one trip per statement (models/engine/one_trip.py), each statement of the bot waits
for the busy event loop to come round again, so a report's transaction held SQLite's one
write lock for many loop turns while doing a few milliseconds of work, and every other
update queued behind it. The bot's statements are short (single rows by key, small
INSERTs): run in place, a transaction completes without giving up the loop at all, and the
thread hand-offs cost more CPU than the statements themselves. Long reads (scans, the
dashboard's statistics) stay on threaded connections, which never block the loop.

One thing may not block here: waiting for another connection's write lock. SQLite's own
busy handler would sleep on the loop's thread, and when the other writer is a coroutine of
this same loop (the dashboard of `whistle run`) it could never finish — a deadlock until the
timeout. So these connections have no busy timeout; a statement that finds the database
locked is retried after an asyncio sleep, which lets the other writer go on.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from models.engine.one_trip import OneTripConnection

BUSY_TIMEOUT_S = 5.0  # as the threaded connections' PRAGMA busy_timeout
FIRST_RETRY_S = 0.001
LONGEST_RETRY_S = 0.05


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc)


class InlineConnection(OneTripConnection):
    """A OneTripConnection whose calls run in place instead of on a worker thread."""

    async def _execute(self, fn, *args, **kwargs) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        call = partial(fn, *args, **kwargs)
        deadline, pause = None, FIRST_RETRY_S
        while True:
            try:
                return call()
            except sqlite3.OperationalError as exc:
                # A locked database leaves the statement undone, so it can simply be retried.
                if not _is_busy(exc):
                    raise
                now = time.monotonic()
                deadline = deadline or now + BUSY_TIMEOUT_S
                if now >= deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(2 * pause, LONGEST_RETRY_S)

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self):
        return self._connect().__await__()  # no worker thread to start

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


def inline_creator(path: str) -> Callable[[], InlineConnection]:
    """An `async_creator` for create_async_engine: in-place connections to the file `path`."""

    def connect() -> InlineConnection:
        return InlineConnection(
            lambda: sqlite3.connect(path, check_same_thread=False, timeout=0), iter_chunk_size=64
        )

    return connect
