"""The outbox sender against the Bot API emulator (real HTTP through python-telegram-bot):
flood-limit planning, RetryAfter, 5xx and timeouts retried without loss, blocked users,
a crash in the middle of a batch, and two workers on one database (SQLite file and PostgreSQL).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlmodel import select

from bot.delivery import FloodLimiter, deliver_due
from bot.services import Services
from models import cases, deadlines, outbox
from models.engine import make_engine, session_scope
from models.tables import DISPATCHED, Outbox, Reporter
from tests.botapi import app_builder

NOW = datetime(2026, 11, 23, 2, 0)
FIRST_USER = 50001
sqlite_only = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def fast_settings(settings, **delivery):
    """No real waiting in tests: high send rate, short timeouts, unless a test asks otherwise."""
    values = replace(
        settings.delivery,
        **{
            "global_per_second": 500,
            "per_chat_per_second": 500,
            "send_timeout_seconds": 0.5,
            **delivery,
        },
    )
    return replace(settings, delivery=values)


async def make_app(emulator, settings, engine):
    """A bare Application (no handlers) whose bot talks to the emulator: the sender only."""
    app = app_builder(emulator).build()
    app.bot_data["services"] = Services(
        settings=settings,
        engine=engine,
        rules=deadlines.Rules.from_settings(settings),
        suggester=None,
        clock=lambda: NOW,
    )
    await app.initialize()
    return app


def people(emulator, count: int) -> list[int]:
    ids = list(range(FIRST_USER, FIRST_USER + count))
    for uid in ids:
        emulator.add_user(uid, f"居民{uid}")
    return ids


async def queue(engine, chat_ids: list[int], *, prefix: str = "msg", **kw) -> list[str]:
    """One push per chat id (in order); returns their texts."""
    texts = []
    async with session_scope(engine) as session:
        for i, chat in enumerate(chat_ids):
            text = f"{prefix} {i} → {chat}"
            await outbox.enqueue(
                session,
                key=f"test:{prefix}:{i}",
                chat_id=chat,
                text=text,
                kind="test",
                now=NOW,
                **kw,
            )
            texts.append(text)
    return texts


async def all_rows(engine) -> list[Outbox]:
    async with session_scope(engine) as session:
        return list((await session.exec(select(Outbox).order_by(Outbox.id))).all())


def sent_texts(emulator) -> Counter:
    """Send requests the emulator received, by text (failed ones included)."""
    return Counter(
        call.params.get("text") or call.params.get("caption")
        for call in emulator.calls
        if call.method in ("sendMessage", "sendPhoto")
    )


def delivered(emulator, chats: list[int]) -> Counter:
    """Messages that reached the chats, by text."""
    return Counter(m.content for chat in chats for m in emulator.messages(chat))


# ---------------------------------------------------------------- planning (no I/O)


def test_plan_spaces_sends_evenly_and_per_chat():
    clock = FakeMonotonic()
    limiter = FloodLimiter(per_second=30, per_chat_per_second=1, group_per_minute=20, clock=clock)
    plan = limiter.plan([1, 2, 3, 1, 1, 1])
    slots = [round(at - clock.t, 4) for _, at in plan]
    assert [go for go, _ in plan] == [True, True, True, True, True, False]
    # Three chats in a row at 1/30 s; chat 1 again only a second after its previous send.
    assert slots[:3] == [0.0, round(1 / 30, 4), round(2 / 30, 4)]
    assert slots[3:5] == [1.0, 2.0]
    assert slots[5] == 3.0  # beyond the 2 s horizon: back to the outbox, due then
    # The next plan continues the same schedule: nothing is sent early.
    clock.t += 0.5
    assert limiter.plan([4]) == [(True, pytest.approx(1002.0 + 1 / 30))]
    assert limiter.plan([1]) == [(False, 1003.0)]  # chat 1: a second after its last send


def test_plan_keeps_a_group_under_20_a_minute_without_holding_up_others():
    clock = FakeMonotonic()
    limiter = FloodLimiter(per_second=30, per_chat_per_second=1, group_per_minute=20, clock=clock)
    group = -100123
    plan = limiter.plan([group] * 22 + [7], horizon=120)
    times = [at - clock.t for _, at in plan]
    assert times[:20] == [float(i) for i in range(20)]
    assert times[20] == 60.0 and times[21] == 61.0  # the 21st waits for the minute to pass
    assert times[22] < 1.0  # a private chat is not stuck behind the busy group


def test_a_group_with_its_minute_used_up_is_busy_until_it_may_send_again():
    clock = FakeMonotonic()
    limiter = FloodLimiter(per_second=30, per_chat_per_second=1, group_per_minute=20, clock=clock)
    group, other_group, person = -100123, -100456, 7
    limiter.plan([group] * 20 + [other_group, person], horizon=120)
    clock.t += 20  # all 20 sends of the group are done; the next may go at t+60
    assert limiter.busy_chats() == {group}  # the other group and the person may send
    clock.t += 38.5  # within the 2 s horizon of the minute passing
    assert limiter.busy_chats() == set()


# ---------------------------------------------------------------- one pass


@sqlite_only
async def test_sends_text_buttons_and_photo_once(emulator, engine, settings):
    [uid] = people(emulator, 1)
    app = await make_app(emulator, fast_settings(settings), engine)
    markup = {"inline_keyboard": [[{"text": "😊 满意", "callback_data": "rate:1:3:satisfied"}]]}
    photo = emulator.send_photo(uid)["message"]["photo"][-1]["file_id"]
    [text] = await queue(engine, [uid], reply_markup=markup)
    [caption] = await queue(engine, [uid], prefix="photo", photo=photo)
    try:
        assert await deliver_due(app, NOW) == 2
        assert await deliver_due(app, NOW + timedelta(seconds=2)) == 0
    finally:
        await app.shutdown()
    messages = emulator.messages(uid)
    assert [m.content for m in messages] == [text, caption]
    assert messages[0].buttons == [("😊 满意", "rate:1:3:satisfied")]
    assert messages[1].photo == photo
    first, second = await all_rows(engine)
    assert (first.status, first.sent_message_id) == ("sent", messages[0].message_id)
    assert second.status == "sent" and sent_texts(emulator) == Counter([text, caption])


@sqlite_only
async def test_a_row_put_back_for_the_flood_limit_is_not_overtaken(emulator, engine, settings):
    """A person's pushes arrive in the order they were queued, though the per-chat limit puts
    some back for a later pass and a newer one is queued meanwhile (a 回访 must not arrive
    before the 办结 notice it follows)."""
    [uid] = people(emulator, 1)
    app = await make_app(emulator, fast_settings(settings, per_chat_per_second=10), engine)
    early = await queue(engine, [uid] * 24, prefix="early")
    try:
        first_pass = await deliver_due(app, NOW)  # 2 s of sends; the rest put back
        assert 0 < first_pass < len(early)
        late = await queue(engine, [uid], prefix="late")
        assert await deliver_due(app, NOW) == 0  # the late one waits for those put back
        assert await deliver_due(app, NOW + timedelta(seconds=10)) == len(early) + 1 - first_pass
    finally:
        await app.shutdown()
    assert [m.content for m in emulator.messages(uid)] == early + late


@sqlite_only
async def test_retry_after_reschedules_that_row_and_others_go_on(emulator, engine, settings):
    a, b = people(emulator, 2)
    app = await make_app(emulator, fast_settings(settings), engine)
    text_a, text_b = await queue(engine, [a, b])
    emulator.fail_next("sendMessage", "429", retry_after=7)
    try:
        assert await deliver_due(app, NOW) == 1  # b went; a was told to wait 7 s
        row_a = (await all_rows(engine))[0]
        assert row_a.status == "pending" and row_a.attempts == 0
        assert NOW + timedelta(seconds=7) <= row_a.due_at < NOW + timedelta(seconds=8)
        assert "retry" in row_a.last_error.lower()
        assert await deliver_due(app, NOW + timedelta(seconds=3)) == 0
        assert await deliver_due(app, NOW + timedelta(seconds=8)) == 1
    finally:
        await app.shutdown()
    assert delivered(emulator, [a, b]) == Counter({text_a: 1, text_b: 1})
    assert sent_texts(emulator)[text_a] == 2  # asked twice, delivered once


@sqlite_only
async def test_500_502_and_timeouts_are_retried_with_backoff_and_nothing_is_lost(
    emulator, engine, settings
):
    [uid] = people(emulator, 1)
    app = await make_app(emulator, fast_settings(settings), engine)
    [text] = await queue(engine, [uid])
    emulator.fail_next("sendMessage", "500")
    emulator.fail_next("sendMessage", "502")
    emulator.fail_next("sendMessage", "timeout", hold=1.5)  # longer than the 0.5 s timeout
    now = NOW
    try:
        for attempts, backoff in ((1, 5), (2, 15), (3, 60)):
            assert await deliver_due(app, now) == 0
            row = (await all_rows(engine))[0]
            assert row.status == "pending" and row.attempts == attempts
            assert row.due_at >= now + timedelta(seconds=backoff)
            assert await deliver_due(app, row.due_at - timedelta(seconds=1)) == 0
            now = row.due_at
        assert await deliver_due(app, now) == 1
    finally:
        await app.shutdown()
    assert delivered(emulator, [uid]) == Counter({text: 1})
    assert sent_texts(emulator)[text] == 4  # three failures, then delivered
    assert (await all_rows(engine))[0].status == "sent"


@sqlite_only
async def test_gives_up_after_max_attempts(emulator, engine, settings):
    [uid] = people(emulator, 1)
    app = await make_app(emulator, fast_settings(settings, max_attempts=2), engine)
    await queue(engine, [uid])
    emulator.fail_next("sendMessage", "500", count=2)
    try:
        await deliver_due(app, NOW)
        await deliver_due(app, NOW + timedelta(hours=1))
        assert await deliver_due(app, NOW + timedelta(hours=2)) == 0
    finally:
        await app.shutdown()
    row = (await all_rows(engine))[0]
    assert row.status == "failed" and row.attempts == 2
    assert "Internal Server Error" in row.last_error


@sqlite_only
async def test_timeout_after_telegram_processed_is_the_documented_duplicate(
    emulator, engine, settings
):
    """The one at-least-once window: Telegram accepted the message but the answer was lost.
    The row cannot know, so it is sent again after the back-off."""
    [uid] = people(emulator, 1)
    app = await make_app(emulator, fast_settings(settings), engine)
    [text] = await queue(engine, [uid])
    emulator.fail_next("sendMessage", "timeout", hold=1.5, processed=True)
    try:
        assert await deliver_due(app, NOW) == 0
        assert await deliver_due(app, NOW + timedelta(seconds=6)) == 1
    finally:
        await app.shutdown()
    assert delivered(emulator, [uid])[text] == 2


async def test_blocked_user_is_marked_unreachable_and_skipped(seeded, emulator, settings):
    uid = people(emulator, 1)[0]
    case = await seeded.case_in(DISPATCHED, NOW, reporter=uid)
    app = await make_app(emulator, fast_settings(settings), seeded.engine)
    emulator.block_user(uid)
    await queue(seeded.engine, [uid], prefix="first")
    try:
        assert await deliver_due(app, NOW) == 0
        async with session_scope(seeded.engine) as session:
            reporter = (
                await session.exec(select(Reporter).where(Reporter.telegram_id == uid))
            ).one()
            assert reporter.reachable is False
            assert (await cases.get_case(session, case.id)).status == DISPATCHED  # kept
        calls = emulator.call_count("sendMessage")
        await queue(seeded.engine, [uid], prefix="second")
        assert await deliver_due(app, NOW + timedelta(seconds=5)) == 0
        assert emulator.call_count("sendMessage") == calls  # not even tried
    finally:
        await app.shutdown()
    assert [r.status for r in await all_rows(seeded.engine)] == ["dropped", "dropped"]
    assert "blocked" in (await all_rows(seeded.engine))[0].last_error


@sqlite_only
async def test_restart_in_the_middle_of_a_batch_sends_each_push_once(emulator, engine, settings):
    """Kill the sender after 4 of 10 pushes; a new process sends the other 6 once its dead
    predecessor's lease runs out, and nothing twice."""
    chats = people(emulator, 10)
    settings = fast_settings(settings, global_per_second=5)  # 200 ms apart: a clean cut
    texts = await queue(engine, chats)
    first = await make_app(emulator, settings, engine)
    crash = asyncio.create_task(deliver_due(first, NOW))
    try:
        while sum(r.status == "sent" for r in await all_rows(engine)) < 4:
            await asyncio.sleep(0.01)
        crash.cancel()  # the process dies here
        with pytest.raises(asyncio.CancelledError):
            await crash
    finally:
        await first.shutdown()
    sent_before = sum(sent_texts(emulator).values())
    assert 4 <= sent_before < 10

    second = await make_app(emulator, settings, engine)  # the restarted process
    try:
        assert await deliver_due(second, NOW + timedelta(seconds=30)) == 0  # leases still held
        assert await deliver_due(second, NOW + timedelta(seconds=61)) == 10 - sent_before
    finally:
        await second.shutdown()
    assert sent_texts(emulator) == Counter(texts)  # every push exactly once
    assert {r.status for r in await all_rows(engine)} == {"sent"}


