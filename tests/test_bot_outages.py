"""A database that stays locked for seconds (issue #15, "also"): a 确认提交 pressed meanwhile
gets "稍后再试" and loses nothing — the draft stays, no case is half-written — and once the
lock is gone the bot recovers by itself: the next press stores the case and the reference
arrives."""

from __future__ import annotations

import asyncio
import sqlite3

from bot import texts
from models.sqlite_inline import BUSY_TIMEOUT_S
from tests.test_bot_kit import RESIDENT, to_triage

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model

WATER_TEXT = "小区停水两天了还没来水，自来水管道一直没人来修"


async def test_a_press_while_the_database_is_locked_is_told_to_retry_and_loses_nothing(
        make_bot, tmp_path):
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
