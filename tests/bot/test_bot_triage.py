"""End to end through PTB's HTTP stack and the emulator: the triage group's 不予受理 (with each
reason, the typed ones too), 重复反映 merged into the earlier case, the confirmation before a
department is chosen from the list, a list order that never moves, out-of-area cases kept for a
person, and forged or old buttons of all of these answered politely."""

from __future__ import annotations

import asyncio

from bot import callbacks as cb
from bot import texts
from models import cases
from models.lifecycle import NOT_ACCEPTED_REASONS
from models.tables import DISPATCHED, MERGED, NOT_ACCEPTED, SIGNED, TRIAGE
from tests.test_bot_kit import (
    HOUSING_STAFF,
    RESIDENT,
    TRIAGE_STAFF,
    WATER_STAFF,
    auto_dispatch,
    to_triage,
)

WATER_TEXT = "小区停水两天了还没来水，自来水管道一直没人来修"
LOAN_TEXT = "邻居借了我两万块钱一直不还，希望政府帮我要回来"
OUTSIDE = (28.00, 112.00)  # south-west of the district's bounding box
INSIDE = (28.37, 112.82)
QUIET = 0.3  # how long to listen for a message that must not come

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model


def labels(message) -> list[str]:
    return [text for text, _ in message.buttons]


async def events(bot, ref: str):
    async with bot.services.session() as session:
        case = await cases.get_case_by_ref(session, ref)
        return await cases.case_events(session, case.id)


async def open_reasons(bot, ref: str):
    """The triage post of `ref` showing the 不予受理 reasons."""
    post = await bot.group_post(bot.triage_chat, ref)
    answer = await bot.press(TRIAGE_STAFF, post, "不予受理")
    assert answer["text"] == "请选择不予受理的原因（将告知反映人）" and not answer["show_alert"]
    return bot.emu.message(bot.triage_chat, post.message_id)


def test_every_reason_has_advice_for_the_reporter_and_its_verbs_are_triage_verbs():
    assert set(texts.NOT_ACCEPTED_ADVICE) == set(NOT_ACCEPTED_REASONS)
    new_verbs = {cb.NOT_ACCEPT, cb.NOT_ACCEPT_AS, cb.NOT_ACCEPT_OTHER, cb.DUPLICATE, cb.TO}
    assert new_verbs <= cb.TRIAGE_VERBS and not new_verbs & cb.DEPARTMENT_VERBS


# ---------------------------------------------------------------- 不予受理


