"""PostgreSQL restarted under the running bot (issue #15, "also"): while the server is down a
resident is told "稍后再试" and nothing is half-written; once it is back the bot recovers by
itself — the same button stores the case, the next report too, the outbox drains, nothing is
stored or sent twice. And a restart while another worker holds leased outbox rows loses none:
the lease runs out and the bot's sender sends each row once.

The server is a throwaway cluster of the test's own (tests/pgcluster.py): the shared one on
127.0.0.1:5432 serves everyone's tests and is never stopped.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bot import texts
from bot.common import kick_delivery
from models import outbox
from models.engine import create_all, make_engine, session_scope
from tests.pgcluster import PgCluster, unavailable
from tests.test_bot_kit import ADMIN, HOUSING_STAFF, RESIDENT, WAIT, to_triage

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model

WATER_TEXT = "小区停水两天了还没来水，自来水管道一直没人来修"
LEASE_KEY = "test:lease:"
ROAD_TEXT = "福临巷路口的井盖破损了，晚上有人绊倒"

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")


@pytest.fixture
def cluster():
    """A running private cluster, removed after the test."""
    pg = PgCluster()
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.remove()


@pytest.fixture
async def bot_engine(cluster):
    """The bot's store on the private cluster, with the deployed engine settings."""
    engine = make_engine(cluster.url)
    await create_all(engine)
    yield engine
    await engine.dispose()


async def summary_of(bot, user: int, text: str):
    await bot.say(user, "/report")
    await bot.say(user, text)
    await bot.say(user, "/skip")
    return await bot.say(user, "/skip")


def confirmations(bot, user: int) -> list[str]:
    return [m.content for m in bot.emu.messages(user) if "已受理" in m.content]


async def test_a_postgresql_restart_is_told_to_retry_and_the_bot_recovers_by_itself(
    make_bot, cluster
):
    bot = await make_bot(to_triage())
    summary = await summary_of(bot, RESIDENT, WATER_TEXT)
    submit = summary.button_data(texts.BTN_SUBMIT)
    await asyncio.sleep(0.5)  # the conversation step is stored

    await asyncio.to_thread(cluster.stop)
    try:
        # A press and a message while the server is down: each is told to retry, politely.
        press = bot.emu.press_button(RESIDENT, summary, submit)
        answer = await bot.emu.wait_for_callback_answer(press, timeout=WAIT * 3)
        assert answer["text"] == texts.STORE_UNAVAILABLE and answer["show_alert"]
        count = len(bot.emu.messages(ADMIN))
        bot.emu.send_command(ADMIN, "/start")
        sorry = await bot.emu.wait_for_message(ADMIN, timeout=WAIT * 3, after=count)
        assert sorry.content == texts.STORE_UNAVAILABLE  # 稍后再试, the step not done
        await asyncio.sleep(1)
        # An update whose duplicate check failed reaches no handler: one apology, no more.
        assert len(bot.emu.messages(ADMIN)) == count + 1
        await asyncio.sleep(2 * bot.settings.followup.poll_seconds / 5)  # duties fail meanwhile
    finally:
        await asyncio.to_thread(cluster.start)

    # Nothing was half-written while it was down.
    assert await bot.cases() == [] and await bot.outbox() == []

    # Back: the same button works without restarting the bot, and the reference arrives once.
    await bot.press_data(RESIDENT, summary, submit)
    await bot.settle()
    [case] = await bot.cases()
    assert confirmations(bot, RESIDENT) == [texts.SUBMITTED.format(ref=case.ref)]

    # The next report from someone else is stored, and the outbox drains.
    ref = await bot.report(HOUSING_STAFF, ROAD_TEXT)
    assert [c.ref for c in await bot.cases()] == [case.ref, ref]
    await bot.settle()
    assert {row.status for row in await bot.outbox()} == {"sent"}
    assert confirmations(bot, RESIDENT) == [texts.SUBMITTED.format(ref=case.ref)]
    assert confirmations(bot, HOUSING_STAFF) == [texts.SUBMITTED.format(ref=ref)]
    keys = [row.key for row in await bot.outbox()]
    assert len(keys) == len(set(keys))


async def test_a_quick_restart_between_two_steps_goes_unnoticed(make_bot, cluster):
    """The pool's connections died with the server: each is checked before use and replaced,
    so the next step of the conversation works at once, with no apology."""
    bot = await make_bot(to_triage())
    await bot.say(RESIDENT, "/report")
    await bot.say(RESIDENT, WATER_TEXT)
    await asyncio.sleep(0.5)  # the conversation step is stored
    await asyncio.to_thread(cluster.stop)
    await asyncio.to_thread(cluster.start)
    assert (await bot.say(RESIDENT, "/skip")).content == texts.ASK_LOCATION
    summary = await bot.say(RESIDENT, "/skip")
    await bot.press(RESIDENT, summary, "确认提交")
    await bot.settle()
    [case] = await bot.cases()
    assert confirmations(bot, RESIDENT) == [texts.SUBMITTED.format(ref=case.ref)]
    assert not [m for m in bot.emu.messages(RESIDENT) if "稍后再试" in m.content]


