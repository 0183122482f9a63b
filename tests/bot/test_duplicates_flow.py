"""Duplicate reports (重复件, #16) end to end through the emulator: a resident is shown the open
case nearby before confirming and follows it (then gets its progress notices), or goes on; triage
sees an incoming case's likely duplicates and merges it with one button."""

from __future__ import annotations

from sqlmodel import select

from bot import actions, duplicates
from bot import duties as followup
from bot.actions import ReportDraft
from bot.services import Services
from classifier.similar import grid_within
from geo.grids import GridRecord, GridTree
from models import cases, followers, stats
from models.credit_code import check_character
from models.gridmap import GridMap
from models.tables import ENTERPRISE, MERGED, RESOLVED, CaseFollower
from tests.test_bot_kit import (
    ENTERPRISE_USER,
    RESIDENT,
    TRIAGE_STAFF,
    WAIT,
    WATER_STAFF,
    to_triage,
)

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model

NEIGHBOUR, OTHER = 10005, 10006
HERE = (28.37, 112.82)
FIRST = "小区停水两天了还没来水，自来水管道一直没人来修"
AGAIN = "我们小区停水两天了，一直没来水，自来水管道没人来修"
UNRELATED = "学校门口的校车每天超载，孩子们挤得站不下，希望教育局管一管"


async def month_repeats(bot) -> dict:
    data = await stats.dashboard_data(
        bot.services.engine, now=bot.clock(), rules=bot.services.rules
    )
    return data["repeats"]


def labels(message) -> list[str]:
    return [text for text, _ in message.buttons]


async def until_place(bot, user: int, text: str):
    """A report up to its place; returns the bot's next message with buttons."""
    bot.emu.add_user(user, f"居民{user}")
    await bot.say(user, "/report")
    await bot.say(user, text)
    await bot.say(user, "/skip")
    bot.emu.send_location(user, *HERE)
    return await bot.emu.wait_for_message(user, lambda m: bool(m.buttons), timeout=WAIT)


async def followers_of(bot, case_id: int) -> list[int]:
    async with bot.services.session() as session:
        return list(
            (
                await session.exec(
                    select(CaseFollower.reporter_id).where(CaseFollower.case_id == case_id)
                )
            ).all()
        )


