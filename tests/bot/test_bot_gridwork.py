"""End to end through the bot against the emulator: 吹哨报到 in the grid — 交网格办理, the grid
worker's 签收 and 吹哨 to 水务局, its 报到 (签收) told to the worker, 办结, 核查通过 → 回访;
核查不通过, a grid without staff (walk up), the street, forged button data, a second press."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlmodel import select

from bot import callbacks as cb
from bot import duties, texts
from bot.run import run_demo
from models.gridmap import GridMap
from models.tables import (
    DISPATCHED,
    GRID_ASSIGNED,
    GRID_SIGNED,
    RESOLVED,
    SIGNED,
    TRIAGE,
    VERIFYING,
    Case,
    CaseEvent,
)
from tests.emulator.test_terminal import TIMEOUT, demo_cases, demo_settings, in_order
from tests.test_bot_kit import RESIDENT, TRIAGE_STAFF, WATER_STAFF, base_settings, to_triage

pytest_plugins = ["tests.test_bot_kit"]


@pytest.fixture
def bot_engine(engine):
    """Each test on both stores: SQLite, and PostgreSQL when TEST_DATABASE_URL is set."""
    return engine


WATER_TEXT = "小区停水两天了还没来水，自来水管道一直没人来修"
GRID_STAFF = 9004  # 网格员陈姐, WC-YLD-YX-01
COMMUNITY_STAFF = 9013  # 银星村片长老刘, WC-YLD-YX (the community above YX-01 … YX-05)
STREET_STAFF = 9014  # 月亮岛街道周主任, WC-YLD
IN_YINXING_01 = (28.37, 112.82)


def settings_with(*, verify: bool = True, grid_first: tuple[str, ...] = ()):
    settings = to_triage(base_settings())
    departments = tuple(
        replace(d, verify_by_grid=verify and d.code == "water") for d in settings.departments
    )
    return replace(
        settings, departments=departments, routing=replace(settings.routing, grid_first=grid_first)
    )


async def grid_bot(make_bot, settings=None):
    bot = await make_bot(settings or settings_with())
    bot.services.gridmap = GridMap.from_settings(bot.settings)
    return bot


async def events(bot, case_id: int) -> list[CaseEvent]:
    async with bot.services.session() as session:
        stmt = select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
        return list((await session.exec(stmt)).all())


async def hand_to_grid(bot, ref: str):
    """Triage presses 交网格办理 on the case's post."""
    post = await bot.group_post(bot.triage_chat, ref)
    answer = await bot.press(TRIAGE_STAFF, post, "交网格办理")
    await bot.settle()
    return post, answer


async def answer_prompt(bot, user: int, chat: int, words: str):
    """Answer the ForceReply the bot just asked `user` in `chat`; the bot's reply."""
    ask = await bot.reply(user, chat)
    assert ask.asks(user), ask.content
    return await bot.say(user, words, chat=chat)


async def resolve_with(bot, user: int, chat: int, result: str):
    """办结 after the press: the result, no photo; the bot's last reply."""
    await answer_prompt(bot, user, chat, result)  # → 办结照片?
    return await bot.say(user, "/skip", chat=chat)


