"""The follow-up engine inside the running bot (PTB's HTTP stack against the emulator): the
回访 buttons and comment, /overdue, /stats, /policy with /unsubscribe, and a user blocking
the bot. The follow-up job is taken off the schedule; the test drives the passes itself with
the controllable clock, and the bot's own sender (kicked after each pass) delivers.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlmodel import select

from bot import duties as followup
from models import cases, people
from models.cases import Actor
from models.credit_code import check_character
from models.tables import CLOSED, DISPATCHED, Reporter
from tests.test_bot_kit import ENTERPRISE_USER, RESIDENT, WATER_STAFF, auto_dispatch

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model

WATER_TEXT = "小区停水两天了还没来水，自来水管道一直没人来修"
WAIT = 5.0
ADMIN, LEADER = 9000, 9005


async def started(make_bot):
    env = await make_bot(auto_dispatch())
    for job in env.app.job_queue.get_jobs_by_name("followup"):
        job.schedule_removal()
    return env


async def resolved_case(env):
    """A resident's report, dispatched to 水务局, signed and resolved by its staff."""
    ref = await env.report(RESIDENT, WATER_TEXT)
    staff = Actor.staff(WATER_STAFF)
    async with env.services.session() as session:
        case = await cases.get_case_by_ref(session, ref)
        await cases.sign_for(session, case.id, staff, env.clock(), rules=env.services.rules)
        return await cases.resolve(
            session,
            case.id,
            staff,
            "已更换破损水管，恢复供水",
            env.clock(),
            rules=env.services.rules,
        )


def message_with(env, chat: int, text: str):
    return env.emu.wait_for_message(chat, lambda m: text in m.content, timeout=WAIT, after=0)


async def test_unsatisfied_with_a_comment_reopens_the_case(make_bot):
    env = await started(make_bot)
    case = await resolved_case(env)
    await followup.run_followup_pass(env.app, env.clock())
    await env.settle()  # the survey and the 签收 and 办结 notices the pass found missing
    survey = await message_with(env, RESIDENT, "回访")
    assert case.ref in survey.content
    assert [label for label, _ in survey.buttons] == ["😊 满意", "🙂 基本满意", "😞 不满意"]

    await env.press(RESIDENT, survey, "不满意")
    prompt = await message_with(env, RESIDENT, "说说哪里不满意")
    assert [label for label, _ in prompt.buttons] == ["直接提交"]
    done = await env.say(RESIDENT, "水还是浑的，没有解决")
    assert "已重新交 水务局 办理" in done.content

    reopened = await env.case(case.ref)
    assert reopened.status == DISPATCHED and reopened.reopen_count == 1
    assert reopened.satisfaction_comment == "水还是浑的，没有解决"
    post = await message_with(env, env.department_chat("water"), "群众不满意")
    assert "水还是浑的" in post.content and case.ref in post.content
    assert [label for label, _ in post.buttons] == ["✍️ 签收", "↩️ 退回"]
    # The next message from the resident is an ordinary one again, not a comment.
    after = await env.say(RESIDENT, "谢谢")
    assert "已重新交" not in after.content


async def test_unsatisfied_without_a_comment(make_bot):
    env = await started(make_bot)
    case = await resolved_case(env)
    await followup.run_followup_pass(env.app, env.clock())
    survey = await message_with(env, RESIDENT, "回访")
    await env.press(RESIDENT, survey, "不满意")
    prompt = await message_with(env, RESIDENT, "说说哪里不满意")
    await env.press(RESIDENT, prompt, "直接提交")
    reopened = await env.case(case.ref)
    assert reopened.status == DISPATCHED and reopened.satisfaction_comment is None
    post = await message_with(env, env.department_chat("water"), "群众不满意")
    assert "群众意见：（未填写）" in post.content


async def test_satisfied_closes_and_a_stale_press_is_refused(make_bot):
    env = await started(make_bot)
    case = await resolved_case(env)
    await followup.run_followup_pass(env.app, env.clock())
    survey = await message_with(env, RESIDENT, "回访")
    unsatisfied = next(data for label, data in survey.buttons if "不满意" in label)
    await env.press(RESIDENT, survey, "😊 满意")
    thanks = await env.emu.wait_for_message(
        RESIDENT, lambda m: "感谢您的评价" in m.content, timeout=WAIT, after=0
    )
    assert "满意" in thanks.content
    assert (await env.case(case.ref)).status == CLOSED
    assert survey.buttons == []  # the answered survey lost its buttons
    answer = await env.press_data(RESIDENT, survey, unsatisfied)  # e.g. an old client
    assert "已经评价或已结案" in answer["text"]