async def test_a_resident_follows_the_open_case_nearby_and_gets_its_notices(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, FIRST, location=HERE)

    asked = await until_place(bot, NEIGHBOUR, AGAIN)
    assert asked.content == f"附近已有人反映：{ref}，状态 待分拨。是同一个问题吗？"
    assert labels(asked) == ["是，关注该案件", "不是，继续提交"]
    bot.emu.press(NEIGHBOUR, asked, "是，关注该案件")
    followed = await bot.emu.wait_for_message(
        NEIGHBOUR, lambda m: "已为您关注" in m.content, timeout=WAIT
    )
    assert f"已为您关注 {ref}" in followed.content and "共有 2 人反映" in followed.content
    case = await bot.case(ref)
    assert len(await bot.cases()) == 1  # no second case
    assert len(await followers_of(bot, case.id)) == 1
    async with bot.services.session() as session:
        assert await followers.reporters_count(session, case.id) == 2
    # /case tells its reporter how many reported it.
    timeline = await bot.say(RESIDENT, f"/case {ref}")
    assert "反映人数：2 人" in timeline.content
    # The follower finds it in /my and follows its progress with /case, without the words of
    # whoever reported it; someone else still cannot see it.
    mine = await bot.say(NEIGHBOUR, "/my")
    assert "您关注的案件：" in mine.content and ref in mine.content
    assert FIRST not in mine.content
    seen = await bot.say(NEIGHBOUR, f"/case {ref}")
    assert seen.content.startswith(f"{ref}（居民随手拍 · 您已关注）\n状态：待分拨")
    assert "办理过程：" in seen.content and FIRST not in seen.content
    assert "没有找到" in (await bot.say(OTHER, f"/case {ref}")).content
    # The dashboard counts two reports of one problem, where it was reported.
    repeats = await month_repeats(bot)
    assert (repeats["reports"], repeats["distinct"]) == (2, 1)
    assert [h["repeats"] for h in repeats["hotspots"]] == [1]

    # The follower is told of the case's progress like its reporter.
    post = await bot.group_post(bot.triage_chat, ref)
    await bot.press(TRIAGE_STAFF, post, "确认派至")
    await bot.notices_due()
    bot.clock.advance(minutes=2)
    await followup.run_followup_pass(bot.app, bot.clock())
    await bot.settle()
    told = await bot.emu.wait_for_message(NEIGHBOUR, lambda m: "已派至" in m.content, timeout=WAIT)
    assert told.content == f"📮 您反映的问题（{ref}）已派至 水务局 办理。"

    # …and of its 办结, then asked the 回访 too: heard, but the reporter's answer decides.
    staff = cases.Actor.staff(WATER_STAFF)
    async with bot.services.session() as session:
        await cases.sign_for(session, case.id, staff, bot.clock(), rules=bot.services.rules)
        await cases.resolve(
            session,
            case.id,
            staff,
            "已更换破损水管，恢复供水",
            bot.clock(),
            rules=bot.services.rules,
        )
    bot.clock.advance(minutes=2)
    await followup.run_followup_pass(bot.app, bot.clock())
    await bot.settle()
    await bot.emu.wait_for_message(NEIGHBOUR, lambda m: "已更换破损水管" in m.content, timeout=WAIT)
    survey = await bot.emu.wait_for_message(NEIGHBOUR, lambda m: "回访" in m.content, timeout=WAIT)
    assert labels(survey) == ["😊 满意", "🙂 基本满意", "😞 不满意"]
    satisfied = survey.button_data("满意")
    await bot.emu.wait_for_message(RESIDENT, lambda m: "回访" in m.content, timeout=WAIT)
    answer = await bot.press(NEIGHBOUR, survey, "不满意")
    assert not answer.get("show_alert")
    thanked = bot.emu.message(NEIGHBOUR, survey.message_id)
    assert thanked.content == f"感谢您的评价（不满意）！您关注的案件 {ref} 的回访意见已记录。"
    assert (await bot.case(ref)).status == RESOLVED  # the reporter's answer decides
    async with bot.services.session() as session:
        [row] = (
            await session.exec(select(CaseFollower).where(CaseFollower.case_id == case.id))
        ).all()
    assert row.satisfaction == "unsatisfied"
    again = await bot.press_data(NEIGHBOUR, survey, satisfied)
    assert again["show_alert"] and "已评价过" in again["text"]
    # Someone who does not follow it cannot answer for it.
    stranger = await bot.press_data(OTHER, survey, satisfied)
    assert stranger["show_alert"] and "没有关注" in stranger["text"]

    # The reporter is never asked about their own case; an unrelated report is not asked.
    summary = await until_place(bot, RESIDENT, AGAIN)
    assert "确认提交" in " ".join(labels(summary))
    summary = await until_place(bot, OTHER, UNRELATED)
    assert "确认提交" in " ".join(labels(summary))


