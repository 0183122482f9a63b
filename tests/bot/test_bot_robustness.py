"""End to end: forged and stale buttons, restarts, duplicate updates, odd content, timeouts,
/cancel, admin commands and webhook mode — each answered clearly, nothing lost or doubled."""

from __future__ import annotations

import asyncio
import io
import secrets
import socket
from dataclasses import replace

import httpx
from sqlmodel import func, select

from bot.app import build_application
from bot.run import run_demo, start_webhook
from models import reference
from models.engine import create_all, make_engine, session_scope
from models.tables import DISPATCHED, Case, Outbox, ProcessedUpdate, Staff
from tests.botapi import TEST_TOKEN
from tests.test_bot_kit import (
    ADMIN,
    ENTERPRISE_USER,
    HOUSING_STAFF,
    RESIDENT,
    TRIAGE_STAFF,
    WATER_STAFF,
    auto_dispatch,
    to_triage,
    with_classifier,
    with_conversation,
)

WATER_TEXT = "小区停水两天了还没来水，自来水管道一直没人来修"
QUIET = 0.3  # how long to listen for a message that must not come

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model


async def _dispatched_case(bot):
    ref = await bot.report(RESIDENT, WATER_TEXT)
    post = await bot.group_post(bot.department_chat("water"), ref)
    return ref, post


async def test_forged_and_stale_buttons_change_nothing(make_bot):
    bot = await make_bot(auto_dispatch())
    ref, post = await _dispatched_case(bot)
    before = await bot.case(ref)
    sign = post.button_data("签收")

    refusals = {
        RESIDENT: "只有工作人员",  # not staff at all
        HOUSING_STAFF: "不属于您的部门",  # another department
        TRIAGE_STAFF: "没有处理该案件的权限",  # triage does not sign for cases
    }
    for user, expected in refusals.items():
        answer = await bot.press_data(user, post, sign)
        assert answer["show_alert"] and expected in answer["text"]
    for garbage in (
        "sign:abc:0",
        f"sign:{before.id}",
        "zzz",
        f"sign:{before.id}:0:x:y",
        "dr:0:1:submit",
        "to:1:1:nowhere",
    ):
        answer = await bot.press_data(WATER_STAFF, post, garbage)
        assert answer["show_alert"], garbage
    forged_version = f"sign:{before.id}:{before.version + 7}"
    answer = await bot.press_data(WATER_STAFF, post, forged_version)
    assert answer["text"] == "该按钮已过期，请以最新消息为准"
    after = await bot.case(ref)
    assert (after.status, after.version, after.signed_at) == (DISPATCHED, before.version, None)

    # A real change (triage marks it urgent) makes the department's old button stale: the
    # press is refused, the post is redrawn with current buttons, and those work.
    triage_post = await bot.group_post(bot.triage_chat, ref)
    await bot.press(TRIAGE_STAFF, triage_post, "标记紧急")
    answer = await bot.press_data(WATER_STAFF, post, sign)
    assert "已过期" in answer["text"]
    assert (await bot.case(ref)).status == DISPATCHED
    redrawn = bot.emu.message(bot.department_chat("water"), post.message_id)
    assert redrawn.button_data("签收") != sign
    assert (await bot.press(WATER_STAFF, redrawn, "签收"))["text"] == "操作成功"


async def test_a_conversation_survives_a_restart(make_bot):
    bot = await make_bot(to_triage())
    await bot.say(RESIDENT, "/report")
    await bot.say(RESIDENT, WATER_TEXT)
    await bot.restart()  # stop the Application, build a new one on the same database

    bot.emu.send_photo(RESIDENT)
    assert "位置" in (await bot.reply(RESIDENT)).content
    summary = await bot.say(RESIDENT, "高塘岭街道新城社区3栋")
    assert WATER_TEXT in summary.content and "高塘岭街道新城社区3栋" in summary.content
    await bot.restart()  # and once more with only the buttons left to press

    bot.emu.press(RESIDENT, summary, "确认提交")
    done = await bot.reply(RESIDENT)
    ref = done.content.split("编号 ", 1)[1].split("，", 1)[0]
    case = await bot.case(ref)
    assert case.text == WATER_TEXT and case.address == "高塘岭街道新城社区3栋"
    assert len(case.photos) == 1