async def test_grid_worker_whistles_water_bureau_reports_resolves_and_the_grid_verifies(make_bot):
    bot = await grid_bot(make_bot)
    ref = await bot.report(RESIDENT, WATER_TEXT, location=IN_YINXING_01)
    assert (await bot.case(ref)).status == TRIAGE

    triage_post, _ = await hand_to_grid(bot, ref)
    case = await bot.case(ref)
    assert (case.status, case.handling_grid_code, case.started_in_grid) == (
        GRID_ASSIGNED,
        "WC-YLD-YX-01",
        True,
    )
    assert "已交 银星村第一网格 办理" in triage_post.content
    told = await bot.emu.wait_for_message(RESIDENT, lambda m: "就近办理" in m.content, timeout=5)
    assert "银星村第一网格" in told.content

    # The grid worker gets it in private, signs, then blows the whistle to 水务局.
    post = await bot.group_post(GRID_STAFF, ref)
    assert [t for t, _ in post.buttons] == ["✍️ 签收", "📣 吹哨"]
    assert "办理网格：月亮岛街道 › 银星村 › 银星村第一网格" in post.content
    await bot.press(GRID_STAFF, post, "签收")
    assert (await bot.case(ref)).status == GRID_SIGNED
    assert [t for t, _ in post.buttons] == ["✅ 办结", "📣 吹哨"]
    await bot.press(GRID_STAFF, post, "吹哨")
    labels = [t for t, _ in post.buttons]
    assert labels[0] == "🏛 吹哨至 月亮岛街道" and "水务局" in labels and labels[-1] == "↩️ 返回"
    await bot.press(GRID_STAFF, post, "水务局")
    ok = await answer_prompt(bot, GRID_STAFF, GRID_STAFF, "主管道破裂，需要水务局抢修")
    assert ok.content == texts.WHISTLED_OK.format(ref=ref, target="水务局")
    await bot.settle()

    case = await bot.case(ref)
    assert (case.status, case.department_code, case.whistled_by, case.whistle_level) == (
        DISPATCHED,
        "water",
        GRID_STAFF,
        "grid",
    )
    assert case.whistled_at == bot.clock() and case.sign_by is not None
    [whistled] = [e for e in await events(bot, case.id) if e.action == "whistled"]
    assert whistled.details["reason"] == "主管道破裂，需要水务局抢修"
    assert whistled.details["from_level"] == "grid"

    # 水务局 reports for duty (签收): the worker who whistled is told, with the time it took.
    water = bot.department_chat("water")
    dept_post = await bot.group_post(water, "网格吹哨")
    assert "网格员陈姐" in dept_post.content and "主管道破裂" in dept_post.content
    assert "🏘 所在网格：月亮岛街道 › 银星村 › 银星村第一网格" in dept_post.content
    bot.clock.advance(minutes=30)
    await bot.press(WATER_STAFF, dept_post, "签收")
    await bot.settle()
    reported = await bot.emu.wait_for_message(
        GRID_STAFF, lambda m: "已报到" in m.content, timeout=5
    )
    assert reported.content == texts.NOTICE_REPORTED.format(
        department="水务局", ref=ref, span="30分钟"
    )
    assert (await bot.case(ref)).status == SIGNED

    # 办结 by 水务局 waits for the grid's 核查.
    await bot.press(WATER_STAFF, dept_post, "办结")
    await resolve_with(bot, WATER_STAFF, water, "已更换破裂管段，恢复供水")
    await bot.settle()
    case = await bot.case(ref)
    assert case.status == VERIFYING and case.verify_by is not None
    assert case.handling_grid_code == "WC-YLD-YX-01"
    assert not any("已办结" in m.content for m in bot.emu.messages(RESIDENT))
    check = await bot.group_post(GRID_STAFF, "待核查")
    assert "已更换破裂管段" in check.content
    assert [t for t, _ in check.buttons] == ["✅ 核查通过", "❌ 核查不通过"]

    # 核查通过: resolved by the department, the reporter hears the result (then the 回访).
    pressed = check.button_data("核查通过")
    await bot.press(GRID_STAFF, check, "核查通过")
    await bot.settle()
    case = await bot.case(ref)
    assert (case.status, case.resolved_level) == (RESOLVED, "department")
    done = await bot.emu.wait_for_message(RESIDENT, lambda m: "已办结" in m.content, timeout=5)
    assert "已更换破裂管段" in done.content
    await duties.run_followup_pass(bot.app, bot.clock())  # the 回访 of a verified case
    await bot.settle()
    survey = await bot.emu.wait_for_message(RESIDENT, lambda m: "回访" in m.content, timeout=5)
    assert ref in survey.content and survey.buttons[0][0] == "😊 满意"
    timeline = await bot.say(GRID_STAFF, f"/case {ref}")
    assert "交网格办理：月亮岛街道 › 银星村 › 银星村第一网格" in timeline.content
    assert "吹哨：至 水务局，理由：主管道破裂，需要水务局抢修" in timeline.content
    assert "核查通过" in timeline.content
    actions = [e.action for e in await events(bot, case.id)]
    assert actions[actions.index("to_grid") :] == [
        "to_grid",
        "grid_signed",
        "whistled",
        "signed",
        "to_verify",
        "verified",
    ]

    # A second press of the old button: refused, nothing changes.
    again = await bot.press_data(GRID_STAFF, check, pressed)
    assert again.get("show_alert") and again.get("text") == texts.BUTTON_EXPIRED
    assert (await bot.case(ref)).status == RESOLVED


