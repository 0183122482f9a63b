"""One flood-control state per chat (issue #15): after Telegram answers 429 retry_after for a
chat, nothing goes to that chat inside the window — not a reply, not the error handler's
apology, not an outbox push. The emulator injects the 429s; its call log has the times."""

from __future__ import annotations

from bot import texts
from bot.common import kick_delivery
from models import outbox
from tests.test_bot_kit import RESIDENT, BotEnv, to_triage

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model

WINDOW = 1  # seconds of each injected 429
EARLY = 0.02  # timer slack


def calls_to(bot: BotEnv, chat_id: int) -> list:
    return [c for c in bot.emu.calls if str(c.params.get("chat_id")) == str(chat_id)]


def inside_a_window(calls: list, failed: int) -> list:
    """Calls made while the window of one of the first `failed` calls (the 429s) was open."""
    windows = [(c.time, c.time + WINDOW - EARLY) for c in calls[:failed]]
    return [c for c in calls[failed:] if any(start < c.time < end for start, end in windows)]


async def queue_push(bot: BotEnv, chat_id: int, text: str) -> None:
    async with bot.services.session() as session:
        await outbox.enqueue_many(
            session,
            [
                outbox.push_row(
                    key=f"test:{text}", chat_id=chat_id, text=text, kind="progress", now=bot.clock()
                )
            ],
        )
    kick_delivery(bot.app)


async def test_a_429_holds_back_replies_and_pushes_to_the_chat(make_bot):
    bot = await make_bot(to_triage())
    bot.emu.fail_next("sendMessage", "429", retry_after=WINDOW)
    bot.emu.send_command(RESIDENT, "/start")
    await bot.emu.wait_until(lambda: bot.emu.stats["faults"] == 1)
    await queue_push(bot, RESIDENT, "进度通知")  # the sender meets the window a reply opened
    bot.emu.send_command(RESIDENT, "/help")
    await bot.emu.wait_until(lambda: len(bot.emu.messages(RESIDENT)) == 3, timeout=10)
    await bot.settle()
    calls = calls_to(bot, RESIDENT)
    assert inside_a_window(calls, failed=1) == []
    shown = [m.content for m in bot.emu.messages(RESIDENT)]
    assert "进度通知" in shown  # late, but sent; the welcome was retried after its window
    assert any(texts.WELCOME.format(district="望城区").splitlines()[0] in m for m in shown)


async def test_the_apology_for_a_reply_that_met_429_twice_waits_for_the_window(make_bot):
    bot = await make_bot(to_triage())
    bot.emu.fail_next("sendMessage", "429", count=2, retry_after=WINDOW)
    bot.emu.send_command(RESIDENT, "/start")
    apology = await bot.emu.wait_for_message(RESIDENT, timeout=10)
    assert apology.content == texts.SORRY_ERROR
    calls = calls_to(bot, RESIDENT)
    assert len(calls) == 3 and inside_a_window(calls, failed=2) == []
