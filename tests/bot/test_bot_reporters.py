"""What reporters see, end to end through PTB's HTTP stack and the emulator: one notice per
real change (re-routes inside a minute, reopenings, the 办结 text once), enterprises
addressed as 企业诉求, and /case with every photo and everything said about the case.

The follow-up job is taken off the schedule; tests run its passes themselves with the
controllable clock, and the bot's own sender delivers.
"""

from __future__ import annotations

from bot import duties as followup
from models import people
from models.credit_code import check_character
from models.tables import DISPATCHED, TRIAGE
from tests.test_bot_kit import (
    ENTERPRISE_USER,
    RESIDENT,
    TRIAGE_STAFF,
    WAIT,
    WATER_STAFF,
    BotEnv,
    auto_dispatch,
    to_triage,
)

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model

WATER_TEXT = "小区停水两天了还没来水，自来水管道一直没人来修"
DEMAND_TEXT = "园区企业停水两天了，自来水管道一直没人来修，生产线停工"
CREDIT_CODE = "91430112MA4L12345" + check_character("91430112MA4L12345")


async def started(make_bot, settings) -> BotEnv:
    bot = await make_bot(settings)
    for job in bot.app.job_queue.get_jobs_by_name("followup"):
        job.schedule_removal()
    return bot


def contents(bot: BotEnv, chat: int, text: str) -> list[str]:
    """What the bot said in a chat that contains `text`."""
    return [m.content for m in bot.emu.messages(chat) if text in m.content]


async def route(bot: BotEnv, ref: str, name: str) -> None:
    """Triage sends the case to department `name` with the buttons on its triage post
    (confirming the choice if the bot asks to)."""
    await bot.group_post(bot.triage_chat, ref)
    post = next(
        m for m in reversed(bot.emu.messages(bot.triage_chat)) if ref in m.content and m.buttons
    )
    labels = [label for label, _ in post.buttons]
    await bot.press(
        TRIAGE_STAFF,
        post,
        "改派其他部门" if any("改派其他部门" in label for label in labels) else "重新分派",
    )
    await bot.press(TRIAGE_STAFF, bot.emu.message(bot.triage_chat, post.message_id), name)
    case = await bot.case(ref)
    if bot.settings.department(case.department_code or "") is None or (
        bot.settings.department(case.department_code).name != name
    ):
        confirm = next(
            m
            for m in reversed(bot.emu.messages(bot.triage_chat))
            if any("确认" in label and name in label for label, _ in m.buttons)
        )
        await bot.press(TRIAGE_STAFF, confirm, "确认")
    assert bot.settings.department((await bot.case(ref)).department_code).name == name
    await bot.settle()  # the department's post is there


async def department_post(bot: BotEnv, code: str, ref: str, contains: str = ""):
    """The newest post about the case in the department's group (as it looks now)."""
    group = bot.department_chat(code)
    await bot.group_post(group, ref)
    post = next(
        m
        for m in reversed(bot.emu.messages(group))
        if ref in m.content and contains in m.content and m.buttons
    )
    return bot.emu.message(group, post.message_id)


async def resolve_in_group(bot: BotEnv, ref: str, result: str, *, photo: bool) -> None:
    """The water department signs for the case (if not yet) and resolves it with a result."""
    group = bot.department_chat("water")
    post = await department_post(bot, "water", ref)
    if any("签收" in label for label, _ in post.buttons):
        await bot.press(WATER_STAFF, post, "签收")
        post = bot.emu.message(group, post.message_id)
    await bot.press(WATER_STAFF, post, "办结")
    await bot.reply(WATER_STAFF, group)
    await bot.say(WATER_STAFF, result, chat=group)
    if photo:
        bot.emu.send_photo(WATER_STAFF, chat_id=group)
        await bot.reply(WATER_STAFF, group)
    else:
        await bot.say(WATER_STAFF, "/skip", chat=group)
    await bot.settle()


# ---------------------------------------------------------------- one notice per real change


