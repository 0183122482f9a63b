"""The bot end to end on each store engine: SQLite, and PostgreSQL when TEST_DATABASE_URL is
set (the same conversation, routing, duplicate guard and restart as on SQLite)."""

from __future__ import annotations

import asyncio

import pytest

from models.tables import MERGED, NOT_ACCEPTED, RESOLVED, SIGNED
from tests.test_bot_kit import RESIDENT, TRIAGE_STAFF, WATER_STAFF, auto_dispatch

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model

WATER_TEXT = "小区停水两天了还没来水，自来水管道一直没人来修"


@pytest.fixture
def bot_engine(engine):
    """The parametrized store engine of tests/dbfixtures.py (sqlite, postgresql)."""
    return engine


async def test_report_sign_resolve_restart_and_duplicates(make_bot):
    bot = await make_bot(auto_dispatch())
    await bot.say(RESIDENT, "/report")
    text_update = bot.emu.send_text(RESIDENT, WATER_TEXT)
    await bot.reply(RESIDENT)
    await bot.restart()
    bot.emu.redeliver(text_update["update_id"])  # seen before the restart: ignored
    await asyncio.sleep(0.3)
    await bot.say(RESIDENT, "/skip")
    summary = await bot.say(RESIDENT, "/skip")
    assert WATER_TEXT in summary.content
    bot.emu.press(RESIDENT, summary, "确认提交")
    done = await bot.emu.wait_for_message(RESIDENT, lambda m: "已受理" in m.content)
    ref = done.content.split("编号 ", 1)[1].split("，", 1)[0]
    await bot.settle()

    group = bot.department_chat("water")
    post = await bot.group_post(group, ref)
    assert (await bot.press(WATER_STAFF, post, "签收"))["text"] == "操作成功"
    assert (await bot.case(ref)).status == SIGNED
    await bot.press(WATER_STAFF, bot.emu.message(group, post.message_id), "办结")
    await bot.reply(WATER_STAFF, group)
    await bot.say(WATER_STAFF, "已抢修完毕，恢复供水", chat=group)
    assert "已办结" in (await bot.say(WATER_STAFF, "/skip", chat=group)).content
    assert (await bot.case(ref)).status == RESOLVED
    await bot.emu.wait_for_message(RESIDENT, lambda m: "已办结" in m.content)
    assert len(await bot.cases()) == 1


async def test_triage_refuses_one_case_and_merges_a_duplicate(make_bot):
    bot = await make_bot(auto_dispatch())
    first = await bot.report(RESIDENT, WATER_TEXT)
    again = await bot.report(RESIDENT, WATER_TEXT + "，今天还是没水")
    chat = bot.triage_chat
    post = await bot.group_post(chat, again)
    await bot.press(TRIAGE_STAFF, post, "不予受理")
    await bot.press(TRIAGE_STAFF, bot.emu.message(chat, post.message_id), "重复反映")
    await bot.reply(TRIAGE_STAFF, chat)
    await bot.restart()  # the question waits in the store
    assert "合并至" in (await bot.say(TRIAGE_STAFF, first, chat=chat)).content
    assert (await bot.case(again)).status == MERGED

    await bot.settle()
    post = await bot.group_post(chat, first)
    await bot.press(TRIAGE_STAFF, post, "不予受理")
    await bot.press(TRIAGE_STAFF, bot.emu.message(chat, post.message_id), "非政府职能事项")
    assert (await bot.case(first)).status == NOT_ACCEPTED
    await bot.emu.wait_for_message(RESIDENT, lambda m: "原因：非政府职能事项" in m.content)
