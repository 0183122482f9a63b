"""Schema migrations: `whistle migrate` and the service's start-up bring the database to head.

Alembic is configured here in code (script location = the installed `migrations` package), so
it works from an installed package without an alembic.ini.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import migrations
from models import tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from models.engine import make_engine

# Serialises concurrent upgrades (several workers starting at once) on PostgreSQL.
_PG_LOCK_ID = 0x5748_4953  # "WHIS"


class MigrationError(Exception):
    """The database cannot be brought to the current schema automatically."""


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    # __path__ rather than __file__: an editable install made before migrations/__init__.py
    # existed sees the folder as a namespace package, which has no __file__.
    cfg.set_main_option("script_location", str(Path(next(iter(migrations.__path__)))))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def schema_differences(conn: Connection) -> list:
    """What differs between the database and models.tables (empty list = identical)."""
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(ctx, SQLModel.metadata)


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade_on(conn: Connection, revision: str) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_ID})
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    names = set(inspect(conn).get_table_names())
    if "alembic_version" not in names and "case" in names:
        # Made by create_all before migrations were used: adopt it if it matches exactly.
        diffs = schema_differences(conn)
        if diffs:
            raise MigrationError(
                f"数据库已有数据表但没有迁移记录，且与当前表结构不一致，无法自动升级: {diffs[:5]}"
            )
        command.stamp(cfg, "head")
        return
    command.upgrade(cfg, revision)


async def upgrade(url: str, revision: str = "head") -> str | None:
    """Upgrade the database at `url` to `revision`; returns the revision it is at afterwards."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_on, revision)
        async with engine.connect() as conn:
            return await conn.run_sync(_current)
    finally:
        await engine.dispose()


def upgrade_sync(url: str, revision: str = "head") -> str | None:
    """upgrade() for callers without an event loop (the `whistle migrate` command)."""
    return asyncio.run(upgrade(url, revision))


async def current_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current)
    finally:
        await engine.dispose()
