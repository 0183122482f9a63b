"""`whistle demo`'s terminal: every role has someone to play, typed text goes to the chat that
asked for it, numbers press buttons only when buttons show, multi-line and long Chinese input
arrive whole. Driven with scripted input against the real bot, emulator and store (and a real
pseudo-terminal for the keyboard reader)."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import select
import subprocess
import sys
import time
from dataclasses import replace

from sqlmodel import select as sql_select

from bot import texts
from bot.run import run_demo
from emulator import BotMessage, StdinInput, run_terminal_chat
from models import reference
from models.credit_code import is_valid_credit_code
from models.engine import create_all, make_engine, session_scope
from models.tables import CLOSED, Case, Enterprise
from tests.test_bot_kit import (
    ENTERPRISE_USER,
    RESIDENT,
    TRIAGE_STAFF,
    WATER_STAFF,
    base_settings,
    to_triage,
    with_classifier,
)
from whistle.demo import (
    DEMO_CREDIT_CODE,
    DEMO_RESIDENTS,
    add_people_from_settings,
    demo_intro,
    demo_roles,
    departments_without_staff,
)

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model

WATER_TEXT = "小区停水两天了还没来水，自来水管道一直没人来修"
RESULT_TEXT = "已更换破损水管，今天下午恢复供水"
LONG_TEXT = ("我们小区三号楼门口的自来水管道破裂已经好几天了，水一直往外冒，路面结冰很危险。" * 40)[
    :1500
]
TIMEOUT = 60


def in_order(text: str, *expected: str) -> None:
    """Every expected piece occurs in `text`, in this order."""
    position = 0
    for piece in expected:
        found = text.find(piece, position)
        assert found >= 0, f"missing (in order) {piece!r} in:\n{text}"
        position = found + len(piece)


def user_messages(emu, chat_id: int, user_id: int) -> list[dict]:
    """What `user_id` sent in the chat (the emulator keeps user messages as dicts)."""
    return [
        m
        for m in emu.chats[chat_id].by_id.values()
        if not isinstance(m, BotMessage) and m.get("from", {}).get("id") == user_id
    ]


async def chat(bot, lines, start_as: int = RESIDENT) -> str:
    """Run the terminal against a make_bot bot with the demo's people; the transcript."""
    identities, groups = add_people_from_settings(bot.emu, bot.settings)
    out = io.StringIO()
    await asyncio.wait_for(
        run_terminal_chat(
            bot.emu,
            identities,
            groups,
            start_as,
            input_lines=lines,
            out=out,
            roles=demo_roles(bot.settings),
        ),
        TIMEOUT,
    )
    return out.getvalue()


async def demo_settings(tmp_path, model_path):
    """Settings for run_demo on a fresh SQLite file; nothing is auto-dispatched."""
    settings = replace(
        with_classifier(to_triage(), model_path=str(model_path)),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
    )
    engine = make_engine(settings.database_url)
    await create_all(engine)
    async with session_scope(engine) as session:
        await reference.sync_reference_data(session, settings)
    await engine.dispose()
    return settings


async def demo_cases(settings) -> list[Case]:
    engine = make_engine(settings.database_url)
    try:
        async with session_scope(engine) as session:
            return list((await session.exec(sql_select(Case).order_by(Case.id))).all())
    finally:
        await engine.dispose()


# ---------------------------------------------------------------- the cast


def test_config_has_someone_for_every_role_and_department():
    settings = base_settings()
    roles = demo_roles(settings)
    assert departments_without_staff(settings) == []
    played = {r.role for r in roles.values()}
    assert played >= {"resident", "enterprise", "triage", "department", "grid", "leader", "admin"}
    officers = {s.department for s in settings.staff if s.role == "department"}
    assert officers == {d.code for d in settings.departments}
    grids = {g.code for g in settings.grids}
    assert all(s.grid in grids for s in settings.staff if s.role == "grid")
    assert is_valid_credit_code(DEMO_CREDIT_CODE)
    # The ids the other tests rely on stay as they were.
    ids = {s.telegram_id: (s.role, s.department) for s in settings.staff}
    assert ids[9000][0] == "admin" and ids[9001][0] == "triage" and ids[9004][0] == "grid"
    assert ids[9002] == ("department", "water") and ids[9003] == ("department", "housing")
    assert ids[9005][0] == "leader"


