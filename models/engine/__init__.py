"""Database engines and the SQLite plumbing under them, apart from the tables and the store.

db.py makes engines and sessions (SQLite files with a background WAL checkpointer, or
PostgreSQL); inline.py runs the bot's SQLite statements in place on the event loop;
one_trip.py makes the threaded connections one trip per statement; turns.py queues the
bot's units of work for SQLite's one writer and batches small writes.
"""

from models.engine.db import (
    STORE_DOWN,
    WAL_AUTOCHECKPOINT_PAGES,
    create_all,
    is_sqlite,
    is_sqlite_file,
    make_engine,
    session_scope,
    sessionmaker,
    store_unavailable,
    wal_checkpointer,
)
from models.engine.turns import Gathered, GatheredWrites, TurnLock

__all__ = [
    "STORE_DOWN",
    "WAL_AUTOCHECKPOINT_PAGES",
    "Gathered",
    "GatheredWrites",
    "TurnLock",
    "create_all",
    "is_sqlite",
    "is_sqlite_file",
    "make_engine",
    "session_scope",
    "sessionmaker",
    "store_unavailable",
    "wal_checkpointer",
]