async def test_a_case_outside_the_remit_is_refused_and_the_reporter_told_where_to_turn(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    reasons = await open_reasons(bot, ref)
    assert labels(reasons) == [
        "不属于本区职责",
        "非政府职能事项",
        "重复反映",
        "其他（填写理由）",
        "↩️ 返回",
    ]
    assert (await bot.case(ref)).status == TRIAGE  # choosing a reason is the decision

    answer = await bot.press(TRIAGE_STAFF, reasons, "不属于本区职责")
    assert answer["text"] == "操作成功"
    case = await bot.case(ref)
    assert case.status == NOT_ACCEPTED
    last = (await events(bot, ref))[-1]
    assert last.action == "not_accepted" and last.details == {
        "category": "remit",
        "reason": "不属于本区职责",
    }

    notice = await bot.emu.wait_for_message(RESIDENT, lambda m: "不予受理" in m.content)
    assert ref in notice.content and "原因：不属于本区职责" in notice.content
    assert "望城区" in notice.content and "12345" in notice.content and "/report" in notice.content
    post = bot.emu.message(bot.triage_chat, reasons.message_id)
    assert (
        "状态：不予受理" in post.content and "不予受理：不属于本区职责（分拨员小李" in post.content
    )
    assert post.buttons == []  # nothing more to do with it

    # The reporter's /my lists it as such.
    assert "不予受理" in (await bot.say(RESIDENT, "/my")).content


async def test_back_from_the_reasons_changes_nothing(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    reasons = await open_reasons(bot, ref)
    await bot.press(TRIAGE_STAFF, reasons, "返回")
    post = bot.emu.message(bot.triage_chat, reasons.message_id)
    assert labels(post) == [
        "✅ 确认派至 水务局",
        "🔀 改派其他部门",
        "🚨 标记紧急",
        "🚫 不予受理",
        "🧩 攻坚哨",
    ]
    case = await bot.case(ref)
    assert case.status == TRIAGE and case.version == 1  # created 0, to triage 1


async def test_a_dispatched_case_is_refused_before_signing_and_its_department_told(make_bot):
    bot = await make_bot(auto_dispatch())
    ref = await bot.report(RESIDENT, LOAN_TEXT)
    case = await bot.case(ref)
    assert case.status == DISPATCHED
    group = bot.department_chat(case.department_code)

    # Refused within the minute the 派单 notice waits: the reporter hears only of the refusal.
    reasons = await open_reasons(bot, ref)
    assert (await bot.press(TRIAGE_STAFF, reasons, "非政府职能事项"))["text"] == "操作成功"
    case = await bot.case(ref)
    assert case.status == NOT_ACCEPTED and case.department_code is None
    told = await bot.group_post(group, "无需再办理")
    assert ref in told.content and "不予受理" in told.content
    notice = await bot.emu.wait_for_message(RESIDENT, lambda m: "不予受理" in m.content)
    assert "非政府职能事项" in notice.content and "12348" in notice.content
    await bot.notices_due()
    assert not any("已派至" in m.content for m in bot.emu.messages(RESIDENT))

    # /case tells the reporter the reason too.
    timeline = await bot.say(RESIDENT, f"/case {ref}")
    assert "不予受理：理由：非政府职能事项" in timeline.content


async def test_a_signed_case_can_no_longer_be_refused(make_bot):
    bot = await make_bot(auto_dispatch())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    triage_post = await bot.group_post(bot.triage_chat, ref)
    assert "🚫 不予受理" in labels(triage_post)
    dept_post = await bot.group_post(bot.department_chat("water"), ref)
    await bot.press(WATER_STAFF, dept_post, "签收")

    # The triage post's button is from before the signing: refused, and the post redrawn.
    answer = await bot.press(TRIAGE_STAFF, triage_post, "不予受理")
    assert answer["show_alert"] and "已过期" in answer["text"]
    redrawn = bot.emu.message(bot.triage_chat, triage_post.message_id)
    assert "🚫 不予受理" not in labels(redrawn) and "🔀 重新分派" in labels(redrawn)
    # A made-up button with the current version is refused by the lifecycle.
    case = await bot.case(ref)
    for data in (
        f"na:{case.id}:{case.version}",
        f"nar:{case.id}:{case.version}:remit",
        f"dup:{case.id}:{case.version}",
        f"nao:{case.id}:{case.version}",
    ):
        answer = await bot.press_data(TRIAGE_STAFF, redrawn, data)
        assert answer["show_alert"] and "办理中" in answer["text"], data
    assert (await bot.case(ref)).status == SIGNED
    await asyncio.sleep(QUIET)
    assert not any(
        "原案件编号" in m.content or "不予受理的理由" in m.content
        for m in bot.emu.messages(bot.triage_chat)
    )


async def test_another_reason_is_typed_in_and_told_to_the_reporter(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    reasons = await open_reasons(bot, ref)
    chat = bot.triage_chat
    await bot.press(TRIAGE_STAFF, reasons, "其他")
    ask = await bot.reply(TRIAGE_STAFF, chat)
    assert "不予受理的理由" in ask.content and ask.markup.force_reply

    too_short = await bot.say(TRIAGE_STAFF, "否", chat=chat)
    assert "不能少于2个字" in too_short.content
    assert (await bot.case(ref)).status == TRIAGE
    ok = await bot.say(TRIAGE_STAFF, "该小区供水由开发商自建设施负责，已转告物业", chat=chat)
    assert ok.content == f"已不予受理（{ref}），将告知反映人。"
    assert (await bot.case(ref)).status == NOT_ACCEPTED
    notice = await bot.emu.wait_for_message(RESIDENT, lambda m: "不予受理" in m.content)
    assert "原因：该小区供水由开发商自建设施负责，已转告物业" in notice.content
    post = bot.emu.message(chat, reasons.message_id)
    assert "不予受理：该小区供水由开发商自建设施负责" in post.content and post.buttons == []

    # The conversation is over: more words in the group do nothing.
    count = len(bot.emu.messages(chat))
    bot.emu.send_text(TRIAGE_STAFF, "还有一点补充", chat_id=chat)
    await asyncio.sleep(QUIET)
    assert len(bot.emu.messages(chat)) == count


async def test_cancel_leaves_the_case_as_it_was(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    reasons = await open_reasons(bot, ref)
    await bot.press(TRIAGE_STAFF, reasons, "其他")
    await bot.reply(TRIAGE_STAFF, bot.triage_chat)
    cancelled = await bot.say(TRIAGE_STAFF, "/cancel", chat=bot.triage_chat)
    assert cancelled.content == "已取消本次操作。"
    case = await bot.case(ref)
    assert case.status == TRIAGE and case.version == 1


# ---------------------------------------------------------------- 重复反映


async def test_a_duplicate_is_merged_into_the_earlier_case(make_bot):
    bot = await make_bot(to_triage())
    first = await bot.report(RESIDENT, WATER_TEXT)
    refused = await bot.report(RESIDENT, LOAN_TEXT)
    reasons = await open_reasons(bot, refused)
    await bot.press(TRIAGE_STAFF, reasons, "不属于本区职责")
    await bot.settle()  # the reporter's notice is out before the next report starts
    again = await bot.report(RESIDENT, "我们小区还是停水，自来水管道到现在也没人来修")
    reasons = await open_reasons(bot, again)
    chat = bot.triage_chat
    await bot.press(TRIAGE_STAFF, reasons, "重复反映")
    ask = await bot.reply(TRIAGE_STAFF, chat)
    assert "原案件编号" in ask.content and ask.markup.force_reply

    # Each wrong answer is explained and the question stays open.
    unknown = await bot.say(TRIAGE_STAFF, "WC-20260101-0099", chat=chat)
    assert unknown.content.startswith("没有找到编号为 WC-20260101-0099 的案件")
    itself = await bot.say(TRIAGE_STAFF, again, chat=chat)
    assert "不能将案件合并到自身" in itself.content
    closed = await bot.say(TRIAGE_STAFF, refused, chat=chat)
    assert f"{refused} 当前为“不予受理”" in closed.content
    assert (await bot.case(again)).status == TRIAGE

    ok = await bot.say(TRIAGE_STAFF, f"和 {first.lower()} 是同一个问题", chat=chat)
    assert ok.content == f"已将 {again} 合并至 {first}，将告知反映人。"
    merged, target = await bot.case(again), await bot.case(first)
    assert (merged.status, merged.merged_into_id) == (MERGED, target.id)
    assert target.status == TRIAGE  # the earlier case carries on
    notice = await bot.emu.wait_for_message(RESIDENT, lambda m: "合并办理" in m.content)
    assert again in notice.content and first in notice.content
    post = bot.emu.message(chat, reasons.message_id)
    assert f"重复反映，已合并至 {first}" in post.content and post.buttons == []
    timeline = await bot.say(RESIDENT, f"/case {again}")
    assert f"合并：并入 {first} 一并办理" in timeline.content


async def test_a_dispatched_duplicate_is_taken_from_its_department(make_bot):
    bot = await make_bot(auto_dispatch())
    first = await bot.report(RESIDENT, WATER_TEXT)
    again = await bot.report(RESIDENT, WATER_TEXT + "，今天还是没水")
    assert (await bot.case(again)).status == DISPATCHED
    reasons = await open_reasons(bot, again)
    await bot.press(TRIAGE_STAFF, reasons, "重复反映")
    await bot.reply(TRIAGE_STAFF, bot.triage_chat)
    await bot.say(TRIAGE_STAFF, first, chat=bot.triage_chat)
    assert (await bot.case(again)).status == MERGED
    told = await bot.group_post(bot.department_chat("water"), "无需再办理")
    assert f"{again} 为重复反映，已合并至 {first}" in told.content


# ---------------------------------------------------------------- choosing a department


async def test_a_department_from_the_list_is_confirmed_and_the_order_never_moves(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    case = await bot.case(ref)
    assert case.suggested_department == "water"
    config_order = [d.name for d in bot.settings.departments]
    by_probability = [bot.settings.department(code).name for code, _ in case.suggestions]
    assert by_probability != config_order  # else this test could not tell them apart
    post = await bot.group_post(bot.triage_chat, ref)
    chat = bot.triage_chat

    await bot.press(TRIAGE_STAFF, post, "改派其他部门")
    picker = bot.emu.message(chat, post.message_id)
    names = labels(picker)[:-1]
    assert names == ["🤖 水务局"] + config_order[1:] and labels(picker)[-1] == "↩️ 返回"

    # Picking asks first; 返回 goes back to the same list, in the same order.
    answer = await bot.press(TRIAGE_STAFF, picker, "住建局")
    assert answer["text"] == "确认改派至 住建局？"
    asked = bot.emu.message(chat, post.message_id)
    assert labels(asked) == ["✅ 确认改派至 住建局", "↩️ 返回"]
    await bot.press(TRIAGE_STAFF, asked, "返回")
    assert labels(bot.emu.message(chat, post.message_id)) == labels(picker)
    assert (await bot.case(ref)).status == TRIAGE

    # The suggestion picked from the list is asked as 派至, then dispatched as confirmed.
    answer = await bot.press(TRIAGE_STAFF, picker, "水务局")
    assert answer["text"] == "确认派至 水务局？"
    asked = bot.emu.message(chat, post.message_id)
    assert (await bot.press(TRIAGE_STAFF, asked, "确认派至 水务局"))["text"] == "操作成功"
    case = await bot.case(ref)
    assert (case.status, case.department_code) == (DISPATCHED, "water")
    assert await bot.corrections() == []

    # Once dispatched: the same order, the current department marked and refused.
    redrawn = bot.emu.message(chat, post.message_id)
    await bot.press(TRIAGE_STAFF, redrawn, "重新分派")
    picker = bot.emu.message(chat, post.message_id)
    assert labels(picker)[:-1] == ["📌 水务局"] + config_order[1:]
    answer = await bot.press(TRIAGE_STAFF, picker, "水务局")
    assert answer["show_alert"] and answer["text"] == "该案件已由 水务局 承办，无需改派。"

    await bot.press(TRIAGE_STAFF, picker, "住建局")
    asked = bot.emu.message(chat, post.message_id)
    assert (await bot.press(TRIAGE_STAFF, asked, "确认改派至 住建局"))["text"] == "操作成功"
    assert (await bot.case(ref)).department_code == "housing"
    await bot.group_post(bot.department_chat("water"), "本部门无需再办理")
    await bot.group_post(bot.department_chat("housing"), ref)
    [correction] = await bot.corrections()
    assert correction.corrected_label == "housing"


async def test_a_confirmation_goes_stale_when_the_case_moves_meanwhile(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    post = await bot.group_post(bot.triage_chat, ref)
    await bot.press(TRIAGE_STAFF, post, "改派其他部门")
    await bot.press(TRIAGE_STAFF, bot.emu.message(bot.triage_chat, post.message_id), "住建局")
    asked = bot.emu.message(bot.triage_chat, post.message_id)
    stale = asked.button_data("确认改派至")
    await bot.press(TRIAGE_STAFF, asked, "返回")
    await bot.press(TRIAGE_STAFF, bot.emu.message(bot.triage_chat, post.message_id), "返回")
    await bot.press(TRIAGE_STAFF, bot.emu.message(bot.triage_chat, post.message_id), "标记紧急")
    answer = await bot.press_data(TRIAGE_STAFF, asked, stale)
    assert answer["show_alert"] and "已过期" in answer["text"]
    assert (await bot.case(ref)).status == TRIAGE


# ---------------------------------------------------------------- out of the district


async def test_a_location_outside_the_district_is_never_dispatched_by_itself(make_bot):
    bot = await make_bot(auto_dispatch())
    inside = await bot.report(RESIDENT, WATER_TEXT, location=INSIDE)
    assert (await bot.case(inside)).status == DISPATCHED  # as sure as can be: dispatched

    outside = await bot.report(RESIDENT, WATER_TEXT, location=OUTSIDE)
    case = await bot.case(outside)
    assert case.out_of_area and case.status == TRIAGE and case.department_code is None
    post = await bot.group_post(bot.triage_chat, outside)
    assert "定位不在辖区范围内" in post.content and "已自动派至" not in post.content
    assert "因定位在辖区外未自动派单" in post.content
    assert "不予受理" in "".join(labels(post))
    await asyncio.sleep(QUIET)
    assert not any(
        outside in m.content and "已派至" in m.content for m in bot.emu.messages(RESIDENT)
    )


# ---------------------------------------------------------------- forged and old buttons


async def test_forged_and_old_buttons_of_the_new_verbs_are_answered_politely(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    post = await bot.group_post(bot.triage_chat, ref)
    case = await bot.case(ref)
    i, v = case.id, case.version
    expected = {
        f"na:999999:{v}": "未找到该案件",
        f"nar:{i}:{v}:because": "无法识别的操作",
        f"nar:{i}:{v}:other": "无法识别的操作",  # 其他 needs words: only through its button
        f"nar:{i}:{v}": "无法识别的操作",
        f"to:{i}:{v}:nowhere": "无法识别的操作",
        f"to:{i}:{v}": "无法识别的操作",
        f"ok:{i}:{v}:nowhere": "无法识别的操作",
        f"nar:{i}:{v + 5}:remit": "该按钮已过期，请以最新消息为准",
        f"dup:{i}:{v - 1}": "该按钮已过期，请以最新消息为准",
        f"nao:{i}:{v + 1}": "该按钮已过期，请以最新消息为准",
        f"go:{i}:{v}:water": "请以最新消息为准",  # no such verb
        f"nar:{i}:{v}:remit:extra": "无法识别的操作",
    }
    for data, text in expected.items():
        answer = await bot.press_data(TRIAGE_STAFF, post, data)
        assert answer["show_alert"] and text in answer["text"], data
    people = {
        RESIDENT: "只有工作人员",
        WATER_STAFF: "没有处理该案件的权限",
        HOUSING_STAFF: "没有处理该案件的权限",
    }
    for user, text in people.items():
        for data in (
            f"na:{i}:{v}",
            f"nar:{i}:{v}:remit",
            f"dup:{i}:{v}",
            f"nao:{i}:{v}",
            f"to:{i}:{v}:housing",
            f"ok:{i}:{v}:housing",
        ):
            answer = await bot.press_data(user, post, data)
            assert answer["show_alert"] and text in answer["text"], (user, data)
    after = await bot.case(ref)
    assert (after.status, after.version) == (TRIAGE, case.version)
    await asyncio.sleep(QUIET)
    assert not any(
        "原案件编号" in m.content or "不予受理的理由" in m.content
        for m in bot.emu.messages(bot.triage_chat)
    )
