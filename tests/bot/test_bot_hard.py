"""攻坚哨 end to end: the bot through PTB's HTTP stack against the emulator, on SQLite and on
PostgreSQL (TEST_DATABASE_URL). A case is shared out to a lead and co-departments, each
co-department signs and resolves its own part in its group, and the case closes only when
every part is done, or when a leader overrides; forged buttons and red parts as well."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from bot import callbacks as cb
from bot import duties as followup
from bot import texts
from models.lifecycle import WAIVED
from models.tables import DISPATCHED, RESOLVED, SIGNED, CaseEvent, CasePart
from tests.test_bot_kit import (
    HOUSING_STAFF,
    RESIDENT,
    TRIAGE_STAFF,
    WATER_STAFF,
    to_triage,
)
from tests.web.test_dashboard import SCREEN_TOKEN, client, dashboard_settings, login, running
from web.app import create_app

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model

MUNICIPAL_STAFF, LEADER = 9006, 9005
PIPE_TEXT = "森林海小区管网年久失修，长期漏损，经常停水，涉及上千户居民"
DECISION = "专题会议决定：水务局牵头改造管网，住建局督促物业配合，市政局恢复路面；费用由区财政承担，年底前完工"


@pytest.fixture
def bot_engine(engine):
    """The parametrized store engine of tests/dbfixtures.py (sqlite, postgresql)."""
    return engine


async def parts_of(bot, ref: str) -> dict[str, CasePart]:
    case = await bot.case(ref)
    async with bot.services.session() as session:
        rows = (await session.exec(select(CasePart).where(CasePart.case_id == case.id))).all()
        return {p.department_code: p for p in rows}


async def mark_hard(
    bot, user: int, chat: int, post, lead: str, co: list[str], *, restart: bool = False
) -> str:
    """Press through 🧩 攻坚哨 → lead → co-departments → 下一步 and type the decision
    (`restart`: the bot restarts while the question waits); returns the bot's answer."""

    def current():  # the post as edited so far (the keyboard changes in place)
        return bot.emu.message(chat, post.message_id)

    if "攻坚哨" in str(post.buttons):
        await bot.press(user, current(), "攻坚哨")
    await bot.press(user, current(), lead)
    for name in co:
        await bot.press(user, current(), name)
    await bot.press(user, current(), "下一步")
    prompt = await bot.reply(user, chat)
    assert "专题会议的决定" in prompt.content
    if restart:
        await bot.restart()  # the question waits in the store
    answer = await bot.say(user, DECISION, chat=chat)
    await bot.settle()
    return answer.content


async def resolve_part(bot, user: int, code: str, ref: str, result: str) -> None:
    chat = bot.department_chat(code)
    post = await bot.group_post(chat, "请贵部门协同办理")
    assert ref in post.content
    assert (await bot.press(user, post, "签收本部门任务"))["text"] == "操作成功"
    await bot.press(user, bot.emu.message(chat, post.message_id), "本部门任务办结")
    assert "办理结果" in (await bot.reply(user, chat)).content
    assert "本部门任务已办结" in (await bot.say(user, result, chat=chat)).content
    await bot.settle()