async def test_failed_verification_goes_back_to_the_department(make_bot):
    bot = await grid_bot(make_bot)
    ref = await bot.report(RESIDENT, WATER_TEXT, location=IN_YINXING_01)
    post = await bot.group_post(bot.triage_chat, ref)
    await bot.press(TRIAGE_STAFF, post, "确认派至 水务局")
    await bot.settle()
    water = bot.department_chat("water")
    dept_post = await bot.group_post(water, ref)
    await bot.press(WATER_STAFF, dept_post, "签收")
    await bot.press(WATER_STAFF, dept_post, "办结")
    await resolve_with(bot, WATER_STAFF, water, "已修好")
    await bot.settle()
    check = await bot.group_post(GRID_STAFF, "待核查")

    await bot.press(GRID_STAFF, check, "核查不通过")
    short = await answer_prompt(bot, GRID_STAFF, GRID_STAFF, "好")  # too short: asked again
    assert short.content == texts.REASON_TOO_SHORT.format(min=2)
    back = await bot.say(GRID_STAFF, "现场仍然没有水，阀门未打开", chat=GRID_STAFF)
    assert back.content == texts.VERIFY_FAILED_OK.format(ref=ref)
    await bot.settle()
    case = await bot.case(ref)
    assert case.status == SIGNED and case.department_code == "water"
    back = await bot.group_post(water, "核查不通过")
    assert "阀门未打开" in back.content and back.buttons[0][0] == "✅ 办结"
    assert not any("已办结" in m.content for m in bot.emu.messages(RESIDENT))


async def test_a_grid_without_staff_walks_up_and_nobody_anywhere_stays_with_triage(make_bot):
    bot = await grid_bot(make_bot)
    # 清溪菜市场 lies in 银星村第二网格, which has no staff: the community's 片长 gets it.
    ref = await bot.report(RESIDENT, "清溪菜市场门口水管爆了，水流了一地")
    assert (await bot.case(ref)).grid_code == "WC-YLD-YX-02"
    await hand_to_grid(bot, ref)
    case = await bot.case(ref)
    assert (case.status, case.handling_grid_code) == (GRID_ASSIGNED, "WC-YLD-YX")
    post = await bot.group_post(COMMUNITY_STAFF, ref)
    assert not any(ref in m.content for m in bot.emu.messages(GRID_STAFF))

    # The 片长 whistles up to the street, which resolves it (大事不出街镇).
    await bot.press(COMMUNITY_STAFF, post, "吹哨")
    await bot.press(COMMUNITY_STAFF, post, "吹哨至 月亮岛街道")
    await answer_prompt(bot, COMMUNITY_STAFF, COMMUNITY_STAFF, "涉及多个村，需要街道协调")
    await bot.settle()
    case = await bot.case(ref)
    assert (case.status, case.handling_grid_code, case.whistle_level) == (
        GRID_ASSIGNED,
        "WC-YLD",
        "community",
    )
    street_post = await bot.group_post(STREET_STAFF, "请街道（镇）签收办理")
    assert "涉及多个村" in street_post.content
    await bot.press(STREET_STAFF, street_post, "吹哨")
    assert not any("吹哨至" in t for t, _ in street_post.buttons)  # the street is the top
    await bot.press(STREET_STAFF, street_post, "返回")
    await bot.press(STREET_STAFF, street_post, "签收")
    await bot.press(STREET_STAFF, street_post, "办结")
    await resolve_with(bot, STREET_STAFF, STREET_STAFF, "街道协调抢修，已恢复")
    await bot.settle()
    case = await bot.case(ref)
    assert (case.status, case.resolved_level) == (RESOLVED, "street")
    await bot.emu.wait_for_message(RESIDENT, lambda m: "街道协调抢修" in m.content, timeout=5)

    # 梅园社区 (高塘岭街道) has no grid staff at all: the case stays with triage, who is told.
    ref = await bot.report(RESIDENT, "石门苑小区停水两天了，自来水一直没来")
    assert (await bot.case(ref)).grid_code == "WC-GTL-MY-02"
    _, answer = await hand_to_grid(bot, ref)
    assert answer.get("show_alert") and answer.get("text") == texts.ERROR_TEXTS["grid_no_staff"]
    assert (await bot.case(ref)).status == TRIAGE