async def test_rerouting_within_a_minute_tells_the_reporter_once(make_bot):
    bot = await started(make_bot, to_triage())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    await route(bot, ref, "水务局")
    bot.clock.advance(seconds=20)
    await route(bot, ref, "住建局")
    bot.clock.advance(seconds=20)
    await route(bot, ref, "市政局")
    await bot.settle()
    assert contents(bot, RESIDENT, "已派至") == []  # held back for a minute

    await bot.notices_due()
    assert contents(bot, RESIDENT, "已派至") == [f"📮 您反映的问题（{ref}）已派至 市政局 办理。"]
    dropped = [row for row in await bot.outbox() if row.status == "dropped"]
    assert len(dropped) == 2 and {row.chat_id for row in dropped} == {RESIDENT}

    # The safety net in the follow-up pass agrees: nothing more, even once the events settle.
    bot.clock.advance(minutes=2)
    counts = await followup.run_followup_pass(bot.app, bot.clock())
    assert counts["notice"] == 0
    await bot.settle()
    assert len(contents(bot, RESIDENT, "已派至")) == 1

    # A re-route later on is a real change: its own notice.
    await route(bot, ref, "水务局")
    await bot.notices_due()
    assert contents(bot, RESIDENT, "已派至")[-1] == f"📮 您反映的问题（{ref}）已派至 水务局 办理。"
    assert len(contents(bot, RESIDENT, "已派至")) == 2


async def test_a_return_within_the_minute_drops_the_waiting_notice(make_bot):
    bot = await started(make_bot, auto_dispatch())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    group = bot.department_chat("water")
    await bot.press(WATER_STAFF, await department_post(bot, "water", ref), "退回")
    await bot.say(WATER_STAFF, "属于物业管理范围，建议转住建局", chat=group)
    assert (await bot.case(ref)).status == TRIAGE
    await bot.notices_due()
    assert contents(bot, RESIDENT, "已派至") == []  # 水务局 no longer has it

    await route(bot, ref, "住建局")
    await bot.notices_due()
    assert contents(bot, RESIDENT, "已派至") == [f"📮 您反映的问题（{ref}）已派至 住建局 办理。"]


async def test_a_quick_sign_sends_the_waiting_dispatch_notice_first(make_bot):
    bot = await started(make_bot, auto_dispatch())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    await bot.press(WATER_STAFF, await department_post(bot, "water", ref), "签收")
    await bot.settle()  # no waiting for the minute: the case stayed where the notice says
    notices = [
        m.content
        for m in bot.emu.messages(RESIDENT)
        if ref in m.content and ("已派至" in m.content or "已签收" in m.content)
    ]
    assert notices == [
        f"📮 您反映的问题（{ref}）已派至 水务局 办理。",
        f"👷 水务局 已签收您反映的问题（{ref}），正在办理。",
    ]


async def test_the_result_is_told_once_and_the_survey_refers_to_it(make_bot):
    bot = await started(make_bot, auto_dispatch())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    result = "已更换破损水管，今天下午恢复供水"
    await resolve_in_group(bot, ref, result, photo=True)
    await followup.run_followup_pass(bot.app, bot.clock())
    await bot.settle()

    [resolved] = [m for m in bot.emu.messages(RESIDENT) if "已办结" in m.content]
    assert result in resolved.content and resolved.photo == (await bot.case(ref)).resolution_photo
    survey = next(m for m in bot.emu.messages(RESIDENT) if "回访" in m.content)
    assert f"请对您反映的问题 {ref} 的办理结果进行评价" in survey.content
    assert len(contents(bot, RESIDENT, result)) == 1  # only the 办结 notice carries it


async def test_a_reopening_is_told_once_whichever_way_the_answer_came(make_bot):
    bot = await started(make_bot, auto_dispatch())
    first = await bot.report(RESIDENT, WATER_TEXT)
    second = await bot.report(RESIDENT, "小区门口的自来水管破裂漏水，路面全是水")
    for ref in (first, second):
        await resolve_in_group(bot, ref, "已维修完毕", photo=False)
    await followup.run_followup_pass(bot.app, bot.clock())
    await bot.settle()
    surveys = {
        ref: next(m for m in bot.emu.messages(RESIDENT) if "回访" in m.content and ref in m.content)
        for ref in (first, second)
    }

    # 不满意 with a comment: the answer to the comment is the one reopened notice.
    await bot.press(RESIDENT, surveys[first], "不满意")
    await bot.emu.wait_for_message(RESIDENT, lambda m: "说说哪里不满意" in m.content)
    answer = await bot.say(RESIDENT, "水还是浑的，没有解决")
    assert answer.content == (
        f"🔁 已收到您的评价。您反映的问题（{first}）已重新交 水务局 办理，我们会继续跟进。"
    )
    # 不满意 and 直接提交: the prompt says what was answered; the notice says the rest.
    await bot.press(RESIDENT, surveys[second], "不满意")
    prompt = await bot.emu.wait_for_message(
        RESIDENT, lambda m: "说说哪里不满意" in m.content and m.buttons, after=answer
    )
    await bot.press(RESIDENT, prompt, "直接提交")
    await bot.settle()
    assert "未填写意见" in bot.emu.message(RESIDENT, prompt.message_id).content
    assert (await bot.case(second)).status == DISPATCHED

    bot.clock.advance(minutes=2)  # the safety net finds both reopenings told
    assert (await followup.run_followup_pass(bot.app, bot.clock()))["notice"] == 0
    await bot.settle()
    for ref in (first, second):
        assert len([c for c in contents(bot, RESIDENT, "重新") if ref in c]) == 1