async def test_three_departments_close_only_after_every_part(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, PIPE_TEXT)
    triage_chat = bot.triage_chat
    post = await bot.group_post(triage_chat, ref)
    answer = await mark_hard(bot, TRIAGE_STAFF, triage_chat, post, "水务局", ["市政局", "住建局"])
    assert "已列为攻坚哨：水务局牵头，市政局、住建局协同" in answer

    case = await bot.case(ref)
    assert case.is_hard and case.status == DISPATCHED and case.department_code == "water"
    assert case.hard_decision == DECISION
    parts = await parts_of(bot, ref)
    assert set(parts) == {"municipal", "housing"}
    assert all(p.status == DISPATCHED and p.sign_by > bot.clock() for p in parts.values())
    redrawn = bot.emu.message(triage_chat, post.message_id)
    assert "牵头：水务局" in redrawn.content and "攻坚哨" not in str(redrawn.buttons)

    water = bot.department_chat("water")
    lead_post = await bot.group_post(water, ref)
    assert "攻坚哨 · 牵头：水务局 · 协同：市政局、住建局" in lead_post.content
    assert "会议决定" in lead_post.content
    assert (await bot.press(WATER_STAFF, lead_post, "签收"))["text"] == "操作成功"

    async def early_resolve(open_names: str) -> None:
        refused = await bot.press(WATER_STAFF, bot.emu.message(water, lead_post.message_id), "办结")
        assert f"尚有协同部门未办结：{open_names}" in refused["text"]
        assert (await bot.case(ref)).status == SIGNED

    await early_resolve("市政局、住建局")
    await resolve_part(bot, HOUSING_STAFF, "housing", ref, "已督促物业开放管井，配合施工")
    told = await bot.group_post(water, "住建局已办结本部门任务")
    assert "尚待协同部门：市政局" in told.content
    await early_resolve("市政局")
    assert (await bot.case(ref)).status == SIGNED
    # The dashboard lists the open 攻坚哨 with each part's state and counts them.
    app = create_app(dashboard_settings(bot.settings), engine=bot.services.engine, clock=bot.clock)
    async with running(app) as url, client(url) as http:
        assert (await login(http, SCREEN_TOKEN)).status_code == 303
        hard = (await http.get("/api/data")).json()["hard_cases"]
    assert hard == {
        "year": 1,
        "open": 1,
        "cases": [
            {
                "ref": ref,
                "lead": "水务局",
                "status": "办理中",
                "light": "green",
                "parts": [
                    {"department": "市政局", "status": "待签收", "light": "green"},
                    {"department": "住建局", "status": "已办结", "light": None},
                ],
            }
        ],
    }

    await resolve_part(bot, MUNICIPAL_STAFF, "municipal", ref, "路面已恢复")
    assert "各协同部门均已办结" in (await bot.group_post(water, "市政局已办结本部门任务")).content
    parts = await parts_of(bot, ref)
    assert {p.status for p in parts.values()} == {RESOLVED}
    assert parts["municipal"].result == "路面已恢复"

    await bot.press(WATER_STAFF, bot.emu.message(water, lead_post.message_id), "办结")
    await bot.reply(WATER_STAFF, water)
    await bot.say(WATER_STAFF, "管网改造完成，恢复正常供水", chat=water)
    assert "已办结" in (await bot.say(WATER_STAFF, "/skip", chat=water)).content
    assert (await bot.case(ref)).status == RESOLVED

    # The reporter sees one case with its progress.
    await bot.notices_due()
    notice = await bot.emu.wait_for_message(RESIDENT, lambda m: "攻坚哨" in m.content, after=0)
    assert "由水务局牵头、市政局、住建局协同办理" in notice.content
    await bot.settle()
    timeline = await bot.say(RESIDENT, f"/case {ref}")
    assert "攻坚哨：水务局牵头" in timeline.content
    assert "住建局（协同）：已办结" in timeline.content
    assert "协同部门办结" in timeline.content and "路面已恢复" in timeline.content


async def test_leader_marks_from_private_chat_and_overrides(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, PIPE_TEXT)
    usage = await bot.say(LEADER, "/gongjian")
    assert "用法" in usage.content
    assert "未找到" in (await bot.say(LEADER, "/gongjian WC-20200101-0001")).content
    refused = await bot.say(HOUSING_STAFF, f"/gongjian {ref}")
    assert "没有处理该案件的权限" in refused.content

    prompt = await bot.say(LEADER, f"/gongjian {ref.lower()}")
    assert "请选择牵头部门" in prompt.content
    answer = await mark_hard(bot, LEADER, LEADER, prompt, "水务局", ["住建局"], restart=True)
    assert "已列为攻坚哨" in answer
    assert "已列为攻坚哨" in (await bot.say(LEADER, f"/gongjian {ref}")).content

    # Only leaders override, with a reason.
    assert "用法" in (await bot.say(LEADER, f"/override {ref}")).content
    assert (
        "您没有权限对该案件执行此操作"
        in (await bot.say(WATER_STAFF, f"/override {ref} 不再等待")).content
    )
    water = bot.department_chat("water")
    lead_post = await bot.group_post(water, ref)
    await bot.press(WATER_STAFF, lead_post, "签收")
    overridden = await bot.say(LEADER, f"/override {ref} 经专题会议研究，剩余工作由水务局统一完成")
    assert "不再等待住建局" in overridden.content
    await bot.settle()
    part = (await parts_of(bot, ref))["housing"]
    assert part.status == WAIVED and "水务局统一完成" in part.result
    assert (
        "领导决定本部门任务不再办理"
        in (await bot.group_post(bot.department_chat("housing"), "领导决定")).content
    )
    again = await bot.say(LEADER, f"/override {ref} 再来一次")
    assert "协同部门均已办结，无需领导决定" in again.content

    await bot.press(WATER_STAFF, bot.emu.message(water, lead_post.message_id), "办结")
    await bot.reply(WATER_STAFF, water)
    await bot.say(WATER_STAFF, "管网改造完成", chat=water)
    await bot.say(WATER_STAFF, "/skip", chat=water)
    assert (await bot.case(ref)).status == RESOLVED
    async with bot.services.session() as session:
        actions = [e.action for e in (await session.exec(select(CaseEvent))).all()]
    assert actions.count("part_waived") == 1 and "marked_hard" in actions