async def test_grid_first_at_intake_forged_buttons_and_strangers_are_refused(make_bot):
    bot = await grid_bot(make_bot, settings_with(grid_first=("water",)))
    ref = await bot.report(RESIDENT, WATER_TEXT, location=IN_YINXING_01)
    case = await bot.case(ref)
    assert (case.status, case.handling_grid_code) == (GRID_ASSIGNED, "WC-YLD-YX-01")
    post = await bot.group_post(GRID_STAFF, ref)
    triage_post = await bot.group_post(bot.triage_chat, ref)
    assert "网格事项，已交 银星村第一网格 办理" in triage_post.content

    # Another grid's 片长 above may act; the street's staff too; a department may not.
    refused = await bot.press(WATER_STAFF, post, "签收")
    assert refused.get("show_alert") and (await bot.case(ref)).status == GRID_ASSIGNED
    # Forged data: malformed, an unknown verb, another case's id, a whistle to nowhere.
    for data in ("gsign:xx:1", "zzz:1:1", cb.make(cb.GRID_SIGN, case.id + 999, case.version)):
        answer = await bot.press_data(GRID_STAFF, post, data)
        assert answer.get("show_alert") or answer.get("text"), data
    await bot.press(GRID_STAFF, post, "签收")
    bogus = cb.make(cb.WHISTLE_TO, case.id, (await bot.case(ref)).version, "nowhere")
    await bot.press_data(GRID_STAFF, post, bogus)
    refusal = await answer_prompt(bot, GRID_STAFF, GRID_STAFF, "需要部门支援处理")
    assert refusal.content == "部门“nowhere”不存在或已停用"
    case = await bot.case(ref)
    assert case.status == GRID_SIGNED and case.department_code is None

    # A second 签收 with the same (now old) button: refused politely, nothing changes.
    first = cb.make(cb.GRID_SIGN, case.id, case.version - 1)
    second = await bot.press_data(GRID_STAFF, post, first)
    assert second.get("show_alert")
    assert (await bot.case(ref)).status == GRID_SIGNED


