"""Alembic migrations bring an empty database to exactly the schema of models.tables."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from models.engine import create_all, make_engine
from models.migrate import (
    MigrationError,
    alembic_config,
    current_revision,
    head_revision,
    schema_differences,
    upgrade,
)
from tests.dbfixtures import ENGINES, create_pg_database, drop_pg_database, pg_base_url, pg_url_for


@pytest.fixture(params=ENGINES)
async def empty_url(request, tmp_path):
    """The URL of an empty database (no tables at all)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    if pg_base_url() is None:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")
    name = await create_pg_database()
    try:
        yield pg_url_for(name)
    finally:
        await drop_pg_database(name)


async def differences(url: str) -> list:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(schema_differences)
    finally:
        await engine.dispose()


def test_one_linear_history():
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    assert head_revision() == script.get_current_head()


async def test_upgrade_to_head_matches_the_models(empty_url):
    assert await current_revision(empty_url) is None
    assert await upgrade(empty_url) == head_revision()
    assert await differences(empty_url) == []
    # Running it again (every service start does) changes nothing.
    assert await upgrade(empty_url) == head_revision()
    engine = make_engine(empty_url)
    async with engine.connect() as conn:
        indexes = await conn.run_sync(
            lambda c: {ix["name"] for ix in inspect(c).get_indexes("case")}
        )
    await engine.dispose()
    assert {
        "ix_case_status_sign_by",
        "ix_case_status_resolve_by",
        "ix_case_department_status",
        "ix_case_reporter_created",
    } <= indexes


async def test_a_create_all_database_is_adopted(empty_url):
    engine = make_engine(empty_url)
    await create_all(engine)
    await engine.dispose()
    assert await upgrade(empty_url) == head_revision()
    assert await differences(empty_url) == []


async def test_a_diverging_unversioned_database_is_refused(empty_url):
    engine = make_engine(empty_url)
    await create_all(engine)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE reporter ADD COLUMN nickname VARCHAR(10)")
    await engine.dispose()
    with pytest.raises(MigrationError, match="表结构不一致"):
        await upgrade(empty_url)