def test_a_missing_officer_is_named():
    settings = base_settings()
    without_water = replace(
        settings, staff=tuple(s for s in settings.staff if s.department != "water")
    )
    assert departments_without_staff(without_water) == ["水务局"]
    roles = demo_roles(without_water)
    identities = {uid: f"身份{uid}" for uid in roles}
    intro = demo_intro(without_water, identities, roles)
    assert intro[-1] == "注意：这些部门在 config.toml 中没有办事员，派给它们的案件无人签收：水务局"
    assert len(demo_intro(settings, identities, demo_roles(settings))) == len(intro) - 1


async def test_who_lists_everyone_by_role_with_their_chats(emulator):
    settings = base_settings()
    identities, groups = add_people_from_settings(emulator, settings)
    out = io.StringIO()
    await run_terminal_chat(
        emulator,
        identities,
        groups,
        RESIDENT,
        input_lines=[":who"],
        out=out,
        roles=demo_roles(settings),
    )
    shown = out.getvalue()
    triage, leader = settings.telegram.triage_chat_id, settings.telegram.leader_chat_id
    in_order(
        shown,
        "【居民】",
        f"{RESIDENT}  居民王阿姨，仅私聊 ← 当前",
        "【企业】",
        f"{ENTERPRISE_USER}  企业赵经理，仅私聊",
        DEMO_CREDIT_CODE,
        "【分拨员",
        f"9001  分拨员小李，所在群：分拨中心（{triage}）",
        "【部门办事员",
        f"9002  水务局王工（水务局），所在群：水务局工作群（{settings.department('water').chat_id}）",
        "【网格员】",
        "9004  网格员陈姐（银星村第一网格），仅私聊",
        "【督办领导",
        f"9005  督办室张主任，所在群：督办室（{leader}）",
        "【系统管理员】",
        f"9000  系统管理员，所在群：分拨中心（{triage}）、督办室（{leader}）",
    )
    for dept in settings.departments:
        assert f"（{dept.name}），所在群：{dept.name}工作群（{dept.chat_id}）" in shown, dept.name
    assert len(identities) == len(DEMO_RESIDENTS) + len(settings.staff)


# ---------------------------------------------------------------- the whole flow in run_demo


