"""The outbox: every push is a row here first, so it survives restarts and is sent once.

A push is enqueued in the same transaction as the change that causes it, under an idempotency
key (a second enqueue with the same key does nothing). Senders claim due rows with a lease:
on PostgreSQL with SELECT ... FOR UPDATE SKIP LOCKED, on SQLite with one UPDATE ... RETURNING
under SQLite's single writer lock, so several workers never claim the same row at once.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import case as sql_case
from sqlalchemy import func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.statements import prebuilt
from models.tables import Outbox

PENDING, SENT, FAILED, DROPPED = "pending", "sent", "failed", "dropped"
# Rows for this "chat" are HTTP callbacks to Open311 clients (models/open311.py), sent by
# web/open311/callbacks.py; Telegram has no chat -1, and its sender never claims them.
WEBHOOK_CHAT = -1
_KEY_MAX = 200
_ERROR_MAX = 500


async def enqueue(
    session: AsyncSession,
    *,
    key: str,
    chat_id: int,
    text: str,
    kind: str,
    now: datetime,
    reply_markup: dict | None = None,
    photo: str | None = None,
    case_id: int | None = None,
    due_at: datetime | None = None,
) -> int | None:
    """Queue a push (due now unless due_at); its row id, or None if one with this key was
    queued before."""
    params = push_row(
        key=key,
        chat_id=chat_id,
        text=text,
        kind=kind,
        now=now,
        reply_markup=reply_markup,
        photo=photo,
        case_id=case_id,
        due_at=due_at,
    )
    return (await session.exec(_insert_push(session), params=params)).scalar_one_or_none()


async def enqueue_many(session: AsyncSession, rows: list[dict]) -> None:
    """Queue several pushes (rows from push_row) with one statement; keys queued before are
    skipped, as in enqueue."""
    if rows:
        await session.exec(_insert_push(session), params=rows)


def push_row(
    *,
    key: str,
    chat_id: int,
    text: str,
    kind: str,
    now: datetime,
    reply_markup: dict | None = None,
    photo: str | None = None,
    case_id: int | None = None,
    due_at: datetime | None = None,
) -> dict:
    """The Outbox row of one push, checked."""
    if not key or len(key) > _KEY_MAX:
        raise ValueError(f"outbox key must be 1..{_KEY_MAX} characters: {key!r}")
    return {
        "key": key,
        "chat_id": chat_id,
        "kind": kind,
        "text": text,
        "reply_markup": reply_markup,
        "photo": photo,
        "case_id": case_id,
        "status": PENDING,
        "due_at": due_at or now,
        "attempts": 0,
        "created_at": now,
    }


@prebuilt
def _insert_push(insert_):
    return (
        insert_(Outbox.__table__)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(Outbox.__table__.c.id)
    )


def _claimable(now: datetime):
    return (
        col(Outbox.status) == PENDING,
        col(Outbox.due_at) <= now,
        or_(col(Outbox.lease_until).is_(None), col(Outbox.lease_until) < now),
    )


async def claim_due(
    session: AsyncSession,
    now: datetime,
    *,
    worker: str,
    limit: int = 100,
    lease_seconds: int = 60,
    skip_chats: Collection[int] = (),
    webhooks: bool = False,
) -> list[Outbox]:
    """Lease up to `limit` due pending rows to `worker`, oldest due first, and COMMIT.

    The commit makes the lease visible at once, so other workers skip these rows until the
    lease runs out (a worker that dies mid-batch leaves its rows to be picked up again).
    The rows come back detached, with every column loaded. Rows for `skip_chats` (chats
    the caller cannot send to yet) are left for later. `webhooks` claims the callback rows
    (WEBHOOK_CHAT) instead of the Telegram ones.
    """
    due = (
        select(Outbox.id)
        .where(*_claimable(now))
        .where(
            col(Outbox.chat_id) == WEBHOOK_CHAT if webhooks else col(Outbox.chat_id) != WEBHOOK_CHAT
        )
        .order_by(col(Outbox.due_at), col(Outbox.id))
    )
    if skip_chats:
        due = due.where(col(Outbox.chat_id).not_in(sorted(skip_chats)))
    due = due.limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    stmt = (
        update(Outbox)
        .where(col(Outbox.id).in_(due.scalar_subquery()), *_claimable(now))
        .values(lease_owner=worker[:64], lease_until=now + timedelta(seconds=lease_seconds))
        .returning(Outbox)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    rows = list((await session.exec(stmt)).scalars().all())
    for row in rows:
        session.expunge(row)
    await session.commit()
    return sorted(rows, key=lambda r: (r.due_at, r.id))


async def _finish(session: AsyncSession, outbox_id: int, **values) -> bool:
    result = await session.exec(
        update(Outbox)
        .where(col(Outbox.id) == outbox_id, col(Outbox.status) == PENDING)
        .values(lease_owner=None, lease_until=None, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def mark_sent(
    session: AsyncSession, outbox_id: int, *, message_id: int | None, now: datetime
) -> None:
    """The push went out: never send it again."""
    await _finish(
        session,
        outbox_id,
        status=SENT,
        sent_at=now,
        sent_message_id=message_id,
        attempts=col(Outbox.attempts) + 1,
    )


async def mark_sent_by_key(
    session: AsyncSession, key: str, *, message_id: int | None, now: datetime
) -> bool:
    """A queued push that went out directly (a reply, queued only in case it fails): never
    send it again. False if the sender has it already (claimed, or sent)."""
    result = await session.exec(
        update(Outbox)
        .where(
            col(Outbox.key) == key, col(Outbox.status) == PENDING, col(Outbox.lease_owner).is_(None)
        )
        .values(
            status=SENT, sent_at=now, sent_message_id=message_id, attempts=col(Outbox.attempts) + 1
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


async def mark_retry(
    session: AsyncSession,
    outbox_id: int,
    *,
    error: str,
    retry_at: datetime,
    now: datetime,
    max_attempts: int,
) -> None:
    """A failed try: due again at retry_at, or "failed" for good once max_attempts are used."""
    attempts = col(Outbox.attempts) + 1
    await _finish(
        session,
        outbox_id,
        attempts=attempts,
        last_error=(error or "")[:_ERROR_MAX],
        due_at=retry_at,
        status=sql_case((attempts >= max_attempts, FAILED), else_=PENDING),
    )


async def mark_dropped(
    session: AsyncSession, outbox_id: int, *, reason: str, now: datetime
) -> None:
    """Never deliverable (e.g. the user blocked the bot): stop trying."""
    await _finish(session, outbox_id, status=DROPPED, last_error=(reason or "")[:_ERROR_MAX])


async def pending_count(session: AsyncSession) -> int:
    result = await session.exec(
        select(func.count()).select_from(Outbox).where(col(Outbox.status) == PENDING)
    )
    return result.one()


async def get_outbox(session: AsyncSession, outbox_id: int) -> Outbox | None:
    return await session.get(Outbox, outbox_id, populate_existing=True)
