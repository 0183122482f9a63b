"""The 受理 confirmation always arrives (issue #15): "已受理，编号 WC-…" is queued in the outbox
with the case, so a Bot API that answers sendMessage with 500 or 429 only delays it, and a
second press of 确认提交 answers with the existing reference."""

from __future__ import annotations

import pytest

from bot import texts
from tests.test_bot_kit import RESIDENT, BotEnv, to_triage

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model
WATER_TEXT = "小区停水两天了还没来水，自来水管道一直没人来修"


async def summary_of(bot: BotEnv):
    await bot.say(RESIDENT, "/report")
    await bot.say(RESIDENT, WATER_TEXT)
    await bot.say(RESIDENT, "/skip")
    return await bot.say(RESIDENT, "/skip")


def confirmations(bot: BotEnv) -> list[str]:
    return [m.content for m in bot.emu.messages(RESIDENT) if m.content.startswith("已受理，编号")]


@pytest.mark.parametrize("fault", ["500", "429"])
async def test_the_reference_arrives_although_the_bot_api_fails_the_first_send(make_bot, fault):
    bot = await make_bot(to_triage())
    summary = await summary_of(bot)
    bot.emu.fail_next("sendMessage", fault, retry_after=1)
    await bot.press(RESIDENT, summary, texts.BTN_SUBMIT)
    await bot.settle()  # moves the standing clock on to the retry
    [case] = await bot.cases()
    assert confirmations(bot) == [texts.SUBMITTED.format(ref=case.ref)]
    assert bot.emu.stats["faults"] == 1
    # The main menu comes back with it, as it did with a direct reply.
    [confirmation] = [m for m in bot.emu.messages(RESIDENT) if m.content in confirmations(bot)]
    assert confirmation.reply_keyboard


async def test_a_second_press_on_a_submitted_draft_answers_with_its_reference(make_bot):
    bot = await make_bot(to_triage())
    summary = await summary_of(bot)
    submit = summary.button_data(texts.BTN_SUBMIT)  # the button goes once it is pressed
    await bot.press_data(RESIDENT, summary, submit)
    await bot.settle()
    [case] = await bot.cases()
    answer = await bot.press_data(RESIDENT, summary, submit)
    assert answer["text"] == texts.ALREADY_SUBMITTED["resident"].format(ref=case.ref)
    assert answer["show_alert"]
    assert len(await bot.cases()) == 1 and len(confirmations(bot)) == 1
