"""The Bot API emulator, driven through python-telegram-bot's real HTTP stack."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time

import aiohttp
import pytest
from aiohttp import web
from telegram import (
    Bot,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    ReplyParameters,
    Update,
)
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.request import HTTPXRequest

from emulator import TelegramEmulator, render_text, run_terminal_chat
from tests.botapi import RESIDENT, TEST_TOKEN, app_builder, running_app

# RetryAfter.retry_after warns that it will become a timedelta; both forms are handled below.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

TRIAGE = -1000000000001
TRIAGE_STAFF = 9001
WATER_GROUP = -1000000000101


# ---------------------------------------------------------------- a tiny echo bot


async def _record(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    context.bot_data.setdefault("update_ids", []).append(update.update_id)


async def _start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("确认提交", callback_data="ok"),
                InlineKeyboardButton("修改", callback_data="edit"),
            ]
        ]
    )
    await update.message.reply_text(f"欢迎 {' '.join(context.args)}".strip(), reply_markup=keyboard)


async def _button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    await query.answer("已确认")
    await query.edit_message_text(f"已选择：{query.data}")
    if query.data == "ok":
        await context.bot.send_message(TRIAGE, f"新案件待分拨（来自 {query.from_user.id}）")


async def _photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    file = await update.message.photo[-1].get_file()
    data = bytes(await file.download_as_bytearray())
    context.bot_data["photo"] = data
    await update.message.reply_text(f"收到照片 {len(data)} 字节")


async def _text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.message.reply_text(f"你说：{update.message.text}", do_quote=True)


async def _edited(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await context.bot.send_message(
        update.edited_message.chat_id, f"已修改为：{update.edited_message.text}"
    )


async def _location(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    loc = update.message.location
    await update.message.reply_text(f"位置 {loc.latitude},{loc.longitude}")


async def _other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    msg = update.message
    kind = next(k for k in ("sticker", "voice", "document", "contact") if getattr(msg, k))
    await msg.reply_text(f"类型 {kind}")


def echo_app(emu: TelegramEmulator, **builder_options):
    builder = app_builder(emu)
    for name, value in builder_options.items():
        builder = getattr(builder, name)(value)
    app = builder.build()
    app.add_handler(TypeHandler(Update, _record), group=-1)
    app.add_handler(CommandHandler("start", _start))
    app.add_handler(CallbackQueryHandler(_button))
    app.add_handler(MessageHandler(filters.PHOTO, _photo))
    app.add_handler(MessageHandler(filters.LOCATION, _location))
    app.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE, _edited))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, _text))
    app.add_handler(
        MessageHandler(
            filters.Sticker.ALL | filters.VOICE | filters.Document.ALL | filters.CONTACT, _other
        )
    )
    return app


def direct_bot(emu: TelegramEmulator, token: str = TEST_TOKEN, read_timeout: float = 5.0) -> Bot:
    return Bot(
        token,
        base_url=emu.base_url,
        base_file_url=emu.base_file_url,
        request=HTTPXRequest(read_timeout=read_timeout),
    )


def retry_seconds(exc: RetryAfter) -> float:
    value = exc.retry_after
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def raw_call(
    emu: TelegramEmulator, method: str, token: str = TEST_TOKEN, **params
) -> tuple[int, dict]:
    url = f"{emu.base_url}{token}/{method}"
    async with aiohttp.ClientSession() as session, session.post(url, json=params) as response:
        return response.status, await response.json()


# ---------------------------------------------------------------- round trips


async def test_text_command_and_reply_round_trip(emulator):
    async with running_app(echo_app(emulator), emulator):
        emulator.send_command(RESIDENT, "/start 路灯")
        welcome = await emulator.wait_for_message(RESIDENT)
        assert welcome.text == "欢迎 路灯"
        assert emulator.buttons(welcome) == [("确认提交", "ok"), ("修改", "edit")]
        assert welcome.keyboard == [[("确认提交", "ok"), ("修改", "edit")]]

        update = emulator.send_text(RESIDENT, "水管漏水了")
        reply = await emulator.wait_for_message(RESIDENT)
        assert reply.text == "你说：水管漏水了"
        assert reply.reply_to_message_id == update["message"]["message_id"]
        assert reply.message_id > welcome.message_id
    sent = [call for call in emulator.calls if call.method == "sendMessage"]
    assert [c.params["text"] for c in sent] == ["欢迎 路灯", "你说：水管漏水了"]
    assert emulator.stats["sent"] == 2


async def test_button_press_answers_query_and_edits_in_place(emulator):
    async with running_app(echo_app(emulator), emulator):
        emulator.send_command(RESIDENT, "/start")
        card = await emulator.wait_for_message(RESIDENT)
        press = emulator.press(RESIDENT, card, "确认")
        answer = await emulator.wait_for_callback_answer(press)
        assert answer["text"] == "已确认" and answer["show_alert"] is False

        await emulator.wait_until(lambda: card.edits)
        assert card.text == "已选择：ok"
        assert card.buttons == []  # editing text without reply_markup drops the keyboard
        assert card.edits[0]["text"] == "欢迎" and card.edits[0]["buttons"][0] == ("确认提交", "ok")
        assert emulator.messages(RESIDENT) == [card]  # edited in place, not a new message

        note = await emulator.wait_for_message(TRIAGE)
        assert note.text == f"新案件待分拨（来自 {RESIDENT}）"

        # Telegram refuses an edit that changes nothing, and a second answer to one query.
        bot = direct_bot(emulator)
        async with bot:
            with pytest.raises(BadRequest, match="(?i)message is not modified"):
                await bot.edit_message_text("已选择：ok", RESIDENT, card.message_id)
            with pytest.raises(BadRequest, match="(?i)query ID is invalid"):
                await bot.answer_callback_query(press["callback_query"]["id"])


async def test_photo_is_downloadable_by_the_bot(emulator):
    async with running_app(echo_app(emulator), emulator) as app:
        update = emulator.send_photo(RESIDENT, caption="井盖缺失")
        reply = await emulator.wait_for_message(RESIDENT)
    file_id = update["message"]["photo"][-1]["file_id"]
    sent_bytes = emulator.file_bytes(file_id)
    assert sent_bytes[:3] == b"\xff\xd8\xff"  # a real JPEG
    assert app.bot_data["photo"] == sent_bytes
    assert reply.text == f"收到照片 {len(sent_bytes)} 字节"
    assert update["message"]["caption"] == "井盖缺失"


async def test_user_edit_location_and_other_media_reach_handlers(emulator):
    async with running_app(echo_app(emulator), emulator):
        original = emulator.send_text(RESIDENT, "路灯不亮")
        await emulator.wait_for_message(RESIDENT)
        emulator.edit_text(RESIDENT, original, "路灯不亮，在银星路")
        edited = await emulator.wait_for_message(RESIDENT)
        assert edited.text == "已修改为：路灯不亮，在银星路"

        emulator.send_location(RESIDENT, 28.37, 112.82)
        assert (await emulator.wait_for_message(RESIDENT)).text == "位置 28.37,112.82"

        for inject, kind in [
            (lambda: emulator.send_sticker(RESIDENT), "sticker"),
            (lambda: emulator.send_voice(RESIDENT), "voice"),
            (lambda: emulator.send_document(RESIDENT), "document"),
            (lambda: emulator.send_contact(RESIDENT, "13900000000"), "contact"),
        ]:
            inject()
            assert (await emulator.wait_for_message(RESIDENT)).text == f"类型 {kind}"


async def test_redeliver_gives_the_same_update_twice(emulator):
    async with running_app(echo_app(emulator), emulator) as app:
        update = emulator.send_text(RESIDENT, "一次")
        first = await emulator.wait_for_message(RESIDENT)
        emulator.redeliver(update["update_id"])
        second = await emulator.wait_for_message(RESIDENT, after=first)
        emulator.send_text(RESIDENT, "之后")
        await emulator.wait_for_message(RESIDENT, lambda m: m.text == "你说：之后")
    assert second.text == first.text == "你说：一次"
    seen = app.bot_data["update_ids"]
    assert seen.count(update["update_id"]) == 2
    assert seen[-1] == update["update_id"] + 1  # later updates still arrive once, in order


# ---------------------------------------------------------------- API surface


async def test_send_methods_keyboards_replies_and_deletion(emulator):
    bot = direct_bot(emulator)
    async with bot:
        asked = await bot.send_message(
            RESIDENT,
            "请发送位置",
            reply_markup=ReplyKeyboardMarkup(
                [[KeyboardButton("发送位置", request_location=True), "跳过"]], resize_keyboard=True
            ),
        )
        assert emulator.reply_keyboard(RESIDENT) == [["发送位置", "跳过"]]
        user_msg = emulator.send_text(RESIDENT, "跳过")["message"]
        reply = await bot.send_message(
            RESIDENT,
            "好的",
            reply_markup=ReplyKeyboardRemove(),
            reply_parameters=ReplyParameters(user_msg["message_id"]),
        )
        assert emulator.reply_keyboard(RESIDENT) is None
        assert reply.reply_to_message.text == "跳过"
        with pytest.raises(BadRequest, match="(?i)message to be replied not found"):
            await bot.send_message(RESIDENT, "x", reply_to_message_id=9999)

        located = await bot.send_location(RESIDENT, 28.37, 112.82)
        venue = await bot.send_venue(RESIDENT, 28.37, 112.82, "银星村村委会", "银星路 1 号")
        assert emulator.message(RESIDENT, located.message_id).location == (28.37, 112.82)
        assert venue.venue.title == "银星村村委会"

        photo = await bot.send_photo(RESIDENT, io.BytesIO(b"\x89PNG fake"), caption="现场")
        assert emulator.file_bytes(photo.photo[-1].file_id) == b"\x89PNG fake"
        again = await bot.send_photo(RESIDENT, photo.photo[-1].file_id)
        assert again.photo[-1].file_id == photo.photo[-1].file_id
        recaptioned = await bot.edit_message_caption(RESIDENT, photo.message_id, caption="已处理")
        assert recaptioned.caption == "已处理"
        with pytest.raises(BadRequest, match="(?i)no text in the message"):
            await bot.edit_message_text("x", RESIDENT, photo.message_id)

        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("签收", callback_data="sign:1")]])
        await bot.edit_message_reply_markup(RESIDENT, reply.message_id, reply_markup=keyboard)
        assert emulator.message(RESIDENT, reply.message_id).buttons == [("签收", "sign:1")]

        assert await bot.delete_message(RESIDENT, asked.message_id)
        assert emulator.message(RESIDENT, asked.message_id).deleted
        with pytest.raises(BadRequest, match="(?i)message to delete not found"):
            await bot.delete_message(RESIDENT, asked.message_id)

        assert await bot.send_chat_action(RESIDENT, "typing")
        chat = await bot.get_chat(TRIAGE)
        assert chat.title == "分拨中心" and chat.type == "supergroup"
        with pytest.raises(BadRequest, match="(?i)chat not found"):
            await bot.send_message(424242, "无人")

        await bot.set_my_commands([("start", "开始"), ("report", "我要反映")])
        assert [c.command for c in await bot.get_my_commands()] == ["start", "report"]
        await bot.delete_my_commands()
        assert await bot.get_my_commands() == ()
        assert await bot.close() and await bot.log_out()


async def test_formatting_and_button_validation_like_telegram(emulator):
    bot = direct_bot(emulator)
    async with bot:
        msg = await bot.send_message(RESIDENT, "<b>案件</b> WC-1 &amp; 回执", parse_mode="HTML")
        assert msg.text == "案件 WC-1 & 回执"
        assert emulator.last_message(RESIDENT).raw_text == "<b>案件</b> WC-1 &amp; 回执"
        with pytest.raises(BadRequest, match="(?i)can't parse entities"):
            await bot.send_message(RESIDENT, "第一行<br>第二行", parse_mode="HTML")
        with pytest.raises(BadRequest, match="(?i)reserved"):
            await bot.send_message(RESIDENT, "办结率 95.5%", parse_mode="MarkdownV2")
        too_long = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="长" * 30)]])
        with pytest.raises(BadRequest, match="(?i)BUTTON_DATA_INVALID"):
            await bot.send_message(RESIDENT, "按钮", reply_markup=too_long)
        with pytest.raises(BadRequest, match="(?i)too long"):
            await bot.send_message(RESIDENT, "字" * 4097)
    assert render_text(r"办结率 95\.5%", "MarkdownV2") == "办结率 95.5%"
    assert render_text("*重要* _提醒_ [链接](https://example.org)", "Markdown") == "重要 提醒 链接"


async def test_wrong_token_is_401_and_unknown_method_404(emulator):
    async with direct_bot(emulator) as bot:
        assert (await bot.get_me()).username == emulator.bot_user["username"]
    with pytest.raises(InvalidToken):
        async with direct_bot(emulator, token="123456789:wrong") as bad_bot:
            await bad_bot.get_me()
    status, body = await raw_call(emulator, "getMe", token="123456789:wrong")
    assert status == 401 and body == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    status, body = await raw_call(emulator, "sendRocket", chat_id=RESIDENT)
    assert status == 404 and body["ok"] is False


async def test_wait_for_message_after_semantics(emulator):
    async with direct_bot(emulator) as bot:
        first = await bot.send_message(RESIDENT, "第一条")
        await bot.send_message(RESIDENT, "第二条")
        emulator.send_text(RESIDENT, "居民消息")  # default `after`: only newer bot messages
        await bot.edit_message_text("第一条（改）", RESIDENT, first.message_id)
        waiter = asyncio.create_task(emulator.wait_for_message(RESIDENT))
        await bot.send_message(RESIDENT, "第三条")
        assert (await waiter).text == "第三条"
        assert (await emulator.wait_for_message(RESIDENT, after=1)).text == "第二条"
        by_message = await emulator.wait_for_message(RESIDENT, after=emulator.messages(RESIDENT)[0])
        assert by_message.text == "第二条"
        with pytest.raises(TimeoutError, match="第三条"):
            await emulator.wait_for_message(
                RESIDENT, lambda m: "第四" in m.content, timeout=0.2, after=0
            )


async def test_get_with_query_string_and_json_bodies(emulator):
    url = f"{emulator.base_url}{TEST_TOKEN}/getChat?chat_id={TRIAGE}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body = await response.json()
    assert body["ok"] is True and body["result"]["title"] == "分拨中心"
    status, body = await raw_call(
        emulator,
        "sendMessage",
        chat_id=RESIDENT,
        text="JSON 请求",
        reply_markup={"inline_keyboard": [[{"text": "好", "callback_data": "y"}]]},
    )
    assert status == 200 and body["result"]["reply_markup"]["inline_keyboard"][0][0]["text"]
    assert emulator.last_message(RESIDENT).buttons == [("好", "y")]


# ---------------------------------------------------------------- getUpdates semantics


async def test_get_updates_offset_limit_and_allowed_updates(emulator):
    ids = [emulator.send_text(RESIDENT, f"第{i}条")["update_id"] for i in range(3)]
    _, body = await raw_call(emulator, "getUpdates", limit=2)
    assert [u["update_id"] for u in body["result"]] == ids[:2]
    _, body = await raw_call(emulator, "getUpdates", offset=ids[1] + 1)
    assert [u["update_id"] for u in body["result"]] == ids[2:]
    _, body = await raw_call(
        emulator, "getUpdates", offset=ids[2] + 1, allowed_updates=["callback_query"]
    )
    assert body["result"] == []
    emulator.send_text(RESIDENT, "被过滤")  # a message while only callback queries are wanted
    _, body = await raw_call(emulator, "getUpdates", offset=ids[2] + 1)
    assert body["result"] == []

    press = emulator.press_button(RESIDENT, (RESIDENT, 1), "forged-data")
    _, body = await raw_call(emulator, "deleteWebhook", drop_pending_updates=True)
    assert body["result"] is True
    _, body = await raw_call(emulator, "getUpdates", offset=0)
    assert body["result"] == [] and press["callback_query"]["data"] == "forged-data"


async def test_long_poll_waits_and_newer_poll_ends_older_one(emulator):
    started = time.monotonic()
    _, body = await raw_call(emulator, "getUpdates", timeout=1)
    assert body["result"] == [] and time.monotonic() - started >= 0.9

    first = asyncio.create_task(raw_call(emulator, "getUpdates", timeout=10))
    second = asyncio.create_task(raw_call(emulator, "getUpdates", timeout=10))
    done, _ = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED, timeout=5)
    status, body = done.pop().result()
    assert status == 409 and "terminated by other getUpdates" in body["description"]
    waiting = second if first.done() else first
    update = emulator.send_text(RESIDENT, "唤醒")
    status, body = await asyncio.wait_for(waiting, 5)
    assert status == 200 and body["result"][0]["update_id"] == update["update_id"]


# ---------------------------------------------------------------- webhook mode


async def test_webhook_delivery_with_secret_header(emulator):
    received: list[tuple[str | None, dict]] = []
    arrived = asyncio.Event()

    async def capture(request: web.Request) -> web.Response:
        received.append(
            (request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json())
        )
        arrived.set()
        return web.Response(text="ok")

    server = web.Application()
    server.router.add_post("/hook", capture)
    runner = web.AppRunner(server)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        emulator.send_text(RESIDENT, "先于 webhook")
        async with direct_bot(emulator) as bot:
            await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret-_ok")
            await asyncio.wait_for(arrived.wait(), 5)
            assert received[0][0] == "s3cret-_ok"
            assert received[0][1]["message"]["text"] == "先于 webhook"
            with pytest.raises(Conflict):
                await bot.get_updates()
            info = await bot.get_webhook_info()
            assert info.url.endswith("/hook")

            await bot.delete_webhook()
            update = emulator.send_text(RESIDENT, "回到轮询")
            assert [u.update_id for u in await bot.get_updates()] == [update["update_id"]]
            with pytest.raises(BadRequest, match="(?i)secret token"):
                await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="有中文")
    finally:
        await runner.cleanup()


async def test_failed_webhook_delivery_is_retried_and_reported(emulator):
    attempts: list[int] = []
    delivered = asyncio.Event()

    async def flaky(request: web.Request) -> web.Response:
        attempts.append((await request.json())["update_id"])
        if len(attempts) == 1:
            return web.Response(status=500)
        delivered.set()
        return web.Response(text="ok")

    server = web.Application()
    server.router.add_post("/hook", flaky)
    runner = web.AppRunner(server)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with direct_bot(emulator) as bot:
            await bot.set_webhook(f"http://127.0.0.1:{port}/hook")
            update = emulator.send_text(RESIDENT, "重试")
            await asyncio.wait_for(delivered.wait(), 5)
            info = await bot.get_webhook_info()
    finally:
        await runner.cleanup()
    assert attempts == [update["update_id"]] * 2
    assert "500" in info.last_error_message and info.pending_update_count == 0


async def test_ptb_webhook_server_receives_updates(emulator):
    app = echo_app(emulator)
    port = free_port()
    async with app:
        await app.start()
        await app.updater.start_webhook(
            listen="127.0.0.1",
            port=port,
            url_path="tg",
            secret_token="whistle-secret",
            webhook_url=f"http://127.0.0.1:{port}/tg",
        )
        try:
            emulator.send_text(RESIDENT, "经由 webhook")
            reply = await emulator.wait_for_message(RESIDENT)
            assert reply.text == "你说：经由 webhook"
            assert emulator.stats["webhook_posts"] >= 1
            assert emulator.stats["webhook_errors"] == 0  # PTB rejects a wrong secret (403)
        finally:
            await app.updater.stop()
            await app.stop()


# ---------------------------------------------------------------- faults and limits


async def test_each_fault_kind_surfaces_as_the_right_ptb_error(emulator):
    emulator.timeout_hold = 1.0
    async with direct_bot(emulator, read_timeout=0.3) as bot:
        emulator.fail_next("sendMessage", "429", retry_after=3)
        with pytest.raises(RetryAfter) as too_many:
            await bot.send_message(RESIDENT, "限流")
        assert retry_seconds(too_many.value) == 3

        emulator.fail_next("sendMessage", "500")
        with pytest.raises(NetworkError) as server_error:
            await bot.send_message(RESIDENT, "服务器错误")
        assert not isinstance(server_error.value, TimedOut)

        emulator.fail_next("sendMessage", "timeout")
        with pytest.raises(TimedOut):
            await bot.send_message(RESIDENT, "超时")

        emulator.fail_next("sendMessage", "blocked")
        with pytest.raises(Forbidden, match="(?i)blocked by the user"):
            await bot.send_message(RESIDENT, "被屏蔽")

        emulator.fail_next("sendMessage", "500", processed=True)
        with pytest.raises(NetworkError):
            await bot.send_message(RESIDENT, "已送达但回执丢失")
        assert emulator.last_message(RESIDENT).text == "已送达但回执丢失"

        ok = await bot.send_message(RESIDENT, "恢复正常")  # faults were used up
        assert ok.text == "恢复正常"

        emulator.block_user(RESIDENT)
        for _ in range(2):
            with pytest.raises(Forbidden):
                await bot.send_message(RESIDENT, "屏蔽后")
        await bot.send_message(TRIAGE_STAFF, "其他人不受影响")
    assert [m.text for m in emulator.messages(RESIDENT)] == ["已送达但回执丢失", "恢复正常"]
    assert emulator.stats["faults"] == 5


async def test_enforce_limits_answers_429_and_counts_them():
    emu = TelegramEmulator(token=TEST_TOKEN, enforce_limits=True)
    emu.add_user(1, "甲")
    emu.add_group(WATER_GROUP, "水务局工作群", [1])
    for user_id in range(100, 140):
        emu.add_user(user_id, f"居民{user_id}")
    async with emu, direct_bot(emu) as bot:
        outcomes = []
        for i in range(5):  # private chat: a burst of 3, then about 1 per second
            try:
                await bot.send_message(1, f"私聊 {i}")
                outcomes.append("ok")
            except RetryAfter as exc:
                outcomes.append(retry_seconds(exc))
        assert outcomes == ["ok", "ok", "ok", 1, 1]

        group_results = await asyncio.gather(
            *(bot.send_message(WATER_GROUP, f"群 {i}") for i in range(22)), return_exceptions=True
        )
        group_limited = [r for r in group_results if isinstance(r, RetryAfter)]
        assert len(group_limited) == 2  # 20 per minute per group

    # The overall limit (30 per second) is checked on a fresh emulator.
    emu = TelegramEmulator(token=TEST_TOKEN, enforce_limits=True)
    for user_id in range(100, 140):
        emu.add_user(user_id, f"居民{user_id}")
    async with emu, direct_bot(emu) as bot:
        started = time.monotonic()
        results = await asyncio.gather(
            *(bot.send_message(uid, "通知") for uid in range(100, 140)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
    limited = [r for r in results if isinstance(r, RetryAfter)]
    assert limited and emu.stats["429"] == len(limited)
    assert 40 - len(limited) <= 30 + 30 * elapsed + 1  # refill during the burst


async def test_force_reply_knows_whom_it_asks(emulator):
    """Telegram's selective ForceReply targets the mentioned user or the one replied to."""
    triage_staff, admin = 9001, 9000  # both in the triage group
    async with direct_bot(emulator) as bot:
        await bot.send_message(RESIDENT, "请输入", reply_markup=ForceReply())
        await bot.send_message(
            TRIAGE,
            '<a href="tg://user?id=9001">小李</a> 请回复理由',
            parse_mode="HTML",
            reply_markup=ForceReply(selective=True),
        )
        asked = emulator.send_text(admin, "我来回答", chat_id=TRIAGE)["message"]["message_id"]
        await bot.send_message(
            TRIAGE,
            "请说明",
            reply_markup=ForceReply(selective=True),
            reply_parameters=ReplyParameters(asked),
        )
        await bot.send_message(TRIAGE, "大家都可以回答", reply_markup=ForceReply())
        await bot.send_message(TRIAGE, "通知")
    private, mention, reply, everyone, plain = (
        *emulator.messages(RESIDENT),
        *emulator.messages(TRIAGE),
    )
    assert private.asks(RESIDENT)
    assert mention.asks(triage_staff) and not mention.asks(admin)
    assert reply.asks(admin) and not reply.asks(triage_staff)
    assert everyone.asks(admin) and everyone.asks(triage_staff)
    assert not plain.asks(admin)