async def test_demo_plays_a_case_from_report_to_rating(tmp_path, model_path):
    """A new user's first case through `whistle demo`: no :to, only numbers and text."""
    settings = await demo_settings(tmp_path, model_path)
    script = [
        "/report",
        f":wait {texts.ASK_DESCRIPTION}",
        WATER_TEXT,
        f":wait {texts.ASK_PHOTO}",
        ":photo 水管破了",
        ":wait 位置",
        ":loc 28.37 112.82",
        f":wait {texts.SUMMARY_TITLE}",
        "1",
        ":wait 已受理",
        ":as 分拨员小李",
        f":wait {WATER_TEXT}",
        "1",
        f":wait {texts.DONE_DISPATCHED.format(department='水务局')}",
        ":as 水务局王工",
        f":wait {WATER_TEXT}",
        "1",
        ":wait 已签收",
        "1",
        f":wait {texts.ASK_RESOLUTION}",
        RESULT_TEXT,
        f":wait {texts.ASK_RESOLUTION_PHOTO}",
        ":photo 修好的水管",
        f":wait {texts.RESOLVED_OK.split('{')[0]}",
        ":as 居民王阿姨",
        ":wait 回访",
        "1",
        f":wait {texts.SURVEY_THANKS.split('（')[0]}",
        ":quit",
    ]
    out = io.StringIO()
    await asyncio.wait_for(run_demo(settings, input_lines=script, out=out), TIMEOUT)
    shown = out.getvalue()
    in_order(
        shown,
        "试一试：/report",
        f"现在的身份：居民王阿姨（{RESIDENT}）",
        "[1] ✅ 确认提交",
        "（已点击“✅ 确认提交”）",
        "已受理，编号 WC-",
        f"现在的身份：分拨员小李（{TRIAGE_STAFF}）",
        "[分拨中心]",
        "（已点击“✅ 确认派至 水务局”）",
        "（之后输入的文字 → 发送到 分拨中心",
        f"现在的身份：水务局王工（{WATER_STAFF}）",
        "[水务局工作群]",
        "（已点击“✍️ 签收”）",
        "（已点击“✅ 办结”）",
        texts.ASK_RESOLUTION,
        "↳ 请直接输入回复 → 发送到 水务局工作群",
        f"水务局王工 → 水务局工作群> {RESULT_TEXT}",
        texts.ASK_RESOLUTION_PHOTO,
        "水务局王工 → 水务局工作群> :photo 修好的水管",
        "已办结（WC-",
        "现在的身份：居民王阿姨",
        "回访",
        f"办理结果：{RESULT_TEXT}",
        "（已点击“😊 满意”）",
        "感谢您的评价（满意）",
    )
    assert texts.OFFER_REPORT not in shown  # no typed text strayed into a private chat
    assert "（等待" not in shown  # every :wait saw what it waited for
    [case] = await demo_cases(settings)
    assert (case.text, case.department_code, len(case.photos)) == (WATER_TEXT, "water", 1)
    assert (case.latitude, case.longitude) == (28.37, 112.82)
    assert case.resolution == RESULT_TEXT and case.resolution_photo
    assert (case.status, case.satisfaction) == (CLOSED, "satisfied")


async def test_demo_handles_the_last_line_of_a_script(tmp_path, model_path):
    """A script may end right after a line: the bot still takes it before the demo stops."""
    settings = await demo_settings(tmp_path, model_path)
    script = [
        ":as 企业赵经理",
        "/enterprise",
        f":wait {texts.ASK_ENTERPRISE_NAME.splitlines()[-1]}",
        "望城智造有限公司",
        f":wait {texts.ASK_CREDIT_CODE}",
        DEMO_CREDIT_CODE,
        ":wait 所属行业",
        "制造业",
        ":wait 哪个园区",
        "/skip",
    ]
    await asyncio.wait_for(run_demo(settings, input_lines=script, out=io.StringIO()), TIMEOUT)
    engine = make_engine(settings.database_url)
    try:
        async with session_scope(engine) as session:
            [enterprise] = (await session.exec(sql_select(Enterprise))).all()
    finally:
        await engine.dispose()
    assert enterprise.credit_code == DEMO_CREDIT_CODE


# ---------------------------------------------------------------- where typed text goes