async def test_overdue_and_stats_for_staff(make_bot):
    env = await started(make_bot)
    ref = await env.report(RESIDENT, WATER_TEXT)
    case = await env.case(ref)
    env.clock.now = case.sign_by + timedelta(hours=3)

    mine = await env.say(WATER_STAFF, "/overdue")
    assert "水务局红黄灯案件" in mine.content and "🔴 1 件" in mine.content
    assert f"🔴 {ref} 签收超时 3小时" in mine.content
    everyone = await env.say(LEADER, "/overdue")
    assert "全区红黄灯案件" in everyone.content and "【水务局】🔴 1" in everyone.content
    refused = await env.say(RESIDENT, "/overdue")
    assert "仅供工作人员" in refused.content

    figures = await env.say(LEADER, "/stats month")
    assert "本月办理统计" in figures.content and "办结率" in figures.content
    assert "水务局：派单 1" in figures.content
    usage = await env.say(LEADER, "/stats 去年")
    assert "用法" in usage.content


async def test_policy_reaches_matching_enterprises_who_can_unsubscribe(make_bot):
    env = await started(make_bot)
    code = "91430112MA4L12345"
    async with env.services.session() as session:
        await people.register_enterprise(
            session,
            ENTERPRISE_USER,
            "望城智造科技有限公司",
            code + check_character(code),
            industry="软件和信息技术服务业",
            park="望城经开区",
            now=env.clock(),
        )
    assert "只有分拨中心" in (await env.say(RESIDENT, "/policy 标题\n摘要")).content
    assert "格式" in (await env.say(ADMIN, "/policy")).content
    bad = await env.say(ADMIN, "/policy 软件企业补贴\n最高补贴五十万元\n链接：ftp://x")
    assert "链接应以 http" in bad.content

    posted = await env.say(
        ADMIN,
        "/policy 软件企业研发补贴\n按研发投入的10%给予补贴。\n"
        "链接：https://www.example.gov.cn/p/1\n标签：软件，物流",
    )
    assert "将推送给 1 位企业联系人" in posted.content
    news = await message_with(env, ENTERPRISE_USER, "惠企政策")
    assert "软件企业研发补贴" in news.content and "https://www.example.gov.cn/p/1" in news.content
    answer = await env.press(ENTERPRISE_USER, news, "不再接收政策推送")
    assert "已退订" in answer["text"]
    async with env.services.session() as session:
        assert (await people.enterprise_of(session, ENTERPRISE_USER)).news_subscribed is False

    again = await env.say(ADMIN, "/policy 物流企业奖励\n物流企业年度奖励。\n标签：物流")
    assert "没有匹配且订阅推送的企业" in again.content
    back = await env.say(ENTERPRISE_USER, "/subscribe")
    assert "已订阅" in back.content


async def eventually(check, timeout: float = WAIT) -> bool:
    """Poll an async check until it holds (updates are handled in the background)."""
    for _ in range(int(timeout / 0.05)):
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_user_blocking_the_bot_is_marked_unreachable_and_back(make_bot):
    env = await started(make_bot)
    await env.say(RESIDENT, "/start")

    async def reachable() -> bool:
        async with env.services.session() as session:
            reporter = (
                await session.exec(select(Reporter).where(Reporter.telegram_id == RESIDENT))
            ).one()
            return reporter.reachable

    assert await reachable()
    env.emu.block_user(RESIDENT)
    assert await eventually(lambda: _not(reachable))
    env.emu.unblock_user(RESIDENT)
    assert await eventually(reachable)


async def _not(check) -> bool:
    return not await check()


async def test_dashboard_login_code_only_for_staff_and_only_once(make_bot):
    import re

    from models import auth

    env = await started(make_bot)
    refused = await env.say(RESIDENT, "/dashboard")
    assert "仅对工作人员开放" in refused.content

    reply = await env.say(LEADER, "/dashboard")
    code = re.search(r"登录码：(\S+)", reply.content).group(1)
    async with env.services.session() as session:
        staff = await auth.redeem_login_code(session, code, env.clock())
        assert staff is not None and staff.telegram_id == LEADER
        assert await auth.redeem_login_code(session, code, env.clock()) is None  # used up