async def test_not_the_same_goes_on_and_triage_merges_the_duplicate(make_bot):
    bot = await make_bot(to_triage())
    first = await bot.report(RESIDENT, FIRST, location=HERE)

    asked = await until_place(bot, NEIGHBOUR, AGAIN)
    bot.emu.press(NEIGHBOUR, asked, "不是，继续提交")
    summary = await bot.emu.wait_for_message(
        NEIGHBOUR, lambda m: "确认提交" in str(m.buttons), timeout=WAIT
    )
    bot.emu.press(NEIGHBOUR, summary, "确认提交")
    done = await bot.emu.wait_for_message(NEIGHBOUR, lambda m: "已受理" in m.content, timeout=WAIT)
    second = done.content.split("编号 ", 1)[1].split("，", 1)[0]
    await bot.settle()

    # Triage: the new case's likely duplicate, with 合并.
    hint = await bot.group_post(bot.triage_chat, f"🔁 {second} 可能与以下未办结案件重复")
    assert f"1. {first} · 待分拨 · 相似度" in hint.content and "1 人反映" in hint.content
    assert labels(hint) == [f"🔗 合并至 {first}"]
    merge = hint.button_data(f"合并至 {first}")
    # Only triage may merge.
    answer = await bot.press(NEIGHBOUR, hint, f"合并至 {first}")
    assert answer["show_alert"] and (await bot.case(second)).status != MERGED
    answer = await bot.press(TRIAGE_STAFF, hint, f"合并至 {first}")
    assert answer["text"] == "操作成功"
    merged, kept = await bot.case(second), await bot.case(first)
    assert (merged.status, merged.merged_into_id) == (MERGED, kept.id)
    edited = bot.emu.message(bot.triage_chat, hint.message_id)
    assert f"✅ {second} 已合并至 {first}" in edited.content and not edited.buttons
    repeats = await month_repeats(bot)
    assert (repeats["reports"], repeats["distinct"]) == (2, 1)
    assert [h["repeats"] for h in repeats["hotspots"]] == [1]
    # Its reporter now follows the kept case, and is told where their report went.
    assert len(await followers_of(bot, kept.id)) == 1
    await bot.settle()
    told = await bot.emu.wait_for_message(NEIGHBOUR, lambda m: "合并" in m.content, timeout=WAIT)
    assert first in told.content
    # A second press finds the case merged already: a polite answer, nothing changes.
    answer = await bot.press_data(TRIAGE_STAFF, hint, merge)
    assert answer["show_alert"] and "已被合并" in answer["text"]
    assert len(await followers_of(bot, kept.id)) == 1

    # The merged case is no longer offered to anyone; the case it joined is.
    asked = await until_place(bot, OTHER, AGAIN)
    assert asked.content == f"附近已有人反映：{first}，状态 待分拨。是同一个问题吗？"
    index = duplicates.index_of(bot.services)
    index.expire()  # the next look drops cases closed meanwhile from the index
    await index.refresh(bot.services)
    assert merged.id not in index.ids and kept.id in index.ids


CREDIT_CODE = "91430112MA4L12345" + check_character("91430112MA4L12345")
COLLEAGUE = 10007
DEMAND = "园区门口道路破损严重，货车进出非常困难，希望尽快修复路面"
DEMAND_AGAIN = "园区门口的道路破损很严重，货车进出困难，请尽快修复路面"


async def register(bot, user: int) -> None:
    bot.emu.add_user(user, f"企业联系人{user}")
    await bot.say(user, "/enterprise")
    await bot.say(user, "望城智造科技有限公司")
    if "所属行业" in (await bot.say(user, CREDIT_CODE)).content:  # the first to register
        await bot.say(user, "软件和信息技术服务业")
        await bot.say(user, "/skip")
    await bot.emu.wait_for_message(user, lambda m: "企业遇到的问题" in m.content, timeout=WAIT)


async def demand_until_buttons(bot, user: int, text: str):
    await bot.say(user, text)
    await bot.say(user, "/skip")
    bot.emu.send_location(user, *HERE)
    return await bot.emu.wait_for_message(user, lambda m: bool(m.buttons), timeout=WAIT)


