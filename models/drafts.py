"""Bot runtime state in the store: conversation states/drafts (BotState), the ids of
Telegram updates already handled (ProcessedUpdate), and the few look-ups the bot needs that
models/cases.py does not offer.

Used by bot/persistence.py (a PTB BasePersistence), the bot's duplicate-update guard and the
bot's notices to reporters.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import bindparam, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.statements import prebuilt
from models.tables import BotState, Case, Enterprise, ProcessedUpdate, Reporter


async def claim_updates(
    session: AsyncSession, update_ids: list[int], now: datetime, *, since: datetime
) -> set[int]:
    """Record many update ids in one statement; returns those not handled since `since`.

    INSERT .. ON CONFLICT DO UPDATE .. WHERE at < since RETURNING: the ids that come back
    are new, or were last seen so long ago that Telegram must have restarted its numbering
    (it does after a week without updates); of two concurrent claims of an id exactly one
    gets it. Every update is claimed, so the statement is built once (see prebuilt).
    """
    rows = [{"update_id": uid, "at": now, "since": since} for uid in sorted(set(update_ids))]
    if not rows:
        return set()
    return set((await session.exec(_claim(session), params=rows)).scalars().all())


@prebuilt
def _claim(insert_):
    table = ProcessedUpdate.__table__
    stmt = insert_(table)
    return stmt.on_conflict_do_update(
        index_elements=["update_id"],
        set_={"at": stmt.excluded.at},
        where=table.c.at < bindparam("since"),
    ).returning(table.c.update_id)


def draft_key(telegram_id: int, nonce: int) -> str:
    """The idempotency key of the case a report draft becomes (one case per draft)."""
    return f"draft:{telegram_id}:{nonce}"


async def case_of_draft(session: AsyncSession, telegram_id: int, nonce: int) -> Case | None:
    """The case a submitted draft became, or None (not submitted)."""
    key = draft_key(telegram_id, nonce)
    return (await session.exec(select(Case).where(Case.idempotency_key == key))).scalars().first()


async def handled_updates(
    session: AsyncSession, update_ids: list[int], *, since: datetime
) -> set[int]:
    """Those of `update_ids` recorded as handled since `since` (a read: nothing is claimed,
    so an update whose effect never committed is handled again when redelivered)."""
    if not update_ids:
        return set()
    rows = await session.exec(
        select(ProcessedUpdate.update_id).where(
            ProcessedUpdate.update_id.in_(sorted(set(update_ids))), ProcessedUpdate.at >= since
        )
    )
    return set(rows.scalars().all())


async def forget_processed_updates(session: AsyncSession) -> None:
    """Forget every handled update id (a new local Bot API emulator numbers from scratch)."""
    await session.exec(delete(ProcessedUpdate))


async def prune_processed_updates(
    session: AsyncSession, before: datetime, limit: int | None = None
) -> int:
    """Forget update ids handled before `before` (Telegram never redelivers that late), at
    most `limit` of them; how many were forgotten."""
    old = ProcessedUpdate.at < before
    if limit is not None:
        oldest = select(ProcessedUpdate.update_id).where(old).limit(limit)
        old = ProcessedUpdate.update_id.in_(oldest.scalar_subquery())
    result = await session.exec(delete(ProcessedUpdate).where(old))
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
        await session.exec(_save_state(session), params=upserts)
    if deletes:
        await session.exec(delete(BotState).where(BotState.key.in_(deletes)))


@prebuilt
def _save_state(insert_):
    stmt = insert_(BotState.__table__)
    return stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )


async def reporter_of_case(session: AsyncSession, case: Case) -> Reporter | None:
    """The reporter of a case (for their private chat id: Reporter.telegram_id)."""
    return await session.get(Reporter, case.reporter_id)


async def enterprise_of_case(session: AsyncSession, case: Case) -> Enterprise | None:
    """The enterprise an enterprise case was filed for, or None."""
    return await session.get(Enterprise, case.enterprise_id) if case.enterprise_id else None
