"""Database fixtures shared by every test that needs the store.

`engine` runs each test on a real SQLite file and, when TEST_DATABASE_URL is set, on a fresh
PostgreSQL database of its own (created from a per-run template, dropped afterwards; the
server's shared database is never touched, so several people can test at once).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from models import cases
from models.cases import Actor
from models.deadlines import Rules
from models.engine import create_all, make_engine, session_scope, sessionmaker
from models.reference import sync_reference_data
from models.tables import (
    CLOSED,
    DISPATCHED,
    GRID_ASSIGNED,
    GRID_SIGNED,
    MERGED,
    NOT_ACCEPTED,
    RESOLVED,
    SIGNED,
    SUBMITTED,
    TRIAGE,
    VERIFYING,
    Case,
)
from whistle.config import DEFAULT_CONFIG, load_settings

PG_ENV = "TEST_DATABASE_URL"
ENGINES = ["sqlite", "postgresql"]


def pg_base_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def _dsn(url: str, database: str | None = None) -> str:
    """asyncpg DSN for a SQLAlchemy URL, optionally pointing at another database."""
    u = make_url(url).set(drivername="postgresql")
    if database:
        u = u.set(database=database)
    return u.render_as_string(hide_password=False)


def pg_url_for(database: str) -> str:
    return make_url(pg_base_url()).set(database=database).render_as_string(hide_password=False)


async def pg_admin(sql: str) -> None:
    """Run CREATE/DROP DATABASE on the test server (needs autocommit: asyncpg gives it)."""
    conn = await asyncpg.connect(_dsn(pg_base_url()))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_pg_database(template: str | None = None) -> str:
    """A fresh uniquely named database on the test server; returns its name."""
    name = f"whistle_t_{secrets.token_hex(6)}"
    await pg_admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


async def drop_pg_database(name: str) -> None:
    await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_template():
    """A database holding the schema, copied by CREATE DATABASE ... TEMPLATE for each test."""
    if pg_base_url() is None:
        yield None
        return

    async def build() -> str:
        name = await create_pg_database()
        engine = make_engine(pg_url_for(name))
        try:
            await create_all(engine)
        finally:
            await engine.dispose()  # a template must have no open connections
        return name

    name = asyncio.run(build())
    yield name
    asyncio.run(drop_pg_database(name))


@pytest.fixture
def settings():
    """The repo's config.toml, ignoring DATABASE_URL and the like from the environment."""
    return load_settings(DEFAULT_CONFIG, env={})


@pytest.fixture
def rules(settings) -> Rules:
    return Rules.from_settings(settings)


@pytest.fixture(params=ENGINES)
async def engine(request, tmp_path, pg_template):
    """An async engine on an empty schema: SQLite file in tmp_path, or a fresh PG database."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'whistle.db'}")
        await create_all(eng)
        yield eng
        await eng.dispose()
        return
    if pg_base_url() is None:
        pytest.skip(
            f"PostgreSQL tests need {PG_ENV} "
            "(e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test)"
        )
    name = await create_pg_database(template=pg_template)
    eng = make_engine(pg_url_for(name))
    try:
        yield eng
    finally:
        await eng.dispose()
        await drop_pg_database(name)


@pytest.fixture
def session_factory(engine):
    return sessionmaker(engine)


@pytest.fixture
async def session(session_factory):
    """One session for the test; the test commits when it wants to."""
    async with session_factory() as s:
        yield s


@dataclass
class Seeded:
    """Reference data loaded from config.toml, with the handy ids tests need."""

    engine: object
    session_factory: object
    settings: object
    rules: Rules
    triage: int  # Telegram ids of staff in config.toml
    admin: int
    leader: int
    grid: int
    dept_staff: dict[str, int]  # department code -> a staff member's Telegram id

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def case_in(
        self,
        status: str,
        now: datetime,
        *,
        reporter: int = 1001,
        department: str = "water",
        text: str = "小区停水两天了，请尽快处理",
        **create_kw,
    ) -> Case:
        """A committed case brought to `status` through the real lifecycle functions."""
        staff = Actor.staff(self.dept_staff[department])
        async with session_scope(self.engine) as s:
            case = await cases.create_case(
                s,
                reporter_telegram_id=reporter,
                text=text,
                now=now,
                suggestions=[(department, 0.6)],
                model_version="test",
                **create_kw,
            )
            if status in (TRIAGE, NOT_ACCEPTED):
                case = await cases.send_to_triage(s, case.id, now, rules=self.rules)
            if status == NOT_ACCEPTED:
                case = await cases.not_accept(
                    s, case.id, Actor.staff(self.triage), now, rules=self.rules, category="remit"
                )
            if status in (GRID_ASSIGNED, GRID_SIGNED):
                case = await cases.transition(
                    s, case.id, "to_grid", Actor.SYSTEM, now, rules=self.rules
                )
            if status == GRID_SIGNED:
                case = await cases.transition(
                    s, case.id, "grid_sign", Actor.SYSTEM, now, rules=self.rules
                )
            if status in (DISPATCHED, SIGNED, RESOLVED, CLOSED, VERIFYING):
                case = await cases.dispatch(
                    s, case.id, department, Actor.SYSTEM, now, rules=self.rules
                )
            if status in (SIGNED, RESOLVED, CLOSED, VERIFYING):
                case = await cases.sign_for(s, case.id, staff, now, rules=self.rules)
            if status in (RESOLVED, CLOSED):
                case = await cases.resolve(s, case.id, staff, "已修复", now, rules=self.rules)
            if status == VERIFYING:
                case = await cases.transition(
                    s,
                    case.id,
                    "to_verify",
                    Actor.SYSTEM,
                    now,
                    rules=self.rules,
                    resolution="已修复",
                )
            if status == CLOSED:
                case = await cases.rate(
                    s, case.id, Actor.reporter(reporter), "satisfied", None, now, rules=self.rules
                )
            if status == MERGED:
                other = await cases.create_case(
                    s, reporter_telegram_id=reporter + 1, text=text, now=now
                )
                case = await cases.merge(
                    s, case.id, other.id, Actor.staff(self.triage), now, rules=self.rules
                )
            assert case.status == status or status == SUBMITTED
            return case


@pytest.fixture
async def seeded(engine, session_factory, settings, rules) -> Seeded:
    async with session_scope(engine) as s:
        await sync_reference_data(s, settings)

    def first(role: str) -> int:
        return next(st.telegram_id for st in settings.staff if st.role == role)

    dept_staff = {}
    for st in settings.staff:
        if st.role == "department":
            dept_staff.setdefault(st.department, st.telegram_id)
    return Seeded(
        engine=engine,
        session_factory=session_factory,
        settings=settings,
        rules=rules,
        triage=first("triage"),
        admin=first("admin"),
        leader=first("leader"),
        grid=first("grid"),
        dept_staff=dept_staff,
    )