async def test_a_restart_right_after_the_reference_went_out_sends_it_once(make_bot, cluster):
    """The reply with the reference is on its way when the server goes down, so the queued
    copy cannot be marked sent at once: it is marked once the server is back, and the
    resident gets the reference once (not again from the outbox GRACE later)."""
    bot = await make_bot(to_triage())
    summary = await summary_of(bot, RESIDENT, WATER_TEXT)
    bot.emu.fail_next("sendMessage", "late", hold=3)  # the reply arrives, its answer is slow
    press = bot.emu.press(RESIDENT, summary, "确认提交")
    await bot.emu.wait_for_message(RESIDENT, lambda m: "已受理" in m.content, timeout=WAIT)
    await asyncio.to_thread(cluster.stop)  # before the bot hears that the reply went out
    try:
        await asyncio.sleep(4)
    finally:
        await asyncio.to_thread(cluster.start)
    answer = await bot.emu.wait_for_callback_answer(press, timeout=WAIT * 3)
    assert "稍后再试" not in (answer.get("text") or "")  # the report was stored: no apology
    await asyncio.sleep(1)
    bot.clock.advance(seconds=60)  # long past the queued copy's grace
    kick_delivery(bot.app)
    await bot.settle()
    [case] = await bot.cases()
    assert confirmations(bot, RESIDENT) == [texts.SUBMITTED.format(ref=case.ref)]
    [copy] = [row for row in await bot.outbox() if row.key == f"submitted:{case.id}"]
    assert copy.status == "sent"


async def test_a_restart_while_the_sender_waits_for_telegram_sends_each_row_once(make_bot, cluster):
    """The bot's sender leased rows and sent them; the server went down before it could mark
    them sent: it marks them once the server is back, within the lease, so nobody sends them
    again after the lease."""
    bot = await make_bot(to_triage())
    await bot.settle()
    chats = [RESIDENT, ADMIN, HOUSING_STAFF]
    await queue_lease_rows(bot, chats)
    bot.emu.fail_next("sendMessage", "late", count=len(chats), hold=3)
    kick_delivery(bot.app)
    for chat in chats:
        await bot.emu.wait_for_message(chat, lambda m: "租约测试" in m.content, timeout=WAIT)
    await asyncio.to_thread(cluster.stop)  # before the sender hears that they went out
    try:
        await asyncio.sleep(4)
    finally:
        await asyncio.to_thread(cluster.start)
    await asyncio.sleep(2)
    bot.clock.advance(seconds=bot.settings.delivery.lease_seconds + 1)
    kick_delivery(bot.app)
    await bot.settle()
    await asyncio.sleep(1)
    assert_each_sent_once(bot, chats)
    assert {row.status for row in await leased_rows(bot)} == {"sent"}


async def queue_lease_rows(bot, chats: list[int]) -> None:
    async with session_scope(bot.services.engine) as session:
        for i, chat in enumerate(chats):
            await outbox.enqueue(
                session,
                key=f"{LEASE_KEY}{i}",
                chat_id=chat,
                text=f"租约测试消息 {i}",
                kind="notice",
                now=bot.clock(),
            )


def assert_each_sent_once(bot, chats: list[int]) -> None:
    for i, chat in enumerate(chats):
        got = [m.content for m in bot.emu.messages(chat) if "租约测试" in m.content]
        assert got == [f"租约测试消息 {i}"]


async def leased_rows(bot):
    return [row for row in await bot.outbox() if row.key.startswith(LEASE_KEY)]


async def test_a_restart_while_a_worker_holds_leased_rows_loses_none_and_sends_each_once(
    make_bot, cluster
):
    bot = await make_bot(to_triage())
    await bot.stop()  # the bot's sender must not take the rows first
    now = bot.clock()
    lease = bot.settings.delivery.lease_seconds
    chats = [RESIDENT, ADMIN, HOUSING_STAFF]
    await queue_lease_rows(bot, chats)
    async with session_scope(bot.services.engine) as session:  # another worker leases them…
        leased = await outbox.claim_due(session, now, worker="worker-b", lease_seconds=lease)
    assert len(leased) == len(chats)

    # …and dies with PostgreSQL, which comes back while the rows are still leased.
    await asyncio.to_thread(cluster.stop)
    await asyncio.to_thread(cluster.start)

    await bot.start()
    kick_delivery(bot.app)
    await asyncio.sleep(1.5)
    assert [m for c in chats for m in bot.emu.messages(c) if "租约测试" in m.content] == []
    assert {row.status for row in await leased_rows(bot)} == {"pending"}  # the lease holds

    bot.clock.advance(seconds=lease + 1)  # the lease runs out: the bot's sender takes them
    kick_delivery(bot.app)
    await bot.settle()
    assert_each_sent_once(bot, chats)
    rows = await leased_rows(bot)
    assert len(rows) == len(chats) and {row.status for row in rows} == {"sent"}
    assert all(row.lease_owner != "worker-b" for row in rows)
    assert now + timedelta(seconds=lease) <= bot.clock()