async def test_the_same_update_twice_is_handled_once(make_bot):
    bot = await make_bot(to_triage())
    await bot.say(RESIDENT, "/report")
    update = bot.emu.send_text(RESIDENT, WATER_TEXT)
    await bot.reply(RESIDENT)
    count = len(bot.emu.messages(RESIDENT))
    bot.emu.redeliver(update["update_id"])
    await asyncio.sleep(QUIET)
    assert len(bot.emu.messages(RESIDENT)) == count

    await bot.say(RESIDENT, "/skip")
    summary = await bot.say(RESIDENT, "/skip")
    press = bot.emu.press(RESIDENT, summary, "确认提交")
    await bot.emu.wait_for_message(RESIDENT, lambda m: "已受理" in m.content)
    bot.emu.redeliver(press["update_id"])
    await asyncio.sleep(QUIET)
    assert sum("已受理" in m.content for m in bot.emu.messages(RESIDENT)) == 1
    assert len(await bot.cases()) == 1

    # A restart forgets the in-memory shortcut; the ProcessedUpdate table still knows.
    await bot.restart()
    count = len(bot.emu.messages(RESIDENT))
    bot.emu.redeliver(update["update_id"])
    await asyncio.sleep(QUIET)
    assert len(bot.emu.messages(RESIDENT)) == count
    async with bot.services.session() as session:
        seen = (await session.exec(select(func.count()).select_from(ProcessedUpdate))).one()
    assert seen == 5  # /report, text, /skip, /skip, 确认提交 — the repeats left no trace


async def test_a_double_tap_on_submit_stores_one_case(make_bot):
    bot = await make_bot(to_triage())
    await bot.say(RESIDENT, "/report")
    await bot.say(RESIDENT, WATER_TEXT)
    await bot.say(RESIDENT, "/skip")
    summary = await bot.say(RESIDENT, "/skip")
    submit = summary.button_data("确认提交")
    first = bot.emu.press_button(RESIDENT, summary, submit)
    second = bot.emu.press_button(RESIDENT, summary, submit)  # before the first is answered
    await bot.emu.wait_for_callback_answer(first)
    await bot.emu.wait_for_callback_answer(second)
    await bot.settle()
    assert len(await bot.cases()) == 1
    texts = [m.content for m in bot.emu.messages(RESIDENT)]
    assert sum("已受理" in t for t in texts) == 1


async def test_odd_content_gets_a_clear_answer_and_loses_nothing(make_bot):
    bot = await make_bot(to_triage())
    bot.emu.send_sticker(RESIDENT)
    assert "暂时只能处理文字" in (await bot.reply(RESIDENT)).content
    huge = "水" * 10_000
    assert "内容太长了" in (await bot.say(RESIDENT, huge)).content  # and no offer for it

    await bot.say(RESIDENT, "/report")
    bot.emu.send_voice(RESIDENT)
    voice = await bot.reply(RESIDENT)
    assert "暂时只能处理文字" in voice.content and "文字描述" in voice.content
    assert "10000 字" in (await bot.say(RESIDENT, huge)).content
    assert "至少" in (await bot.say(RESIDENT, "水")).content
    assert "照片" in (await bot.say(RESIDENT, WATER_TEXT)).content

    bot.emu.send_document(RESIDENT, "现场.jpg", b"\xff\xd8\xff", "image/jpeg")
    assert "以「照片」形式发送" in (await bot.reply(RESIDENT)).content
    bot.emu.send_document(RESIDENT)
    assert "暂时只能处理文字" in (await bot.reply(RESIDENT)).content
    assert "位置" in (await bot.say(RESIDENT, "/skip")).content
    bot.emu.send_sticker(RESIDENT)
    assert "定位" in (await bot.reply(RESIDENT)).content
    summary = await bot.say(RESIDENT, "/skip")
    assert WATER_TEXT in summary.content and "确认提交" in summary.buttons[0][0]
    assert await bot.cases() == []  # nothing stored before 确认提交


async def test_edited_description_updates_the_draft(make_bot):
    bot = await make_bot(to_triage())
    await bot.say(RESIDENT, "/report")
    first = bot.emu.send_text(RESIDENT, "楼下有点问题需要处理一下")
    await bot.reply(RESIDENT)
    bot.emu.edit_text(RESIDENT, first, WATER_TEXT)
    assert "已按您修改后的内容更新描述" in (await bot.reply(RESIDENT)).content
    await bot.say(RESIDENT, "/skip")
    summary = await bot.say(RESIDENT, "/skip")
    assert WATER_TEXT in summary.content
    other = bot.emu.send_text(RESIDENT, "/my")
    await bot.reply(RESIDENT)
    bot.emu.edit_text(RESIDENT, other, "/my 改了")
    assert "不会随之改变" in (await bot.reply(RESIDENT)).content