async def test_grid_staff_blow_the_whistle_from_the_field(make_bot):
    bot = await grid_bot(make_bot)
    refused = await bot.say(RESIDENT, "/whistle")
    assert refused.content == texts.FIELD_REPORT_NOT_GRID
    assert (await bot.say(GRID_STAFF, "/whistle")).content == texts.ASK_FIELD_REPORT
    short = await bot.say(GRID_STAFF, "漏")
    assert short.content == texts.DESCRIPTION_TOO_SHORT.format(min=4) and not await bot.cases()
    ok = await bot.say(GRID_STAFF, "福临巷路口井盖破损，晚上有行人绊倒的危险")
    [case] = await bot.cases()
    assert ok.content == texts.FIELD_REPORT_OK.format(ref=case.ref, grid="银星村第一网格")
    assert (case.channel, case.grid_code, case.located_by) == (
        "grid_report",
        "WC-YLD-YX-01",
        "staff",
    )
    assert (case.status, case.handling_grid_code, case.started_in_grid) == (
        GRID_ASSIGNED,
        "WC-YLD-YX-01",
        True,
    )
    await bot.settle()
    post = await bot.group_post(GRID_STAFF, "请签收办理")
    assert case.ref in post.content and [t for t, _ in post.buttons] == ["✍️ 签收", "📣 吹哨"]
    await bot.group_post(bot.triage_chat, case.ref)  # triage sees every case


async def test_the_grid_gets_its_own_lights_in_private(make_bot):
    bot = await grid_bot(make_bot)
    for job in bot.app.job_queue.get_jobs_by_name("followup"):
        job.schedule_removal()  # the test drives the passes with its clock
    ref = await bot.report(RESIDENT, WATER_TEXT, location=IN_YINXING_01)
    await hand_to_grid(bot, ref)
    case = await bot.case(ref)
    assert case.sign_by == bot.services.rules.grid_deadlines(case.dispatched_at)[0]
    bot.clock.now = case.sign_by + timedelta(minutes=5)
    await duties.run_followup_pass(bot.app, bot.clock())
    await bot.settle()
    alarm = await bot.emu.wait_for_message(GRID_STAFF, lambda m: "超时报警" in m.content, timeout=5)
    assert ref in alarm.content and "签收已超时" in alarm.content
    assert [t for t, _ in alarm.buttons] == ["✍️ 签收", "📣 吹哨"]
    assert not any("超时报警" in m.content for m in bot.emu.messages(COMMUNITY_STAFF))


async def test_the_demo_plays_the_grid_path_of_the_readme(tmp_path, model_path):
    """README's grid walkthrough through `whistle demo`: 交网格办理 → 签收 → 吹哨 市政局 → 报到 →
    办结 → 核查通过 → 回访 (市政局 has verify_by_grid in config.toml)."""
    settings = await demo_settings(tmp_path, model_path)
    text = "福临巷路口的井盖破损了，晚上有人绊倒"
    script = [
        "/report",
        f":wait {texts.ASK_DESCRIPTION}",
        text,
        f":wait {texts.ASK_PHOTO}",
        "/skip",
        ":wait 位置",
        ":loc 28.37 112.82",
        f":wait {texts.SUMMARY_TITLE}",
        "1",
        ":wait 已受理",
        ":as 分拨员小李",
        f":wait {text}",
        "6",
        ":wait 已交 银星村第一网格 办理",
        ":as 网格员陈姐",
        ":wait 请签收办理",
        "1",
        ":wait 已签收",
        "2",
        ":wait 2",
        ":press 3",
        ":wait 吹哨理由",
        "井盖需要市政更换",
        ":wait 已吹哨",
        ":as 市政局李工",
        ":wait 网格吹哨",
        "1",
        ":wait 已签收",
        "1",
        f":wait {texts.ASK_RESOLUTION}",
        "已更换新井盖",
        f":wait {texts.ASK_RESOLUTION_PHOTO}",
        "/skip",
        ":wait 已办结",
        ":as 网格员陈姐",
        ":wait 待核查",
        "1",
        ":wait 核查通过",
        ":as 居民王阿姨",
        ":wait 回访",
        ":quit",
    ]
    out = io.StringIO()
    await asyncio.wait_for(run_demo(settings, input_lines=script, out=out), TIMEOUT)
    shown = out.getvalue()
    assert "（等待" not in shown, shown  # every :wait saw what it waited for
    in_order(
        shown,
        "（已点击“🏘 交网格办理”）",
        "（已点击“✍️ 签收”）",
        "（已点击“市政局”）",
        "市政局 已报到",
        "（已点击“✅ 核查通过”）",
        "办理结果：已更换新井盖",
    )
    [case] = await demo_cases(settings)
    assert (case.department_code, case.resolved_level, case.whistle_level) == (
        "municipal",
        "department",
        "grid",
    )


async def test_street_staff_must_belong_to_a_street(engine):
    from models import reference
    from models.engine import session_scope
    from whistle.config import ConfigError, StaffConfig

    settings = base_settings()
    wrong = StaffConfig(telegram_id=9099, name="街道新人", role="street", grid="WC-YLD-YX")
    settings = replace(settings, staff=(*settings.staff, wrong))
    with pytest.raises(
        ConfigError, match="9099 的 grid 应为街道（镇）级网格编码，而不是 WC-YLD-YX"
    ):
        async with session_scope(engine) as session:
            await reference.sync_reference_data(session, settings)


async def test_resolved_in_the_grid_and_unsatisfied_goes_back_to_the_grid(make_bot):
    bot = await grid_bot(make_bot, settings_with(grid_first=("water",)))
    for job in bot.app.job_queue.get_jobs_by_name("followup"):
        job.schedule_removal()
    ref = await bot.report(RESIDENT, WATER_TEXT, location=IN_YINXING_01)
    post = await bot.group_post(GRID_STAFF, "请签收办理")
    await bot.press(GRID_STAFF, post, "签收")
    await bot.press(GRID_STAFF, post, "办结")
    ask = await bot.reply(GRID_STAFF)
    assert ask.asks(GRID_STAFF) and ask.content.endswith(texts.ASK_RESOLUTION)
    assert (await bot.say(GRID_STAFF, "已联系物业关闭总阀并修好")).content.endswith(
        texts.ASK_RESOLUTION_PHOTO
    )
    bot.emu.send_photo(GRID_STAFF)
    assert (await bot.reply(GRID_STAFF)).content == texts.GRID_RESOLVED_OK.format(ref=ref)
    await bot.settle()
    case = await bot.case(ref)
    assert (case.status, case.resolved_level, case.department_code) == (RESOLVED, "grid", None)
    assert case.resolution_photo
    done = await bot.emu.wait_for_message(RESIDENT, lambda m: "已办结" in m.content, timeout=5)
    assert "已联系物业关闭总阀并修好" in done.content and done.photo

    await duties.run_followup_pass(bot.app, bot.clock())
    await bot.settle()
    survey = await bot.emu.wait_for_message(RESIDENT, lambda m: "回访" in m.content, timeout=5)
    await bot.press(RESIDENT, survey, "不满意")
    await bot.reply(RESIDENT)  # 说说哪里不满意
    bot.emu.send_text(RESIDENT, "还是没有水")
    again = await bot.emu.wait_for_message(GRID_STAFF, lambda m: "重新办理" in m.content, timeout=5)
    assert "还是没有水" in again.content and again.buttons[0][0] == "✍️ 签收"
    case = await bot.case(ref)
    assert (case.status, case.handling_grid_code, case.resolved_level, case.reopen_count) == (
        GRID_ASSIGNED,
        "WC-YLD-YX-01",
        None,
        1,
    )


async def test_the_verify_light_runs_from_the_departments_resolution(seeded):
    """核查's window opens at the department's 办结 (resolved_at), and its SQL twin agrees."""
    from sqlalchemy import update

    from models import stats
    from models.deadlines import GREEN, RED, YELLOW, case_light
    from models.engine import session_scope

    now = datetime(2026, 11, 24, 2, 0)
    case = await seeded.case_in(VERIFYING, now)
    async with session_scope(seeded.engine) as session:  # dispatched three days before
        await session.exec(
            update(Case).where(Case.id == case.id).values(dispatched_at=now - timedelta(days=3))
        )
    async with session_scope(seeded.engine) as session:
        case = await session.get(Case, case.id)
    assert case.resolved_at == now and case.verify_by == seeded.rules.verify_deadline(now)
    window = case.verify_by - now
    for offset, light in (
        (window * 0.5, GREEN),
        (window * 0.9, YELLOW),
        (window + timedelta(minutes=1), RED),
    ):
        at = now + offset
        assert case_light(case, at, seeded.rules) == light
        is_red, is_yellow = stats.light_sql(at, seeded.rules.yellow_ratio, seeded.dialect)
        async with session_scope(seeded.engine) as session:
            row = (await session.exec(select(is_red, is_yellow).where(Case.id == case.id))).one()
        assert (bool(row[0]), bool(row[1])) == (light == RED, light == YELLOW), offset


async def test_grid_and_street_stats_show_what_stayed_in_the_grid_and_the_street(make_bot):
    """/stats of grid and street staff: 小事不出网格率 and 大事不出街镇率 over the cases that
    started in the grid and are done — one resolved in the grid, one by the street, one by
    水务局 after a whistle."""
    bot = await grid_bot(make_bot, settings_with(verify=False, grid_first=("water",)))
    refs = [await bot.report(RESIDENT, WATER_TEXT, location=IN_YINXING_01) for _ in range(3)]
    await bot.settle()
    in_grid, to_street, to_water = [await bot.group_post(GRID_STAFF, ref) for ref in refs]

    await bot.press(GRID_STAFF, in_grid, "签收")
    await bot.press(GRID_STAFF, in_grid, "办结")
    await resolve_with(bot, GRID_STAFF, GRID_STAFF, "已联系物业关闭总阀并修好")

    await bot.press(GRID_STAFF, to_street, "吹哨")
    await bot.press(GRID_STAFF, to_street, "吹哨至 月亮岛街道")
    await answer_prompt(bot, GRID_STAFF, GRID_STAFF, "涉及多个小区，需要街道协调")
    await bot.settle()
    street_post = await bot.group_post(STREET_STAFF, refs[1])
    await bot.press(STREET_STAFF, street_post, "签收")
    await bot.press(STREET_STAFF, street_post, "办结")
    await resolve_with(bot, STREET_STAFF, STREET_STAFF, "街道协调抢修，已恢复")

    await bot.press(GRID_STAFF, to_water, "吹哨")
    await bot.press(GRID_STAFF, to_water, "水务局")
    await answer_prompt(bot, GRID_STAFF, GRID_STAFF, "主管道破裂，需要水务局抢修")
    await bot.settle()
    water = bot.department_chat("water")
    dept_post = await bot.group_post(water, refs[2])
    await bot.press(WATER_STAFF, dept_post, "签收")
    await bot.press(WATER_STAFF, dept_post, "办结")
    await resolve_with(bot, WATER_STAFF, water, "已更换破裂管段，恢复供水")
    await bot.settle()
    levels = [(await bot.case(ref)).resolved_level for ref in refs]
    assert levels == ["grid", "street", "department"]

    rates = "小事不出网格率 33.3%　大事不出街镇率 66.7%（始于网格并已办结 3 件）"
    grid_report = (await bot.say(GRID_STAFF, "/stats")).content
    assert "银星村第一网格：受理 3 件" in grid_report and rates in grid_report
    street_report = (await bot.say(STREET_STAFF, "/stats")).content
    assert "月亮岛街道：受理 3 件" in street_report and rates in street_report
    # The community the cases lie in, one row of the street's table, carries them too.
    [yinxing] = [line for line in street_report.splitlines() if "银星村：" in line]
    assert yinxing.endswith("不出网格 33.3%，不出街镇 66.7%")


# A district coded as 统计用区划代码: the codes do not nest by prefix (the grid 430112101001
# lies in the community 430112001001), so "in this grid" must follow the parent links.
NUMERIC_STREET, NUMERIC_COMMUNITY, NUMERIC_SIBLING = "430112001000", "430112001001", "430112001002"
NUMERIC_GRID = "430112101001"
NUMERIC_WORKER, NUMERIC_CADRE, SIBLING_WORKER = 9101, 9102, 9103


def numeric_district(settings):
    from whistle.config import GridConfig, StaffConfig

    grids = (
        GridConfig(code="430112000000", name="望城区", level="district"),
        GridConfig(code=NUMERIC_STREET, name="星城街道", level="street", parent="430112000000"),
        GridConfig(
            code=NUMERIC_COMMUNITY, name="星河社区", level="community", parent=NUMERIC_STREET
        ),
        GridConfig(code=NUMERIC_SIBLING, name="星光社区", level="community", parent=NUMERIC_STREET),
        GridConfig(
            code=NUMERIC_GRID,
            name="星河第一网格",
            level="grid",
            parent=NUMERIC_COMMUNITY,
            places=("星河湾小区",),
        ),
        GridConfig(
            code="430112101002",
            name="星光第一网格",
            level="grid",
            parent=NUMERIC_SIBLING,
            places=("星光花园",),
        ),
    )
    staff = (
        StaffConfig(telegram_id=NUMERIC_WORKER, name="网格员小星", role="grid", grid=NUMERIC_GRID),
        StaffConfig(
            telegram_id=NUMERIC_CADRE, name="星河社区老何", role="grid", grid=NUMERIC_COMMUNITY
        ),
        StaffConfig(
            telegram_id=SIBLING_WORKER, name="星光社区小王", role="grid", grid=NUMERIC_SIBLING
        ),
    )
    district = replace(settings.district, gazetteer="", grid_boundaries="")
    others = tuple(s for s in settings.staff if not s.grid)  # the demo's grid staff are gone
    return replace(settings, grids=grids, staff=(*others, *staff), district=district)


async def test_numeric_codes_follow_the_grid_tree_not_the_spelling(make_bot):
    bot = await grid_bot(make_bot, numeric_district(settings_with()))
    for member in (NUMERIC_WORKER, NUMERIC_CADRE, SIBLING_WORKER):
        bot.emu.add_user(member, f"网格{member}")
    ref = await bot.report(RESIDENT, "星河湾小区门口水管爆了，水流了一地")
    assert (await bot.case(ref)).grid_code == NUMERIC_GRID
    await hand_to_grid(bot, ref)
    case = await bot.case(ref)
    assert (case.status, case.handling_grid_code) == (GRID_ASSIGNED, NUMERIC_GRID)
    post = await bot.group_post(NUMERIC_WORKER, ref)

    # The neighbouring community's worker may neither act on the case nor see it.
    refused = await bot.press(SIBLING_WORKER, post, "签收")
    assert refused.get("show_alert") and (await bot.case(ref)).status == GRID_ASSIGNED
    # The community above the grid (430112001001, no common prefix with 430112101001) may.
    await bot.press(NUMERIC_CADRE, post, "签收")
    assert (await bot.case(ref)).status == GRID_SIGNED

    bot.clock.advance(days=5)  # past the grid's limits: red
    for member in (NUMERIC_WORKER, NUMERIC_CADRE):
        overdue = (await bot.say(member, "/overdue")).content
        assert ref in overdue and "🔴 1 件" in overdue, overdue
        assert "【星河第一网格】🔴 1" in overdue
        seen = (await bot.say(member, f"/case {ref}")).content
        assert seen != texts.CASE_NOT_FOUND.format(ref=ref) and ref in seen
    overdue = (await bot.say(SIBLING_WORKER, "/overdue")).content
    assert ref not in overdue and "星城街道 › 星光社区" in overdue
    not_theirs = (await bot.say(SIBLING_WORKER, f"/case {ref}")).content
    assert not_theirs == texts.CASE_NOT_FOUND.format(ref=ref)
    stats = (await bot.say(NUMERIC_CADRE, "/stats")).content
    assert "星城街道 › 星河社区：受理 1 件" in stats and "星河第一网格：受理 1" in stats