# ---------------------------------------------------------------- enterprises


async def register(bot: BotEnv, user: int = ENTERPRISE_USER) -> None:
    async with bot.services.session() as session:
        await people.register_enterprise(
            session, user, "望城智造科技有限公司", CREDIT_CODE, industry="制造业", now=bot.clock()
        )


async def test_an_enterprise_is_addressed_as_its_demand_everywhere(make_bot):
    bot = await started(make_bot, auto_dispatch())
    user = ENTERPRISE_USER
    assert "您还没有反映过问题" in (await bot.say(user, "/my")).content
    await register(bot)
    assert "还没有提交过企业诉求" in (await bot.say(user, "/my")).content
    await bot.say(user, "/demand")
    await bot.say(user, DEMAND_TEXT)
    await bot.say(user, "/skip")
    summary = await bot.say(user, "/skip")
    await bot.press(user, summary, "修改")
    bot.emu.press(user, bot.emu.message(user, summary.message_id), "修改描述")
    assert "企业遇到的问题" in (await bot.reply(user)).content
    summary = await bot.say(user, DEMAND_TEXT)
    bot.emu.press(user, summary, "确认提交")
    done = await bot.emu.wait_for_message(user, lambda m: "企业诉求已受理" in m.content)
    ref = done.content.split("编号 ", 1)[1].split("，", 1)[0]
    await bot.notices_due()
    await resolve_in_group(bot, ref, "已协调水务局抢修，恢复供水", photo=False)
    await followup.run_followup_pass(bot.app, bot.clock())
    await bot.settle()

    said = "\n".join(m.content for m in bot.emu.messages(user))
    assert f"📮 您的企业诉求（{ref}）已派至 水务局 办理。" in said
    assert f"👷 水务局 已签收您的企业诉求（{ref}），正在办理。" in said
    assert f"✅ 您的企业诉求（{ref}）已办结。" in said
    assert f"请对您的企业诉求 {ref} 的办理结果进行评价" in said
    assert f"{ref}（企业诉求）" in (await bot.say(user, f"/case {ref}")).content
    assert "企业诉求：" in (await bot.say(user, "/my")).content
    assert "您反映的问题" not in "\n".join(m.content for m in bot.emu.messages(user))


async def test_registration_asks_industry_and_park_so_policies_reach_the_enterprise(make_bot):
    bot = await started(make_bot, to_triage())
    user = ENTERPRISE_USER
    await bot.say(user, "/enterprise")
    await bot.say(user, "望城智造科技有限公司")
    asked = await bot.say(user, CREDIT_CODE)
    assert "所属行业" in asked.content and "惠企政策" in asked.content
    assert "2～30 个字" in (await bot.say(user, "软")).content  # too short: asked again
    park = await bot.say(user, "软件和信息技术服务业")
    assert "园区" in park.content
    assert ["不在园区"] in [row[-1:] for row in bot.emu.reply_keyboard(user)]
    done = await bot.say(user, "/skip")
    assert "企业登记成功" in done.content and "园区：未填写" in done.content
    async with bot.services.session() as session:
        enterprise = await people.enterprise_of(session, user)
    assert (enterprise.industry, enterprise.park) == ("软件和信息技术服务业", None)
    await bot.emu.wait_for_message(user, lambda m: "企业遇到的问题" in m.content)
    await bot.say(user, "/cancel")
    home = await bot.say(user, "/enterprise")
    assert "行业：软件和信息技术服务业　园区：未填写" in home.content

    admin = 9000
    posted = await bot.say(admin, "/policy 软件企业研发补贴\n按研发投入的10%给予补贴。\n标签：软件")
    assert "将推送给 1 位企业联系人" in posted.content
    await bot.emu.wait_for_message(user, lambda m: "软件企业研发补贴" in m.content)
    none = await bot.say(admin, "/policy 物流企业奖励\n物流企业年度奖励。\n标签：物流")
    assert "没有匹配" in none.content

    # A colleague of the same enterprise is not asked again.
    colleague = 10003
    bot.emu.add_user(colleague, "企业钱会计")
    await bot.say(colleague, "/enterprise")
    await bot.say(colleague, "望城智造")
    joined = await bot.say(colleague, CREDIT_CODE)
    assert "企业登记成功：望城智造科技有限公司" in joined.content
    assert "行业：软件和信息技术服务业" in joined.content