async def test_forged_and_foreign_buttons_are_refused(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, PIPE_TEXT)
    other = await bot.report(RESIDENT, "路灯坏了好几天，晚上很黑")
    triage_chat = bot.triage_chat
    post = await bot.group_post(triage_chat, ref)
    case = await bot.case(ref)
    # The lead chosen as its own co-department, an unknown department: forged choices.
    for arg in ("0-1", "99-2", "0-x"):
        answer = await bot.press_data(
            TRIAGE_STAFF, post, cb.make(cb.HARD_CO, case.id, case.version, arg)
        )
        assert answer["text"] == "无法识别的操作，请以最新消息为准"
    # A resident and a department's staff may not mark a case.
    assert "只有工作人员" in (await bot.press(RESIDENT, post, "攻坚哨"))["text"]
    assert "没有处理该案件的权限" in (await bot.press(HOUSING_STAFF, post, "攻坚哨"))["text"]
    # 下一步 with no co-department chosen.
    answer = await bot.press_data(
        TRIAGE_STAFF, post, cb.make(cb.HARD_TEXT, case.id, case.version, "0-0")
    )
    assert answer["text"] == "请至少选择一个协同部门"

    await mark_hard(bot, TRIAGE_STAFF, triage_chat, post, "水务局", ["市政局", "住建局"])
    parts = await parts_of(bot, ref)
    housing = bot.department_chat("housing")
    part_post = await bot.group_post(housing, "请贵部门协同办理")
    municipal = parts["municipal"]
    # Another department's part, and a part named under another case.
    answer = await bot.press_data(
        HOUSING_STAFF,
        part_post,
        cb.make(cb.PART_SIGN, municipal.case_id, municipal.version, str(municipal.id)),
    )
    assert answer["text"] == "该案件不属于您的部门，无法操作。"
    other_case = await bot.case(other)
    answer = await bot.press_data(
        HOUSING_STAFF,
        part_post,
        cb.make(cb.PART_SIGN, other_case.id, parts["housing"].version, str(parts["housing"].id)),
    )
    assert answer["text"] == "无法识别的操作，请以最新消息为准"
    # A stale button (the part moved on since) is refused and the post redrawn.
    assert (await bot.press(HOUSING_STAFF, part_post, "签收本部门任务"))["text"] == "操作成功"
    stale = await bot.press_data(
        HOUSING_STAFF, part_post, cb.make(cb.PART_SIGN, case.id, 0, str(parts["housing"].id))
    )
    assert stale["text"] == texts.BUTTON_EXPIRED
    assert "本部门任务办结" in str(bot.emu.message(housing, part_post.message_id).buttons)
    assert (await parts_of(bot, ref))["municipal"].status == DISPATCHED


async def test_red_part_alerts_its_department_and_escalates_to_leaders(make_bot):
    bot = await make_bot(to_triage())
    for job in bot.app.job_queue.get_jobs_by_name("followup"):
        job.schedule_removal()
    ref = await bot.report(RESIDENT, PIPE_TEXT)
    post = await bot.group_post(bot.triage_chat, ref)
    await mark_hard(bot, TRIAGE_STAFF, bot.triage_chat, post, "水务局", ["住建局"])
    part = (await parts_of(bot, ref))["housing"]
    bot.clock.now = part.sign_by + timedelta(hours=30)
    await followup.run_followup_pass(bot.app, bot.clock())
    await bot.settle()
    housing = bot.department_chat("housing")
    alarm = await bot.group_post(housing, "超时报警")
    assert f"{ref}（攻坚哨·住建局任务）" in alarm.content and "签收" in alarm.content
    leaders = bot.settings.telegram.leader_chat_id
    # The unsigned case itself is red as well: the leaders get both 督办, the part's naming it.
    escalation = await bot.group_post(leaders, "攻坚哨·住建局任务")
    assert escalation.content.startswith("⚠️ 督办") and "（住建局）" in escalation.content
    part = (await parts_of(bot, ref))["housing"]
    assert part.red_notified_at is not None and part.escalated_at is not None
    digest = await bot.group_post(leaders, "每日超时案件通报")
    assert (
        "【攻坚哨协同任务】" in digest.content
        and "（攻坚哨·住建局任务） 签收超时" in digest.content
    )
    # /overdue lists the red part for its department and the leaders, not for the lead.
    for user in (HOUSING_STAFF, LEADER):
        overdue = await bot.say(user, "/overdue")
        assert f"🔴 {ref}（攻坚哨·住建局任务） 签收超时" in overdue.content
    assert "住建局任务" not in (await bot.say(WATER_STAFF, "/overdue")).content
    # Once queued, never again.
    before = len(bot.emu.messages(leaders))
    await followup.run_followup_pass(bot.app, bot.clock())
    await bot.settle()
    assert len(bot.emu.messages(leaders)) == before