# ---------------------------------------------------------------- terminal client


async def test_scripted_terminal_session(emulator):
    out = io.StringIO()
    identities = {RESIDENT: "居民王阿姨", TRIAGE_STAFF: "分拨员小李"}

    async def script():
        for line in ["/start", ":wait", "1", ":wait 2"]:
            yield line
        # The triage note arrives while the resident is typing: shown as unread on switching.
        await emulator.wait_for_message(TRIAGE, after=0)
        for line in [
            ":as 9001",
            ":wait",
            ":who",
            ":as 居民",
            "你好",
            ":wait",
            ":photo 路灯坏了",
            ":wait",
            ":loc 28.37 112.82",
            ":wait",
            ":loc 北纬",
            ":press 9",
            ":bogus",
            ":quit",
            "退出后不再处理",
        ]:
            yield line

    async with running_app(echo_app(emulator), emulator):
        await asyncio.wait_for(
            run_terminal_chat(
                emulator, identities, {TRIAGE: "分拨中心"}, RESIDENT, input_lines=script(), out=out
            ),
            timeout=15,
        )
    text = out.getvalue()
    expected_in_order = [
        "居民王阿姨> /start",
        "[私聊] 吹哨报到：欢迎",
        "[1] 确认提交  [2] 修改",
        "（已点击“确认提交”）",
        "💬 提示：已确认",
        "[私聊] 吹哨报到（已修改）：已选择：ok",
        "现在的身份：分拨员小李（9001）",
        "—— 1 条未读消息 ——",
        f"[分拨中心] 吹哨报到：新案件待分拨（来自 {RESIDENT}）",
        f"9001  分拨员小李，所在群：分拨中心（{TRIAGE}） ← 当前",
        "现在的身份：居民王阿姨（10001）",
        "[私聊] 吹哨报到：你说：你好",
        "[私聊] 吹哨报到：收到照片",
        "[私聊] 吹哨报到：位置 28.37,112.82",
        "用法：:loc 纬度 经度",
        "当前没有可以点击的按钮。",  # the edit removed the keyboard
        "未知命令 :bogus",
        "再见！",
    ]
    position = 0
    for line in expected_in_order:
        found = text.find(line, position)
        assert found >= 0, f"missing (in order) {line!r} in:\n{text}"
        position = found + len(line)
    assert "退出后不再处理" not in text
    # The group message reached the triage chat, not the resident's view.
    resident_part = text[: text.index("现在的身份：分拨员小李")]
    assert "新案件待分拨" not in resident_part
    assert json.dumps(emulator.messages(TRIAGE)[0].payload["chat"]["id"]) == str(TRIAGE)


# ---------------------------------------------------------------- a package of its own

WHISTLE_PACKAGES = ("whistle", "bot", "classifier", "models", "web", "migrations", "geo", "train")


def test_emulator_imports_nothing_of_whistle():
    """emulator/ is infrastructure: importing all of it loads no Whistle package."""
    import pathlib
    import subprocess
    import sys

    import emulator

    modules = sorted(
        f"emulator.{p.stem}"
        for p in pathlib.Path(emulator.__file__).parent.glob("*.py")
        if p.stem != "__init__"
    )
    assert {"emulator.server", "emulator.terminal", "emulator.texts"} <= set(modules)
    probe = (
        f"import sys; import {', '.join(modules)}; "
        f"print(' '.join(sorted({{m for m in sys.modules if m.split('.')[0] in "
        f"{WHISTLE_PACKAGES!r}}})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []
