"""Bot runtime state in the store: conversation states/drafts (BotState), the ids of
Telegram updates already handled (ProcessedUpdate), and the few look-ups the bot needs that
models/store.py does not offer.

Used by bot/persistence.py (a PTB BasePersistence), the bot's duplicate-update guard and the
bot's notices to reporters.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.store import dialect_insert
from models.tables import BotState, Case, Enterprise, ProcessedUpdate, Reporter


async def claim_updates(session: AsyncSession, update_ids: list[int], now: datetime, *,
                        since: datetime) -> set[int]:
    """Record many update ids in one statement; returns those not handled since `since`.

    One INSERT .. ON CONFLICT DO UPDATE .. WHERE at < since RETURNING: the ids that come back
    are new, or were last seen so long ago that Telegram must have restarted its numbering
    (it does after a week without updates); of two concurrent claims of an id exactly one
    gets it.
    """
    fresh: set[int] = set()
    table = ProcessedUpdate.__table__
    for start in range(0, len(update_ids), 500):  # stay far below SQLite's variable limit
        chunk = sorted(set(update_ids[start:start + 500]))
        stmt = dialect_insert(session)(ProcessedUpdate).values(
            [{"update_id": uid, "at": now} for uid in chunk])
        stmt = stmt.on_conflict_do_update(
            index_elements=["update_id"], set_={"at": stmt.excluded.at},
            where=table.c.at < since,
        ).returning(table.c.update_id)
        fresh.update((await session.exec(stmt)).scalars().all())
    return fresh


async def forget_processed_updates(session: AsyncSession) -> None:
    """Forget every handled update id (a new local Bot API emulator numbers from scratch)."""
    await session.exec(delete(ProcessedUpdate))


async def prune_processed_updates(session: AsyncSession, before: datetime) -> int:
    """Forget update ids handled before `before` (Telegram never redelivers that late)."""
    result = await session.exec(delete(ProcessedUpdate).where(ProcessedUpdate.at < before))
    return result.rowcount or 0


async def load_states(session: AsyncSession, prefix: str) -> dict[str, dict]:
    """All BotState values whose key starts with `prefix`, by key."""
    rows = await session.exec(
        select(BotState.key, BotState.value).where(BotState.key.startswith(prefix))
    )
    return {key: value for key, value in rows.all()}


async def get_state(session: AsyncSession, key: str) -> dict | None:
    """One BotState value, or None."""
    row = await session.get(BotState, key)
    return None if row is None else row.value


async def save_states(
    session: AsyncSession, items: Mapping[str, dict | None], now: datetime
) -> None:
    """Upsert each key's value in one statement; a None value deletes the key."""
    upserts = [
        {"key": key, "value": value, "updated_at": now}
        for key, value in items.items()
        if value is not None
    ]
    deletes = [key for key, value in items.items() if value is None]
    if upserts:
        stmt = dialect_insert(session)(BotState)
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
        await session.exec(stmt, params=upserts)
    if deletes:
        await session.exec(delete(BotState).where(BotState.key.in_(deletes)))


async def reporter_of_case(session: AsyncSession, case: Case) -> Reporter | None:
    """The reporter of a case (for their private chat id: Reporter.telegram_id)."""
    return await session.get(Reporter, case.reporter_id)


async def enterprise_of_case(session: AsyncSession, case: Case) -> Enterprise | None:
    """The enterprise an enterprise case was filed for, or None."""
    return await session.get(Enterprise, case.enterprise_id) if case.enterprise_id else None
