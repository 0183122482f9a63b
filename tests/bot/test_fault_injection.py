"""Effectively-once under crashes (issue #15): the real `whistle run` process, stopped at a
named failpoint (bot/failpoints.py), SIGKILLed there, restarted, and the update redelivered
by the Bot API emulator as Telegram would. The store and what the emulator received must
show every confirmed report once and every reference delivered once.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import texts
from emulator import TelegramEmulator
from tests.botapi import RESIDENT
from tests.test_bot_kit import model_path  # noqa: F401  (the session's trained model)
from tests.whistle.test_smoke import START_TIMEOUT, Whistle, bot_api  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

REPORT_TEXT = "小区门口的路灯坏了三天了，晚上很黑，老人出门不方便"
PERSISTENCE_ROUND = 0.6  # > 2 x SAVE_SECONDS: the conversation step before the kill is stored


async def started(
    env: dict, cwd: Path, emu: TelegramEmulator, *, failpoint: str | None = None
) -> Whistle:
    """`whistle run --no-dashboard`, polling the emulator."""
    env = {**env, "WHISTLE_FAILPOINT": failpoint} if failpoint else env
    polls = emu.call_count("getUpdates")
    process = await Whistle.start("run", "--no-dashboard", env=env, cwd=cwd)
    await process.wait_for(lambda: emu.call_count("getUpdates") > polls, "getUpdates")
    return process


async def killed_at(process: Whistle, point: str) -> None:
    """Wait until the bot holds at `point`, then SIGKILL it."""
    await process.wait_for(lambda: f"failpoint {point} reached" in process.stderr, point)
    await process.kill()


async def summary_shown(emu: TelegramEmulator, user: int):
    """A report up to its summary; returns the summary message (with 确认提交)."""
    emu.send_command(user, "/report")
    await emu.wait_for_message(user, timeout=20)
    emu.send_text(user, REPORT_TEXT)
    await emu.wait_for_message(user, lambda m: m.content == texts.ASK_PHOTO, timeout=20)
    emu.send_command(user, "/skip")
    await emu.wait_for_message(user, timeout=20)
    emu.send_command(user, "/skip")
    summary = await emu.wait_for_message(user, lambda m: bool(emu.buttons(m)), timeout=20)
    await asyncio.sleep(PERSISTENCE_ROUND)
    return summary


def cases_in(folder: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(folder / "var" / "whistle.db") as db:
        return db.execute('SELECT ref, text FROM "case"').fetchall()


def references(emu: TelegramEmulator, user: int) -> list[str]:
    return [m.content for m in emu.messages(user) if m.content.startswith("已受理，编号")]


async def test_a_confirm_press_killed_before_its_case_commits_is_handled_when_redelivered(
    bot_api, tmp_path
):
    emu, env = bot_api
    process = await started(env, tmp_path, emu, failpoint="update:callback")
    try:
        summary = await summary_shown(emu, RESIDENT)
        press = emu.press(RESIDENT, summary, texts.BTN_SUBMIT)
        await killed_at(process, "update:callback")
        assert cases_in(tmp_path) == []

        process = await started(env, tmp_path, emu)
        emu.redeliver(press["update_id"])
        reply = await emu.wait_for_message(
            RESIDENT, lambda m: m.content.startswith("已受理，编号"), timeout=20
        )
        [(ref, text)] = cases_in(tmp_path)
        assert text == REPORT_TEXT and ref in reply.content

        # Handled and recorded: one more redelivery changes nothing.
        await asyncio.sleep(PERSISTENCE_ROUND)
        emu.redeliver(press["update_id"])
        await asyncio.sleep(1.0)
        assert len(cases_in(tmp_path)) == 1
        assert references(emu, RESIDENT) == [reply.content]
    finally:
        await process.kill()


async def test_a_bot_killed_after_the_case_commits_still_sends_the_reference_once(
    bot_api, tmp_path
):
    emu, env = bot_api
    process = await started(env, tmp_path, emu, failpoint="report:committed")
    try:
        summary = await summary_shown(emu, RESIDENT)
        press = emu.press(RESIDENT, summary, texts.BTN_SUBMIT)
        await killed_at(process, "report:committed")
        [(ref, _)] = cases_in(tmp_path)

        process = await started(env, tmp_path, emu)
        emu.redeliver(press["update_id"])  # Telegram's, had the offset not been confirmed
        again = texts.ALREADY_SUBMITTED["resident"].format(ref=ref)
        await emu.wait_for_message(RESIDENT, lambda m: m.content == again, timeout=20)
        await emu.wait_until(lambda: references(emu, RESIDENT), timeout=20)
        await asyncio.sleep(1.0)
        assert references(emu, RESIDENT) == [texts.SUBMITTED.format(ref=ref)]
        assert len(cases_in(tmp_path)) == 1
    finally:
        await process.kill()


async def test_a_my_command_killed_before_its_answer_is_answered_when_redelivered(
    bot_api, tmp_path
):
    emu, env = bot_api
    process = await started(env, tmp_path, emu, failpoint="update:/my")
    try:
        update = emu.send_command(RESIDENT, "/my")
        await killed_at(process, "update:/my")
        assert emu.messages(RESIDENT) == []

        process = await started(env, tmp_path, emu)
        emu.redeliver(update["update_id"])
        answer = await emu.wait_for_message(RESIDENT, timeout=20)
        assert answer.content == texts.MY_EMPTY
    finally:
        await process.kill()


GROUPS = [
    -1000000000101,
    -1000000000102,
    -1000000000103,
    -1000000000104,
    -1000000000105,
    -1000000000106,
    -1000000000107,
    -1000000000108,
    -1000000000109,
]
BACKLOG = 360  # group posts queued; groups take 20 a minute, so most must wait
STOP_WITHIN = 5.0


async def queue_group_posts(folder: Path, count: int) -> None:
    from models import outbox
    from models.engine import make_engine, session_scope

    engine = make_engine(
        f"sqlite+aiosqlite:///{folder / 'var' / 'whistle.db'}", checkpoint_interval=None
    )
    try:
        async with session_scope(engine) as session:
            now = datetime.now(UTC).replace(tzinfo=None)
            await outbox.enqueue_many(
                session,
                [
                    outbox.push_row(
                        key=f"backlog:{i}",
                        chat_id=GROUPS[i % len(GROUPS)],
                        text=f"积压通知 {i}",
                        kind="department",
                        now=now - timedelta(minutes=1),
                    )
                    for i in range(count)
                ],
            )
    finally:
        await engine.dispose()


def outbox_states(folder: Path) -> dict[str, int]:
    with sqlite3.connect(folder / "var" / "whistle.db") as db:
        return dict(
            db.execute(
                "SELECT status, count(*) FROM outbox WHERE key LIKE 'backlog:%' GROUP BY status"
            ).fetchall()
        )


async def test_sigterm_with_hundreds_of_group_posts_pending_stops_within_5_s(bot_api, tmp_path):
    emu, env = bot_api
    process = await started(env, tmp_path, emu)
    try:
        await queue_group_posts(tmp_path, BACKLOG)
        posted = lambda: sum(len(emu.messages(g)) for g in GROUPS)
        await process.wait_for(lambda: posted() >= 2 * len(GROUPS), "the first group posts")
        loop = asyncio.get_running_loop()
        began = loop.time()
        process.proc.send_signal(signal.SIGTERM)
        assert await process.finish(timeout=3 * STOP_WITHIN) == 0, process.stderr
        took = loop.time() - began
        print(f"stopped in {took:.2f} s with {outbox_states(tmp_path)}")
        assert took < STOP_WITHIN, f"stopped in {took:.1f} s"
        states = outbox_states(tmp_path)
        # What was not sent stays queued; what was sent is recorded as sent.
        assert states.get("sent", 0) == posted()
        assert states.get("sent", 0) + states.get("pending", 0) == BACKLOG, states
    finally:
        await process.kill()
