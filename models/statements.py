"""Statement helpers shared by the store's modules: the dialect's INSERT (ON CONFLICT on
SQLite and PostgreSQL alike) and statements built once per dialect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel.ext.asyncio.session import AsyncSession


def dialect_insert(session: AsyncSession):
    """The dialect's INSERT, which knows ON CONFLICT on both SQLite and PostgreSQL."""
    return _insert_for(session.get_bind().dialect.name)


def _insert_for(dialect: str):
    return pg_insert if dialect == "postgresql" else sqlite_insert


def prebuilt(build: Callable[[Any], Any]) -> Callable[[AsyncSession], Any]:
    """Build a statement once per dialect (from its INSERT) and reuse it with parameters.

    On the hot paths building a statement with .values() costs more than running it;
    a prebuilt one is compiled once and found in SQLAlchemy's cache by identity.
    """
    built: dict[str, Any] = {}

    def for_session(session: AsyncSession):
        dialect = session.get_bind().dialect.name
        if dialect not in built:
            built[dialect] = build(_insert_for(dialect))
        return built[dialect]

    return for_session