async def test_location_far_outside_the_district_is_kept_and_flagged(make_bot):
    bot = await make_bot(to_triage())
    await bot.say(RESIDENT, "/report")
    await bot.say(RESIDENT, WATER_TEXT)
    await bot.say(RESIDENT, "/skip")
    bot.emu.send_location(RESIDENT, 39.90, 116.40)  # Beijing
    warning = await bot.reply(RESIDENT)
    assert "不在望城区范围内" in warning.content
    summary = await bot.emu.wait_for_message(RESIDENT, lambda m: bool(m.buttons))
    bot.emu.press(RESIDENT, summary, "确认提交")
    done = await bot.emu.wait_for_message(RESIDENT, lambda m: "已受理" in m.content)
    ref = done.content.split("编号 ", 1)[1].split("，", 1)[0]
    case = await bot.case(ref)
    assert case.out_of_area and case.latitude == 39.90
    assert "不在辖区范围内" in (await bot.group_post(bot.triage_chat, ref)).content


async def test_free_text_is_offered_as_a_report(make_bot):
    bot = await make_bot(to_triage())
    offer = await bot.say(RESIDENT, WATER_TEXT)
    assert "作为问题反映提交" in offer.content
    yes = offer.button_data("是，开始反映")
    bot.emu.press_button(RESIDENT, offer, yes)
    assert "照片" in (await bot.reply(RESIDENT)).content
    await bot.say(RESIDENT, "/skip")
    summary = await bot.say(RESIDENT, "/skip")
    assert WATER_TEXT in summary.content
    answer = await bot.press_data(RESIDENT, offer, yes)
    assert answer["text"] == "该按钮已过期，请以最新消息为准"


async def test_idle_conversation_times_out_politely(make_bot):
    # The idle sweep of a running bot (a very short limit here, so it sweeps every 0.2 s) ...
    bot = await make_bot(with_conversation(to_triage(), idle_timeout_minutes=0.02))
    await bot.say(RESIDENT, "/report")
    bot.clock.advance(seconds=1)  # within the limit: the report goes on
    assert "照片" in (await bot.say(RESIDENT, WATER_TEXT)).content
    bot.clock.advance(seconds=2)
    notice = await bot.emu.wait_for_message(RESIDENT, lambda m: "自动结束" in m.content, timeout=5)
    assert "/report" in notice.content
    # the report is over: a new message is offered as a new report, not taken as a photo step
    assert "作为问题反映提交" in (await bot.say(RESIDENT, WATER_TEXT)).content


async def test_idle_notices_go_through_the_outbox_and_survive_a_failing_bot_api(make_bot):
    from bot.common import kick_delivery

    bot = await make_bot(with_conversation(to_triage(), idle_timeout_minutes=0.02))
    for person in (RESIDENT, ENTERPRISE_USER):
        assert "描述" in (await bot.say(person, "/report")).content
    bot.emu.fail_next("sendMessage", "500")  # the first notice fails once
    bot.clock.advance(seconds=2)
    ended = lambda m: "自动结束" in m.content
    for _ in range(100):  # until the sweep has run and the sender has met the failure
        if bot.emu.stats["faults"]:
            break
        await asyncio.sleep(0.05)
    assert bot.emu.stats["faults"] == 1
    bot.clock.advance(minutes=1)  # past the failed one's back-off
    kick_delivery(bot.app)
    for person in (RESIDENT, ENTERPRISE_USER):
        await bot.emu.wait_for_message(person, ended, timeout=5)
    bot.clock.advance(minutes=5)  # later sweeps find nothing more to end
    kick_delivery(bot.app)
    await asyncio.sleep(0.5)
    for person in (RESIDENT, ENTERPRISE_USER):
        assert sum(ended(m) for m in bot.emu.messages(person)) == 1


async def test_idle_draft_restored_after_a_restart_times_out_by_the_clock(make_bot):
    # ... and the store-kept draft's own clock, which also works after a restart.
    bot = await make_bot(to_triage())
    await bot.say(RESIDENT, "/report")
    await bot.say(RESIDENT, WATER_TEXT)
    await bot.restart()
    bot.clock.advance(minutes=31)
    assert "自动结束" in (await bot.say(RESIDENT, "/skip")).content
    assert "当前没有进行中的操作" in (await bot.say(RESIDENT, "/cancel")).content


async def test_cancel_works_anywhere(make_bot):
    bot = await make_bot(auto_dispatch())
    assert "当前没有进行中的操作" in (await bot.say(RESIDENT, "/cancel")).content
    await bot.say(RESIDENT, "/report")
    await bot.say(RESIDENT, WATER_TEXT)
    assert "已取消" in (await bot.say(RESIDENT, "/cancel")).content
    assert "作为问题反映提交" in (await bot.say(RESIDENT, WATER_TEXT)).content

    ref, post = await _dispatched_case(bot)
    group = bot.department_chat("water")
    await bot.press(WATER_STAFF, post, "退回")
    await bot.reply(WATER_STAFF, group)
    assert "已取消本次操作" in (await bot.say(WATER_STAFF, "/cancel", chat=group)).content
    assert (await bot.case(ref)).status == DISPATCHED


