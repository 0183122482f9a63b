"""Engine setup: SQLite pragmas and the background WAL checkpointer (models/engine/db.py)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path

from sqlalchemy import text

from models.engine import WAL_AUTOCHECKPOINT_PAGES, make_engine, wal_checkpointer


def _checkpointer_threads(path: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"wal-checkpoint:{path.name}"]


async def _write_rounds(engine, rounds: int, per_round: int, settle) -> list[int]:
    """Size of the -wal file after each round of small committed transactions."""
    wal = Path(engine.url.database + "-wal")
    sizes = []
    for r in range(rounds):
        for i in range(per_round):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t (body) VALUES (:b)"), {"b": f"{r}-{i}" * 50})
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
    from models.engine.one_trip import OneTripConnection

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
    from models.engine.one_trip import OneTripCursor

    engine = await _engine_with_table(tmp_path / "stream.db", checkpoint_interval=None)
    n = OneTripCursor.PREFETCH * 2 + 7
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO t (body) VALUES (:b)"), [{"b": str(i)} for i in range(n)]
            )
        async with engine.connect() as conn:
            streamed = await conn.stream(text("SELECT body FROM t ORDER BY id"))
            got = [row[0] async for row in streamed]
            everything = (await conn.execute(text("SELECT body FROM t ORDER BY id"))).all()
        assert got == [str(i) for i in range(n)] and len(everything) == n
    finally:
        await engine.dispose()


# ---- in-place connections (models/engine/inline.py) ----------------------------------------


async def test_in_place_engine_runs_statements_on_the_loops_thread(tmp_path):
    engine = await _engine_with_table(
        tmp_path / "inline.db", in_place=True, checkpoint_interval=None
    )
    threads_before = set(threading.enumerate())
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (body) VALUES ('a'), ('b')"))
            rows = (await conn.execute(text("SELECT body FROM t ORDER BY id"))).all()
            raw = await conn.get_raw_connection()
            sqlite_thread_of = raw.driver_connection
        assert [r[0] for r in rows] == ["a", "b"]
        assert not sqlite_thread_of._thread.is_alive()  # aiosqlite's worker never started
        assert set(threading.enumerate()) - threads_before == set()
        # The threaded engine reads what the in-place one wrote (same file, WAL).
        reader = make_engine(engine.url.render_as_string(), checkpoint_interval=None)
        async with reader.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 2
        await reader.dispose()
    finally:
        await engine.dispose()


async def test_in_place_writer_waits_for_a_writer_of_its_own_loop_without_blocking_it(tmp_path):
    # The dashboard of `whistle run` writes through threaded connections on the bot's own
    # loop. If the in-place writer waited in SQLite's busy handler, the loop would stop and
    # the other writer could never commit.
    path = tmp_path / "both.db"
    inline = await _engine_with_table(path, in_place=True, checkpoint_interval=None)
    threaded = make_engine(f"sqlite+aiosqlite:///{path}", checkpoint_interval=None)
    order: list[str] = []
    ticks = 0

    async def holder() -> None:
        async with threaded.begin() as conn:
            await conn.execute(text("INSERT INTO t (body) VALUES ('held')"))
            order.append("holder has the lock")
            await asyncio.sleep(0.3)
            order.append("holder commits")

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.ensure_future(ticker())
    try:
        holding = asyncio.ensure_future(holder())
        while not order:
            await asyncio.sleep(0.005)
        async with inline.begin() as conn:
            await conn.execute(text("INSERT INTO t (body) VALUES ('inline')"))
            order.append("in-place writer wrote")
        await holding
        assert order == ["holder has the lock", "holder commits", "in-place writer wrote"]
        assert ticks >= 10  # the loop went on while the in-place writer waited
        async with inline.connect() as conn:
            bodies = (await conn.execute(text("SELECT body FROM t ORDER BY id"))).scalars().all()
        assert bodies == ["held", "inline"]
    finally:
        tick_task.cancel()
        await threaded.dispose()
        await inline.dispose()


async def test_in_place_writer_gives_up_after_the_busy_timeout(tmp_path, monkeypatch):
    import sqlite3

    from models.engine import inline as inline_module

    monkeypatch.setattr(inline_module, "BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "stuck.db"
    inline = await _engine_with_table(path, in_place=True, checkpoint_interval=None)
    other = sqlite3.connect(path, isolation_level=None)  # another process, say
    other.execute("BEGIN IMMEDIATE")
    try:
        started = asyncio.get_running_loop().time()
        try:
            async with inline.begin() as conn:
                await conn.execute(text("INSERT INTO t (body) VALUES ('x')"))
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy wraps the sqlite3 error
            assert "locked" in str(exc)
        else:
            raise AssertionError("the write should have failed while the lock was held")
        assert asyncio.get_running_loop().time() - started >= 0.2
    finally:
        other.execute("ROLLBACK")
        other.close()
    async with inline.begin() as conn:  # the lock is free again: the same engine writes
        await conn.execute(text("INSERT INTO t (body) VALUES ('y')"))
    await inline.dispose()


async def test_services_read_the_file_their_statements_write(tmp_path):
    from bot.services import Services
    from whistle.config import DEFAULT_CONFIG, load_settings

    settings = load_settings(DEFAULT_CONFIG, env={})
    for url, shared_file in (
        (f"sqlite+aiosqlite:///{tmp_path / 's.db'}", True),
        ("sqlite+aiosqlite://", False),
    ):
        services = Services.from_settings(replace(settings, database_url=url), suggester=object())
        try:
            assert (services.read_engine is not None) == shared_file
            async with services.session() as session:
                await session.exec(text("CREATE TABLE t (x INTEGER)"))
                await session.exec(text("INSERT INTO t VALUES (7)"))
            async with services.read_session() as session:
                assert (await session.exec(text("SELECT x FROM t"))).scalar() == 7
        finally:
            await services.dispose()