async def test_two_workers_never_send_a_push_twice(seeded, emulator, settings):
    """Two engines, two Bot objects, one emulator (on PostgreSQL: SKIP LOCKED)."""
    chats = people(emulator, 40)
    settings = fast_settings(settings)
    texts = await queue(seeded.engine, chats + chats[:20], prefix="w")
    url = seeded.engine.url.render_as_string(hide_password=False)
    engines = [make_engine(url), make_engine(url)]
    apps = [await make_app(emulator, settings, e) for e in engines]
    assert apps[0].bot is not apps[1].bot
    try:
        for step in range(4):
            now = NOW + timedelta(seconds=2 * step)
            await asyncio.gather(*(deliver_due(app, now) for app in apps))
    finally:
        for app in apps:
            await app.shutdown()
        for e in engines:
            await e.dispose()
    assert sent_texts(emulator) == Counter(texts)
    async with session_scope(seeded.engine) as session:
        assert await outbox.pending_count(session) == 0
    assert {r.status for r in await all_rows(seeded.engine)} == {"sent"}


async def test_two_follow_up_workers_send_each_alert_once(seeded, emulator, settings):
    """Two worker Applications (bot.app.run_worker: follow-up job + sender, no update
    handling), each with its own engine and Bot, against one database and one emulator."""
    from bot.app import run_worker
    from tests.botapi import TEST_TOKEN

    water, leader = -1000000000101, -1000000000002
    case = await seeded.case_in(DISPATCHED, NOW)
    now = case.sign_by + timedelta(hours=30)  # red and due for 督办
    settings = replace(
        fast_settings(settings), followup=replace(settings.followup, poll_seconds=0.2)
    )
    url = seeded.engine.url.render_as_string(hide_password=False)
    engines = [make_engine(url), make_engine(url)]
    workers = [
        asyncio.create_task(
            run_worker(
                settings,
                token=TEST_TOKEN,
                base_url=emulator.base_url,
                services=Services(
                    settings=settings,
                    engine=e,
                    rules=seeded.rules,
                    suggester=None,
                    clock=lambda: now,
                ),
            )
        )
        for e in engines
    ]
    try:
        await emulator.wait_for_message(
            water, lambda m: "督办通知" in m.content, timeout=10, after=0
        )
        await emulator.wait_for_message(
            leader, lambda m: case.ref in m.content, timeout=10, after=0
        )
        await asyncio.sleep(1.0)  # several more passes of both workers
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for e in engines:
            await e.dispose()
    in_water = Counter(m.content.split("\n")[0].split(" ")[0] for m in emulator.messages(water))
    assert in_water == Counter({"🔴": 1, "⚠️": 1})  # one alarm, one 督办 notice
    in_leader = Counter(m.content.split("\n")[0].split("（")[0] for m in emulator.messages(leader))
    assert in_leader == Counter({f"⚠️ 督办 {case.ref}": 1, "📋 每日超时案件通报": 1})
