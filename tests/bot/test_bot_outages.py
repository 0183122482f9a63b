"""A database that stays locked for seconds (issue #15, "also"): a 确认提交 pressed meanwhile
gets "稍后再试" and loses nothing — the draft stays, no case is half-written — and once the
lock is gone the bot recovers by itself: the next press stores the case and the reference
arrives."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from dataclasses import replace

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from telegram.ext import Application

from bot import texts
from bot.app import build_application
from bot.run import start_webhook
from models.engine.inline import BUSY_TIMEOUT_S
from models.tables import ProcessedUpdate
from tests.botapi import TEST_TOKEN
from tests.startup_kit import free_port
from tests.test_bot_kit import ADMIN, RESIDENT, to_triage

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model

WATER_TEXT = "小区停水两天了还没来水，自来水管道一直没人来修"


async def test_a_press_while_the_database_is_locked_is_told_to_retry_and_loses_nothing(
    make_bot, tmp_path
):
    bot = await make_bot(to_triage())
    await bot.say(RESIDENT, "/report")
    await bot.say(RESIDENT, WATER_TEXT)
    await bot.say(RESIDENT, "/skip")
    summary = await bot.say(RESIDENT, "/skip")
    submit = summary.button_data(texts.BTN_SUBMIT)
    await asyncio.sleep(0.5)  # the conversation step is stored

    other = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the database for seconds
    try:
        press = bot.emu.press_button(RESIDENT, summary, submit)
        answer = await bot.emu.wait_for_callback_answer(press, timeout=BUSY_TIMEOUT_S + 10)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert "稍后再试" in answer["text"] and answer["show_alert"]
    assert await bot.cases() == [] and await bot.outbox() == []

    # The lock is gone: the same button works, and the reference arrives.
    await bot.press_data(RESIDENT, summary, submit)
    await bot.settle()
    [case] = await bot.cases()
    confirmations = [m.content for m in bot.emu.messages(RESIDENT) if "已受理" in m.content]
    assert confirmations == [texts.SUBMITTED.format(ref=case.ref)]


# A report as long as allowed (2000 characters, 3 bytes each): its case row cannot fit in a
# 4 KiB page, so storing it needs new (overflow) pages, which a full disk refuses — a short
# row would fit in a page the database already has and be stored.
LONG_TEXT = (WATER_TEXT * 100)[:2000]


class FullDisk:
    """SQLite's own SQLITE_FULL on demand: while `full`, every connection the engine hands
    out may not grow the database past its current page count (PRAGMA max_page_count is
    per connection, so it is set at each checkout), and a write that needs a new page fails
    with "database or disk is full" as on a full disk."""

    UNLIMITED = 4294967294  # SQLite's largest max_page_count

    def __init__(self, engine: AsyncEngine) -> None:
        self.full = False
        event.listen(engine.sync_engine, "checkout", self._limit)

    def _limit(self, dbapi_conn, _record, _proxy) -> None:
        cur = dbapi_conn.cursor()
        if self.full:
            cur.execute("PRAGMA page_count")
            (pages,) = cur.fetchone()
            cur.execute(f"PRAGMA max_page_count = {pages}")
        else:
            cur.execute(f"PRAGMA max_page_count = {self.UNLIMITED}")
        cur.close()


async def test_a_press_while_the_disk_is_full_is_told_to_retry_and_loses_nothing(
    make_bot, bot_engine, caplog
):
    disk = FullDisk(bot_engine)
    bot = await make_bot(to_triage())
    await bot.say(RESIDENT, "/report")
    await bot.say(RESIDENT, LONG_TEXT)
    await bot.say(RESIDENT, "/skip")
    summary = await bot.say(RESIDENT, "/skip")
    submit = summary.button_data(texts.BTN_SUBMIT)
    await asyncio.sleep(0.5)  # the conversation step is stored

    disk.full = True
    caplog.clear()
    answer = await bot.press_data(RESIDENT, summary, submit)
    disk.full = False
    # Told that the step was not done (as when the store restarts), so the resident presses
    # again; the operator gets one error line naming the full disk, not a traceback.
    assert answer["text"] == texts.STORE_UNAVAILABLE and answer["show_alert"]
    [full] = [r for r in caplog.records if "the store is full" in r.getMessage()]
    assert full.levelname == "ERROR" and "disk is full" in full.getMessage() and not full.exc_info
    assert await bot.cases() == [] and await bot.outbox() == []

    # Space is back: the same button stores the case once, and the reference arrives once.
    await bot.press_data(RESIDENT, summary, submit)
    await bot.settle()
    [case] = await bot.cases()
    confirmations = [m.content for m in bot.emu.messages(RESIDENT) if "已受理" in m.content]
    assert confirmations == [texts.SUBMITTED.format(ref=case.ref)]


async def test_a_webhook_restart_loses_none_of_the_updates_sent_meanwhile(make_bot):
    """Updates Telegram could not POST while the bot restarted are retried by Telegram and
    handled once by the new process; the conversation carries on."""
    bot = await make_bot(to_triage())
    await bot.stop()
    port, secret = free_port(), secrets.token_urlsafe(24)
    url = f"http://127.0.0.1:{port}/tg-hook"
    telegram = replace(
        bot.settings.telegram,
        mode="webhook",
        webhook_url=url,
        webhook_listen="127.0.0.1",
        webhook_port=port,
    )
    bot.settings = replace(bot.settings, telegram=telegram, webhook_secret=secret)

    async def started() -> Application:
        app = build_application(
            bot.settings,
            services=bot.services,
            base_url=bot.emu.base_url,
            base_file_url=bot.emu.base_file_url,
            token=TEST_TOKEN,
        )
        await app.initialize()
        await app.start()
        await start_webhook(app, bot.settings)
        return app

    app = await started()
    try:
        await bot.say(RESIDENT, "/report")
        await bot.say(RESIDENT, WATER_TEXT)
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
        # Down: Telegram keeps these (its POSTs fail, or they wait for the next setWebhook).
        count = len(bot.emu.messages(RESIDENT))
        sent = [bot.emu.send_command(RESIDENT, "/skip"), bot.emu.send_command(ADMIN, "/start")]
        await asyncio.sleep(0.5)
        app = await started()
        asked = await bot.emu.wait_for_message(RESIDENT, timeout=10, after=count)
        assert asked.content == texts.ASK_LOCATION
        await bot.emu.wait_for_message(ADMIN, timeout=10)
        await asyncio.sleep(0.5)
        assert len(bot.emu.messages(ADMIN)) == 1  # each handled once
        async with bot.services.session() as session:
            for update in sent:
                assert await session.get(ProcessedUpdate, update["update_id"]) is not None
    finally:
        if app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()
