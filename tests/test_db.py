"""Engine setup: SQLite pragmas and the background WAL checkpointer (models/db.py)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from sqlalchemy import text

from models.db import WAL_AUTOCHECKPOINT_PAGES, make_engine, wal_checkpointer


def _checkpointer_threads(path: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"wal-checkpoint:{path.name}"]


async def _write_rounds(engine, rounds: int, per_round: int, settle) -> list[int]:
    """Size of the -wal file after each round of small committed transactions."""
    wal = Path(engine.url.database + "-wal")
    sizes = []
    for r in range(rounds):
        for i in range(per_round):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t (body) VALUES (:b)"),
                                   {"b": f"{r}-{i}" * 50})
        sizes.append(wal.stat().st_size)
        await settle()
    return sizes


async def _engine_with_table(path: Path, **kw):
    engine = make_engine(f"sqlite+aiosqlite:///{path}", **kw)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
    return engine


async def test_pragmas_raise_the_commit_time_checkpoint_to_a_safety_net(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    async with engine.connect() as conn:
        mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
        pages = (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar()
    await engine.dispose()
    assert (mode, pages) == ("wal", WAL_AUTOCHECKPOINT_PAGES)


async def test_checkpointer_keeps_the_wal_from_growing(tmp_path):
    """Commits never reach the safety net here, so only the checkpointer can reuse the log."""
    engine = await _engine_with_table(tmp_path / "bg.db", checkpoint_interval=0.01)
    checkpointer = wal_checkpointer(engine)

    async def two_checkpoints():  # the second one began after the round's last commit
        seen = checkpointer.checkpoints
        for _ in range(500):
            if checkpointer.checkpoints >= seen + 2:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the checkpointer stopped running")

    sizes = await _write_rounds(engine, rounds=8, per_round=40, settle=two_checkpoints)
    await engine.dispose()
    # Each round reuses the log from its start (a writer that happens to begin while the
    # checkpointer is mid-run appends instead, once: the round after it restarts).
    assert max(sizes) < 3 * sizes[0], sizes

    control = await _engine_with_table(tmp_path / "fg.db", checkpoint_interval=None)
    assert wal_checkpointer(control) is None
    grown = await _write_rounds(control, rounds=8, per_round=40, settle=lambda: asyncio.sleep(0.02))
    await control.dispose()
    assert grown[-1] > 6 * grown[0], grown  # without it the log only grows


async def test_checkpointer_stops_on_dispose_and_restarts_with_the_engine(tmp_path):
    path = tmp_path / "life.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    checkpointer = wal_checkpointer(engine)
    assert not checkpointer.running and not _checkpointer_threads(path)  # not before use
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    assert checkpointer.running and len(_checkpointer_threads(path)) == 1

    await engine.dispose()
    assert not checkpointer.running and not _checkpointer_threads(path)
    assert not Path(f"{path}-wal").exists()  # the last connection closed cleanly

    async with engine.connect() as conn:  # an engine stays usable after dispose()
        await conn.execute(text("SELECT 1"))
    assert checkpointer.running
    await engine.dispose()
    assert not _checkpointer_threads(path)


async def test_no_checkpointer_for_in_memory_databases():
    engine = make_engine("sqlite+aiosqlite://")
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    assert wal_checkpointer(engine) is None
    await engine.dispose()


async def test_one_trip_to_sqlites_thread_per_statement(tmp_path, monkeypatch):
    from models.sqlite_one_trip import OneTripConnection

    engine = await _engine_with_table(tmp_path / "trips.db", checkpoint_interval=None)
    trips: list[str] = []
    real_execute = OneTripConnection._execute

    async def counted(self, fn, *args, **kwargs):
        trips.append(getattr(fn, "__name__", "?"))
        return await real_execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(OneTripConnection, "_execute", counted)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (body) VALUES ('a'), ('b')"))
            rows = (await conn.execute(text("SELECT body FROM t ORDER BY id"))).all()
            changed = (await conn.execute(text("UPDATE t SET body = 'c'"))).rowcount
        assert [r[0] for r in rows] == ["a", "b"] and changed == 2
        # Three statements and the commit; no trips for cursors, fetches or the pool's reset.
        assert len(trips) == 4, trips
    finally:
        await engine.dispose()


async def test_a_long_result_still_streams_in_chunks(tmp_path):
    from models.sqlite_one_trip import OneTripCursor

    engine = await _engine_with_table(tmp_path / "stream.db", checkpoint_interval=None)
    n = OneTripCursor.PREFETCH * 2 + 7
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (body) VALUES (:b)"),
                               [{"b": str(i)} for i in range(n)])
        async with engine.connect() as conn:
            streamed = await conn.stream(text("SELECT body FROM t ORDER BY id"))
            got = [row[0] async for row in streamed]
            everything = (await conn.execute(text("SELECT body FROM t ORDER BY id"))).all()
        assert got == [str(i) for i in range(n)] and len(everything) == n
    finally:
        await engine.dispose()
