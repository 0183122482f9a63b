"""The outbox: idempotent enqueue, leases, and several workers never claiming a row twice."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from models import outbox
from models.engine import make_engine, sessionmaker

NOW = datetime(2026, 11, 24, 2, 0)


async def test_same_key_is_queued_once(session):
    first = await outbox.enqueue(
        session,
        key="case:1:dispatched:1:-100",
        chat_id=-100,
        text="新案件",
        kind="progress",
        now=NOW,
        reply_markup={"inline_keyboard": [[{"text": "签收", "callback_data": "s:1"}]]},
    )
    again = await outbox.enqueue(
        session,
        key="case:1:dispatched:1:-100",
        chat_id=-100,
        text="新案件（重复）",
        kind="progress",
        now=NOW,
    )
    await session.commit()
    assert first is not None and again is None
    first = await outbox.get_outbox(session, first)
    assert first.due_at == NOW and first.reply_markup["inline_keyboard"][0][0]["text"] == "签收"
    assert await outbox.pending_count(session) == 1


async def test_claim_takes_due_rows_oldest_first_and_leases_them(session_factory):
    async with session_factory() as s:
        for i, minutes in enumerate([5, -10, 0, -5]):
            await outbox.enqueue(
                s,
                key=f"k{i}",
                chat_id=i,
                text=f"m{i}",
                kind="reminder",
                now=NOW,
                due_at=NOW + timedelta(minutes=minutes),
            )
        await s.commit()
        claimed = await outbox.claim_due(s, NOW, worker="w1", limit=10, lease_seconds=60)
        assert [r.key for r in claimed] == ["k1", "k3", "k2"]  # k0 is not due yet
        assert all(r.lease_owner == "w1" for r in claimed) and claimed[0].text == "m1"
        # Leased: nobody else gets them until the lease runs out.
        assert await outbox.claim_due(s, NOW + timedelta(seconds=30), worker="w2") == []
        await outbox.mark_sent(s, claimed[0].id, message_id=42, now=NOW)
        await s.commit()
        expired = NOW + timedelta(seconds=61)
        reclaimed = await outbox.claim_due(s, expired, worker="w2")
        assert [r.key for r in reclaimed] == ["k3", "k2"]  # k1 was sent, k0 still not due
        sent = await outbox.get_outbox(s, claimed[0].id)
        assert (sent.status, sent.sent_message_id, sent.sent_at, sent.lease_owner) == (
            "sent",
            42,
            NOW,
            None,
        )


async def test_claim_leaves_rows_of_skipped_chats_for_later(session_factory):
    async with session_factory() as s:
        for i, chat in enumerate([-100, 5, -100, -200]):
            await outbox.enqueue(s, key=f"k{i}", chat_id=chat, text=f"m{i}", kind="triage", now=NOW)
        await s.commit()
        claimed = await outbox.claim_due(s, NOW, worker="w1", skip_chats={-100})
        assert [r.key for r in claimed] == ["k1", "k3"]
        later = await outbox.claim_due(s, NOW, worker="w1")
        assert [r.key for r in later] == ["k0", "k2"]  # not leased by the first claim


async def test_retry_backs_off_then_fails_and_drop_stops_for_good(session_factory):
    async with session_factory() as s:
        row = await outbox.enqueue(s, key="retry", chat_id=1, text="t", kind="progress", now=NOW)
        dropped = await outbox.enqueue(s, key="drop", chat_id=2, text="t", kind="progress", now=NOW)
        await s.commit()
        t = NOW
        for attempt in (1, 2):
            assert [r.id for r in await outbox.claim_due(s, t, worker="w")] == [row] + (
                [dropped] if attempt == 1 else []
            )
            if attempt == 1:
                await outbox.mark_dropped(s, dropped, reason="Forbidden: bot was blocked", now=t)
            await outbox.mark_retry(
                s, row, error="Timed out", retry_at=t + timedelta(seconds=15), now=t, max_attempts=2
            )
            await s.commit()
            assert await outbox.claim_due(s, t + timedelta(seconds=14), worker="w") == []
            t += timedelta(seconds=15)
        failed, gone = await outbox.get_outbox(s, row), await outbox.get_outbox(s, dropped)
        assert (failed.status, failed.attempts, failed.last_error) == ("failed", 2, "Timed out")
        assert (gone.status, gone.last_error) == ("dropped", "Forbidden: bot was blocked")
        assert await outbox.claim_due(s, t + timedelta(days=1), worker="w") == []
        assert await outbox.pending_count(s) == 0


async def test_two_workers_never_claim_the_same_row(engine):
    """Two workers, each with its own engine (own connections), draining one queue at once."""
    async with sessionmaker(engine)() as s:
        for i in range(150):
            await outbox.enqueue(
                s,
                key=f"push:{i}",
                chat_id=i % 17,
                text=f"消息{i}",
                kind="progress",
                now=NOW,
                due_at=NOW - timedelta(seconds=i),
            )
        await s.commit()

    ready, go = [], asyncio.Event()

    async def worker(name: str) -> list[int]:
        own_engine = make_engine(engine.url.render_as_string(hide_password=False))
        got: list[int] = []
        try:
            async with sessionmaker(own_engine)() as s:
                await outbox.pending_count(s)  # connected before the race starts
                await s.commit()
                ready.append(name)
                if len(ready) == 3:
                    go.set()
                await go.wait()
                while batch := await outbox.claim_due(s, NOW, worker=name, limit=7):
                    for row in batch:
                        await asyncio.sleep(0.002)  # sending to Telegram, no lock held
                        await outbox.mark_sent(s, row.id, message_id=row.id, now=NOW)
                        await s.commit()
                    got.extend(row.id for row in batch)
        finally:
            await own_engine.dispose()
        return got

    a, b, c = await asyncio.gather(worker("a"), worker("b"), worker("c"))
    claimed = a + b + c
    assert len(claimed) == len(set(claimed)) == 150
    # Which worker wins each batch is up to the scheduler, so the test checks only that no
    # row was claimed twice and none was left behind (a leased row is skipped: see above).
    async with sessionmaker(engine)() as s:
        assert await outbox.pending_count(s) == 0


async def test_postponing_many_rows_gives_each_its_own_time_and_only_the_lease_holders(
    session_factory,
):
    from models.followup import postpone_pushes

    async with session_factory() as s:
        for i in range(3):
            await outbox.enqueue(s, key=f"p{i}", chat_id=-100, text=f"m{i}", kind="triage", now=NOW)
        await s.commit()
        first, second, third = await outbox.claim_due(s, NOW, worker="w1")
        later = {first.id: NOW + timedelta(seconds=60), second.id: NOW + timedelta(seconds=61)}
        assert await postpone_pushes(s, later, worker="someone else") == 0
        assert await postpone_pushes(s, later, worker="w1") == 2
        await s.commit()
        rows = [await outbox.get_outbox(s, r.id) for r in (first, second, third)]
        assert [r.due_at for r in rows[:2]] == list(later.values())
        assert rows[0].lease_owner is None and rows[2].lease_owner == "w1"


async def test_many_pushes_in_one_statement_skip_keys_queued_before(session):
    await outbox.enqueue(session, key="k-old", chat_id=1, text="先到", kind="progress", now=NOW)
    rows = [
        outbox.push_row(key=k, chat_id=i, text=f"m{i}", kind="triage", now=NOW)
        for i, k in enumerate(["k-old", "k-a", "k-b"])
    ]
    await outbox.enqueue_many(session, rows)
    await session.commit()
    assert await outbox.pending_count(session) == 3
    claimed = await outbox.claim_due(session, NOW, worker="w")
    assert sorted((r.key, r.text) for r in claimed) == [
        ("k-a", "m1"),
        ("k-b", "m2"),
        ("k-old", "先到"),
    ]