async def test_an_enterprise_is_asked_about_its_own_demands_only(make_bot):
    bot = await make_bot(to_triage())
    await register(bot, COLLEAGUE)
    summary = await demand_until_buttons(bot, COLLEAGUE, DEMAND)
    bot.emu.press(COLLEAGUE, summary, "确认提交")
    done = await bot.emu.wait_for_message(COLLEAGUE, lambda m: "已受理" in m.content, timeout=WAIT)
    first = done.content.split("编号 ", 1)[1].split("，", 1)[0]
    assert (await bot.case(first)).kind == ENTERPRISE

    # A resident writing the same words is not offered the enterprise's demand to follow.
    summary = await until_place(bot, OTHER, DEMAND_AGAIN)
    assert "确认提交" in " ".join(labels(summary))

    # A colleague of the same enterprise is: they may be about to file it twice.
    await register(bot, ENTERPRISE_USER)
    asked = await demand_until_buttons(bot, ENTERPRISE_USER, DEMAND_AGAIN)
    assert asked.content == f"贵企业已提交过相似诉求：{first}，状态 待分拨。是同一个诉求吗？"
    assert labels(asked) == ["是，关注该案件", "不是，继续提交"]
    bot.emu.press(ENTERPRISE_USER, asked, "是，关注该案件")
    followed = await bot.emu.wait_for_message(
        ENTERPRISE_USER, lambda m: "已为您关注" in m.content, timeout=WAIT
    )
    assert first in followed.content and "共有 2 人" in followed.content

    # An enterprise is not offered a resident's case either.
    await bot.say(ENTERPRISE_USER, "/demand")
    summary = await demand_until_buttons(bot, ENTERPRISE_USER, AGAIN)
    assert "确认提交" in " ".join(labels(summary))


async def test_a_case_opened_elsewhere_gets_triages_hint_once(make_bot):
    """A 12345 work order comes in through the web API, another process without the index:
    the bot's duty hints triage once it has read the case, once only."""
    bot = await make_bot(to_triage())
    first = await bot.report(RESIDENT, FIRST, location=HERE)
    await bot.settle()
    await duplicates.index_of(bot.services).refresh(bot.services)  # built, as at start-up
    web = Services(
        settings=bot.services.settings,
        engine=bot.services.engine,
        rules=bot.services.rules,
        suggester=bot.services.suggester,
        clock=bot.clock,
        gridmap=bot.services.gridmap,
    )
    draft = ReportDraft(nonce=1, text=AGAIN, latitude=HERE[0], longitude=HERE[1])
    case, new = await actions.submit_report(
        web, telegram_id=777001, display_name="12345（接口）", draft=draft
    )
    assert new
    [duty] = bot.app.job_queue.get_jobs_by_name("duplicate_hints_from_elsewhere")

    def hints() -> list:
        return [
            m
            for m in bot.emu.messages(bot.triage_chat)
            if m.content.startswith(f"🔁 {case.ref} 可能与")
        ]

    for _ in range(2):  # the second run finds nothing new
        duplicates.index_of(bot.services).expire()
        await duty.run(bot.app)
        await bot.settle()
    [hint] = hints()
    assert f"1. {first} · 待分拨 · 相似度" in hint.content
    assert labels(hint) == [f"🔗 合并至 {first}"]


def test_the_bots_finder_nests_grids_by_the_districts_tree():
    """Numeric codes (430112001001 lies in 430112001000) nest by the tree, not the spelling;
    codes the tree does not know fall back to the spelling."""
    tree = GridTree(
        [
            GridRecord("430112001000", "月亮岛街道", "street"),
            GridRecord("430112001001", "银星村", "community", "430112001000"),
            GridRecord("430112001101", "银星村第一网格", "grid", "430112001001"),
            GridRecord("430112002000", "高塘岭街道", "street"),
        ]
    )
    within = duplicates.grid_rule(GridMap(tree=tree))
    assert within("430112001101", "430112001000") and within("430112001001", "430112001001")
    assert not within("430112001000", "430112001101")
    assert not within("430112001101", "430112002000")
    assert within("WC-YLD-YX-01", "WC-YLD-YX")  # unknown to the tree: by spelling
    assert duplicates.grid_rule(GridMap()) is grid_within