async def test_typed_reply_goes_to_the_group_that_asked(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    triage_post = await bot.group_post(bot.triage_chat, ref)
    await bot.press(TRIAGE_STAFF, triage_post, "确认")
    water = bot.department_chat("water")
    post = await bot.group_post(water, ref)
    await bot.press(WATER_STAFF, post, "签收")
    await bot.settle()
    transcript = await chat(
        bot,
        [
            "1",
            f":wait {texts.ASK_RESOLUTION}",  # 办结 on the post redrawn after 签收
            ":as 居民王阿姨",
            ":as 水务局王工",  # away and back: still answering in the group
            RESULT_TEXT,
            f":wait {texts.ASK_RESOLUTION_PHOTO}",
            "/skip",
            f":wait {texts.RESOLVED_OK.split('{')[0]}",
            ":to",
            "/help",
            ":wait /report",
            ":quit",
        ],
        start_as=WATER_STAFF,
    )
    in_order(
        transcript,
        "水务局王工> 1",
        "（已点击“✅ 办结”）",
        "（之后输入的文字 → 发送到 水务局工作群；输入 :to 可改回私聊）",
        "↳ 请直接输入回复 → 发送到 水务局工作群",
        "现在的身份：水务局王工（9002），文字 → 发送到 水务局工作群",
        f"水务局王工 → 水务局工作群> {RESULT_TEXT}",
        "水务局王工 → 水务局工作群> /skip",
        "已办结（",
        "之后的文字将发到私聊。",
        "水务局王工> /help",
        "[私聊]",
    )
    sent = user_messages(bot.emu, water, WATER_STAFF)
    [answer] = [m for m in sent if m.get("text") == RESULT_TEXT]
    prompt = next(m for m in bot.emu.messages(water) if texts.ASK_RESOLUTION in m.content)
    assert answer["reply_to_message"]["message_id"] == prompt.message_id  # as ForceReply does
    assert [m["text"] for m in user_messages(bot.emu, WATER_STAFF, WATER_STAFF)] == ["/help"]
    case = await bot.case(ref)
    assert case.resolution == RESULT_TEXT and case.resolution_photo is None


async def test_to_picks_a_group_by_name_and_refuses_others(make_bot):
    bot = await make_bot()
    transcript = await chat(
        bot,
        [
            ":to 工作群",
            ":to 分拨",
            ":to -1000000000001",
            ":to 私聊",
            ":as 李",
            ":as 没有这人",
            "：to　水务局",
            "：quit",
        ],
        start_as=WATER_STAFF,
    )  # as a Chinese input method types them
    in_order(
        transcript,
        "之后的文字将发到“水务局工作群”。",
        "水务局王工不在群 分拨 中。",
        "水务局王工不在群 -1000000000001 中。",
        "之后的文字将发到私聊。",
        "“李”对应多个身份：分拨员小李（9001）、市政局李工（9006）",
        "没有这个身份：没有这人。",
        "之后的文字将发到“水务局工作群”。",
        "再见！",
    )


# ---------------------------------------------------------------- numbers, lines, length


async def test_digits_press_buttons_only_when_buttons_show(make_bot):
    bot = await make_bot(to_triage())
    transcript = await chat(
        bot,
        [
            "/report",
            f":wait {texts.ASK_DESCRIPTION}",
            WATER_TEXT,
            f":wait {texts.ASK_PHOTO}",
            "/skip",
            ":wait 位置",
            "12",
            f":wait {texts.SUMMARY_TITLE}",  # no buttons showing: "12" is the address
            "7",
            ":wait 1",  # three buttons showing: 7 is text, not a press
            "3",
            ":wait 取消",
            ":quit",
        ],
    )
    in_order(
        transcript,
        "居民王阿姨> 12",
        texts.SUMMARY_ADDRESS.format(address="12"),
        "[1] ✅ 确认提交  [2] ✏️ 修改  [3] ❌ 取消",
        "居民王阿姨> 7",
        "（刚显示的消息只有 3 个按钮，“7”作为文字发送）",
        "居民王阿姨> 3",
        "（已点击“❌ 取消”）",
    )
    assert "（已点击" not in transcript.split("居民王阿姨> 3")[0]
    sent = [m.get("text") for m in user_messages(bot.emu, RESIDENT, RESIDENT)]
    assert "12" in sent and "7" in sent and "3" not in sent
    assert await bot.cases() == []


async def test_numbers_press_the_reply_keyboard_it_brought(make_bot):
    bot = await make_bot()
    transcript = await chat(
        bot, ["/start", ":wait 1", "1", ":wait 1", "2", ":wait 1", "99", ":wait 1", ":quit"]
    )
    # The keyboard came with the greeting; once the bot asks for a description, numbers are
    # text (a hint says how to press the keyboard's button anyway).
    in_order(
        transcript,
        "键盘：[1] 我要反映",
        "（已发送“我要反映”）",
        texts.ASK_DESCRIPTION,
        "居民王阿姨> 2",
        "（刚显示的消息没有按钮，“2”作为文字发送；要点更早消息上的按钮请用 :press 2）",
        "居民王阿姨> 99",
    )
    assert "按钮" not in transcript.split("居民王阿姨> 99")[1]  # 99 is no button anywhere
    sent = [m.get("text") for m in user_messages(bot.emu, RESIDENT, RESIDENT)]
    assert sent == ["/start", "我要反映", "2", "99"]


async def test_multiline_input_is_one_message(make_bot):
    bot = await make_bot(to_triage())
    transcript = await chat(
        bot,
        [
            "/report",
            f":wait {texts.ASK_DESCRIPTION}",
            "小区停水两天了，\\",
            "自来水管道一直没人来修。\\",
            "",  # a blank line ends it
            f":wait {texts.ASK_PHOTO}",
            "/skip",
            ":wait 位置",
            "高塘岭街道\n新城社区3栋",  # a pasted block: one message
            f":wait {texts.SUMMARY_TITLE}",
            ":wait 1\n:as 9001\n:who",  # a pasted block of commands: run one by one
            ":as 居民王阿姨",
            "结尾的反斜杠也会发送\\",
        ],
    )
    in_order(
        transcript,
        "居民王阿姨> 小区停水两天了，\\",
        "… 自来水管道一直没人来修。\\",
        "… ",
        "📝 内容：小区停水两天了，\n    自来水管道一直没人来修。",
        "📍 位置：高塘岭街道\n    新城社区3栋",
        "现在的身份：分拨员小李",
        "可用身份",
        "居民王阿姨> 结尾的反斜杠也会发送\\",
    )
    sent = [m.get("text") for m in user_messages(bot.emu, RESIDENT, RESIDENT)]
    assert "小区停水两天了，\n自来水管道一直没人来修。" in sent
    assert "高塘岭街道\n新城社区3栋" in sent
    assert sent[-1] == "结尾的反斜杠也会发送"  # end of input sends what was waiting


async def test_long_chinese_text_round_trip(make_bot):
    bot = await make_bot(to_triage())
    transcript = await chat(
        bot,
        [
            "/report",
            f":wait {texts.ASK_DESCRIPTION}",
            LONG_TEXT,
            f":wait {texts.ASK_PHOTO}",
            "/skip",
            ":wait 位置",
            "/skip",
            f":wait {texts.SUMMARY_TITLE}",
            "1",
            ":wait 已受理",
            ":quit",
        ],
    )
    assert len(LONG_TEXT) == 1500
    assert f"居民王阿姨> {LONG_TEXT}\n" in transcript
    assert texts.SUMMARY_TEXT.format(text=LONG_TEXT) in transcript  # shown whole
    [case] = await bot.cases()
    assert case.text == LONG_TEXT


# ---------------------------------------------------------------- the keyboard reader


READER = """
import asyncio, sys
from emulator import StdinInput

async def main():
    source = StdinInput()
    assert source.interactive and not source.echo
    while (line := await source.read("> ")) is not None:
        print(f"GOT {len(line)} {line.count(chr(10))} {line[:4]}|{line[-4:]}", flush=True)
    source.close()
    print("END", flush=True)

asyncio.run(main())
"""


class Screen:
    """What a program writes to its pseudo-terminal, read as it comes."""

    def __init__(self, fd: int):
        self.fd, self.seen, self.position = fd, b"", 0

    def until(self, marker: bytes, timeout: float = 20) -> None:
        """Wait for `marker` after the previous one."""
        deadline = time.monotonic() + timeout
        while marker not in self.seen[self.position :] and time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    self.seen += os.read(self.fd, 65536)
                except OSError:
                    break
        found = self.seen.find(marker, self.position)
        assert found >= 0, self.seen[self.position :].decode(errors="replace")[-500:]
        self.position = found + len(marker)


def test_keyboard_lines_are_not_cut_and_a_paste_is_one_line():
    """On a real terminal the kernel's line editing would cut a line at 4,095 bytes
    (1,365 Chinese characters): the reader must get all 1,500."""
    master, slave = pty.openpty()
    env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm"}
    child = subprocess.Popen(
        [sys.executable, "-c", READER],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    screen = Screen(master)
    try:
        screen.until(b"> ")
        data = LONG_TEXT.encode()
        for start in range(0, len(data), 512):  # as a terminal delivers a paste
            os.write(master, data[start : start + 512])
            time.sleep(0.005)
        os.write(master, b"\r")
        screen.until(f"GOT 1500 0 {LONG_TEXT[:4]}|{LONG_TEXT[-4:]}".encode())
        screen.until(b"> ")
        os.write(master, "\x1b[200~第一行\n第二行\x1b[201~\r".encode())  # bracketed paste
        screen.until(b"GOT 7 1 ")  # 7 characters, one newline: one line
        screen.until(b"> ")
        os.write(master, b"\x04")  # Ctrl-D
        screen.until(b"END")
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
        os.close(master)


def test_piped_input_with_broken_bytes_is_read_leniently():
    read, write = os.pipe()
    os.write(write, "第一行\n".encode() + b"\xe4\xb8\n" + "最后".encode())
    os.close(write)
    stdin = open(read, encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        source = StdinInput(stdin=stdin, stdout=io.StringIO())
        assert source.echo and not source.interactive

        async def read_all() -> list:
            lines = []
            while (line := await source.read("> ")) is not None:
                lines.append(line)
            return lines

        assert asyncio.run(read_all()) == ["第一行", "\ufffd", "最后"]
    finally:
        stdin.close()


# ---------------------------------------------------------------- the enterprise user


async def test_enterprise_user_registers_and_reports(make_bot):
    bot = await make_bot(to_triage())
    registered = texts.ENTERPRISE_REGISTERED.split("{")[0]
    demand = "园区门口道路积水严重，货车进不来，影响正常发货"

    async def script():
        yield ":as 企业赵经理"
        yield "/enterprise"
        yield f":wait {texts.ASK_ENTERPRISE_NAME.splitlines()[-1]}"
        yield "望城智造有限公司"
        yield f":wait {texts.ASK_CREDIT_CODE}"
        position = len(bot.emu.messages(ENTERPRISE_USER))
        yield DEMO_CREDIT_CODE
        # Whatever else registration asks (a button or a word), answer until the demand is
        # asked for.
        for _ in range(4):
            asked = await bot.emu.wait_for_message(
                ENTERPRISE_USER, lambda m: registered not in m.content, after=position
            )
            position = asked.index + 1
            if texts.ASK_DEMAND in asked.content:
                break
            yield "1" if asked.buttons else "智能制造"
        yield demand
        yield f":wait {texts.ASK_PHOTO}"
        yield "/skip"
        yield ":wait 位置"
        yield "/skip"
        yield f":wait {texts.SUMMARY_TITLE_ENTERPRISE.split('（')[0]}"
        yield "1"
        yield ":wait 已受理"
        yield ":quit"

    transcript = await chat(bot, script())
    in_order(
        transcript,
        "现在的身份：企业赵经理",
        f"企业赵经理> {DEMO_CREDIT_CODE}",
        "企业登记成功：望城智造有限公司",
        texts.ASK_DEMAND,
        f"企业赵经理> {demand}",
        "请确认企业诉求（望城智造有限公司）",
        "（已点击“✅ 确认提交”）",
        "已受理",
    )
    assert "（等待" not in transcript
    [case] = await bot.cases()
    assert (case.kind, case.text) == ("enterprise", demand)
    async with bot.services.session() as session:
        enterprise = await session.get(Enterprise, case.enterprise_id)
    assert enterprise.credit_code == DEMO_CREDIT_CODE