# ---------------------------------------------------------------- /case


async def test_case_shows_every_photo_and_everything_said(make_bot):
    bot = await started(make_bot, auto_dispatch())
    group = bot.department_chat("water")
    await bot.say(RESIDENT, "/report")
    await bot.say(RESIDENT, WATER_TEXT)
    for _ in range(2):
        bot.emu.send_photo(RESIDENT, media_group_id="album")
    await bot.reply(RESIDENT)
    summary = await bot.say(RESIDENT, "/skip")
    bot.emu.press(RESIDENT, summary, "确认提交")
    done = await bot.emu.wait_for_message(RESIDENT, lambda m: "已受理" in m.content)
    ref = done.content.split("编号 ", 1)[1].split("，", 1)[0]
    await bot.settle()

    await resolve_in_group(bot, ref, "已更换阀门", photo=True)
    first_photo = (await bot.case(ref)).resolution_photo
    await followup.run_followup_pass(bot.app, bot.clock())
    await bot.settle()
    survey = next(m for m in bot.emu.messages(RESIDENT) if "回访" in m.content)
    await bot.press(RESIDENT, survey, "不满意")
    await bot.emu.wait_for_message(RESIDENT, lambda m: "说说哪里不满意" in m.content)
    await bot.say(RESIDENT, "水还是浑的，没有解决")

    reopened = await department_post(bot, "water", ref, "群众不满意")
    await bot.press(WATER_STAFF, reopened, "退回")
    await bot.say(WATER_STAFF, "管网属于住建局小区改造范围", chat=group)
    await route(bot, ref, "水务局")
    post = await department_post(bot, "water", ref)
    await bot.press(WATER_STAFF, post, "签收")
    await bot.press(WATER_STAFF, bot.emu.message(group, post.message_id), "申请延期")
    await bot.reply(WATER_STAFF, group)
    ask = await bot.say(WATER_STAFF, "需要更换整段主管道", chat=group)
    example = ask.content.split("格式如 ", 1)[1].split(" ", 1)[0]
    await bot.say(WATER_STAFF, example, chat=group)
    request = await bot.group_post(bot.triage_chat, "申请延期")
    await bot.press(TRIAGE_STAFF, request, "同意延期")
    await bot.settle()  # the department's post with the new deadline's buttons
    await resolve_in_group(bot, ref, "已更换整段主管道，水质检测合格", photo=True)
    case = await bot.case(ref)
    assert case.resolution_photo != first_photo

    timeline = await bot.say(RESIDENT, f"/case {ref}")
    text = timeline.content
    assert "办结：已更换阀门" in text and "办结：已更换整段主管道，水质检测合格" in text
    assert "评价：不满意，意见：水还是浑的，没有解决" in text
    assert "退回：理由：管网属于住建局小区改造范围" in text
    assert "申请延期：理由：需要更换整段主管道，新的办结时限" in text
    album = [
        await bot.emu.wait_for_message(RESIDENT, timeout=WAIT, after=timeline.index + i)
        for i in range(1, 5)
    ]
    assert [m.photo for m in album] == [*case.photos, first_photo, case.resolution_photo]
    assert len({m.payload["media_group_id"] for m in album}) == 1
    assert [m.caption for m in album] == ["📷 反映时的照片", None, "✅ 办结照片", "✅ 办结照片"]


async def test_a_long_timeline_is_sent_whole_in_several_messages(make_bot):
    settings = auto_dispatch()
    bot = await started(make_bot, settings)
    long_text = "小区停水，" + "自来水管道破裂漏水严重，" * 166  # 1,997 characters
    ref = await bot.report(RESIDENT, long_text)
    long_result = "已抢修：" + "更换破损管段并冲洗管网，" * 166  # together more than 4,096
    await resolve_in_group(bot, ref, long_result, photo=False)
    bot.emu.send_text(RESIDENT, f"/case {ref}")
    first = await bot.emu.wait_for_message(RESIDENT, lambda m: ref in m.content)
    second = await bot.emu.wait_for_message(RESIDENT, timeout=WAIT, after=first)
    assert long_text.strip() in first.content and long_result in second.content
    assert not first.content.endswith("…") and len(first.content) <= 4096