async def test_admin_commands_are_for_admins_only(make_bot):
    bot = await make_bot(auto_dispatch())
    assert "只有管理员" in (await bot.say(RESIDENT, "/staff_add 9100 department water")).content
    assert "只有管理员" in (await bot.say(TRIAGE_STAFF, "/reload_model")).content
    assert "模型没有变化" in (await bot.say(ADMIN, "/reload_model")).content
    assert "用法" in (await bot.say(ADMIN, "/staff_add 9100 department")).content
    assert "不存在" in (await bot.say(ADMIN, "/staff_add 9100 department nowhere")).content
    assert "用法" in (await bot.say(ADMIN, "/staff_add 9100 chef")).content
    assert (
        "已添加工作人员 9100 王小明"
        in (await bot.say(ADMIN, "/staff_add 9100 department water 王小明")).content
    )
    async with bot.services.session() as session:
        added = (await session.exec(select(Staff).where(Staff.telegram_id == 9100))).one()
    assert (added.role, added.department_code, added.name) == ("department", "water", "王小明")
    # Changing the role again without a name keeps the name.
    assert "已添加" in (await bot.say(ADMIN, "/staff_add 9100 department water")).content
    async with bot.services.session() as session:
        added = (await session.exec(select(Staff).where(Staff.telegram_id == 9100))).one()
    assert added.name == "王小明"

    bot.emu.add_user(9100, "水务局新同事")
    bot.emu.add_member(bot.department_chat("water"), 9100)
    _, post = await _dispatched_case(bot)
    assert (await bot.press(9100, post, "签收"))["text"] == "操作成功"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_webhook_mode_with_a_secret_token(make_bot):
    bot = await make_bot(to_triage())
    await bot.stop()
    port, secret = _free_port(), secrets.token_urlsafe(24)
    url = f"http://127.0.0.1:{port}/tg-hook"
    telegram = replace(
        bot.settings.telegram,
        mode="webhook",
        webhook_url=url,
        webhook_listen="127.0.0.1",
        webhook_port=port,
        http_client="httpx",
    )  # PTB's default transport, once
    bot.settings = replace(bot.settings, telegram=telegram, webhook_secret=secret)
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
    try:
        assert "随手拍" in (await bot.say(RESIDENT, "/start")).content
        assert bot.emu.stats["webhook_posts"] >= 1
        # A POST without the secret is refused and changes nothing.
        forged = {
            "update_id": 999_999,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": RESIDENT, "type": "private"},
                "from": {"id": RESIDENT, "is_bot": False, "first_name": "x"},
                "text": "/start",
            },
        }
        async with httpx.AsyncClient() as client:
            refused = await client.post(
                url, json=forged, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}
            )
        assert refused.status_code == 403
        await asyncio.sleep(QUIET)
        async with bot.services.session() as session:
            assert await session.get(ProcessedUpdate, 999_999) is None
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()


async def test_demo_runs_the_whole_flow_in_a_terminal(tmp_path, model_path):
    """`whistle demo`: emulator + bot + terminal chat, scripted here instead of typed."""
    settings = replace(
        with_classifier(to_triage(), model_path=str(model_path)),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
    )
    engine = make_engine(settings.database_url)
    await create_all(engine)
    async with session_scope(engine) as session:
        await reference.sync_reference_data(session, settings)
    await engine.dispose()
    script = [
        "/start",
        ":wait",
        "/report",
        ":wait",
        WATER_TEXT,
        ":wait",
        "/skip",
        ":wait",
        "/skip",
        ":wait",
        "1",
        ":wait 已受理",
        ":quit",
    ]
    out = io.StringIO()
    await asyncio.wait_for(run_demo(settings, input_lines=script, out=out), 60)
    shown = out.getvalue()
    assert "随手拍" in shown and "初步判断由 水务局 处理" in shown
    assert "已受理，编号 WC-" in shown
    engine = make_engine(settings.database_url)
    try:
        async with session_scope(engine) as session:
            [case] = (await session.exec(select(Case))).all()
            posts = (await session.exec(select(Outbox).where(Outbox.case_id == case.id))).all()
    finally:
        await engine.dispose()
    assert case.text == WATER_TEXT
    # The reference to the reporter goes through the outbox too, queued with the case.
    assert sorted((p.kind, p.chat_id) for p in posts) == [
        ("reply", RESIDENT),
        ("triage", settings.telegram.triage_chat_id),
    ]
