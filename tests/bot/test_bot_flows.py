"""End to end through PTB's HTTP stack and the emulator: residents report, enterprises file
demands, triage confirms or corrects, departments sign for, return, extend and resolve."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

from classifier import Suggester
from models.credit_code import check_character
from models.tables import DISPATCHED, ENTERPRISE, RESOLVED, SIGNED, TRIAGE, URGENT
from tests.test_bot_kit import (
    ENTERPRISE_USER,
    HOUSING_STAFF,
    RESIDENT,
    TRIAGE_STAFF,
    WATER_STAFF,
    auto_dispatch,
    to_triage,
    unsure,
    with_classifier,
)

WATER_TEXT = "小区停水两天了还没来水，自来水管道一直没人来修"
LIGHT_TEXT = "小区门口的路灯坏了好几天，晚上一片漆黑走路很危险"

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model


def valid_credit_code() -> str:
    first17 = "91430112MA4L12345"
    return first17 + check_character(first17)


async def test_report_with_photo_and_location_reaches_triage(make_bot):
    bot = await make_bot(to_triage())
    greeting = await bot.say(RESIDENT, "/start")
    assert "随手拍" in greeting.content
    assert bot.emu.reply_keyboard(RESIDENT)[0] == ["我要反映", "我的反映"]

    assert "描述" in (await bot.say(RESIDENT, "我要反映")).content
    assert "照片" in (await bot.say(RESIDENT, WATER_TEXT)).content
    bot.emu.send_photo(RESIDENT)
    assert "位置" in (await bot.reply(RESIDENT)).content
    bot.emu.send_location(RESIDENT, 28.37, 112.82)
    summary = await bot.reply(RESIDENT)
    assert "初步判断由 水务局 处理" in summary.content
    assert "照片：已附 1 张" in summary.content
    assert [text for text, _ in summary.buttons] == ["✅ 确认提交", "✏️ 修改", "❌ 取消"]

    bot.emu.press(RESIDENT, summary, "确认提交")
    done = await bot.reply(RESIDENT)
    assert done.content.startswith("已受理，编号 WC-")
    assert "我们会及时反馈办理进度" in done.content
    ref = done.content.split("编号 ", 1)[1].split("，", 1)[0]

    case = await bot.case(ref)
    assert case.status == TRIAGE and case.text == WATER_TEXT
    assert len(case.photos) == 1 and (case.latitude, case.longitude) == (28.37, 112.82)
    assert case.suggested_department == "water" and case.model_version
    assert len(case.suggestions) >= 3

    post = await bot.group_post(bot.triage_chat, ref)
    assert post.photo == case.photos[0]
    assert "候选：水务局" in post.content and "28.37000, 112.82000" in post.content
    assert "王阿姨" not in post.content  # no personal data in the groups
    labels = [text for text, _ in post.buttons]
    assert labels == [
        "✅ 确认派至 水务局",
        "🔀 改派其他部门",
        "🚨 标记紧急",
        "🚫 不予受理",
        "🧩 攻坚哨",
    ]
    assert f"/case {ref} 查看地图定位" in post.content

    # /case: the timeline, the photo, then the location as a native map pin.
    timeline = await bot.say(TRIAGE_STAFF, f"/case {ref}")
    photo = await bot.emu.wait_for_message(TRIAGE_STAFF, timeout=5, after=timeline)
    pin = await bot.emu.wait_for_message(TRIAGE_STAFF, timeout=5, after=photo)
    assert photo.photo == case.photos[0]
    assert pin.method == "sendLocation"
    assert (pin.payload["location"]["latitude"], pin.payload["location"]["longitude"]) == (
        28.37,
        112.82,
    )


async def test_an_album_of_photos_is_kept_whole_and_answered_once(make_bot):
    bot = await make_bot(to_triage())
    await bot.say(RESIDENT, "/report")
    assert "照片" in (await bot.say(RESIDENT, WATER_TEXT)).content
    for _ in range(3):  # delivered together, handled one after another
        bot.emu.send_photo(RESIDENT, media_group_id="album-1")
    assert "位置" in (await bot.reply(RESIDENT)).content
    single = bot.emu.send_photo(RESIDENT)  # one more, on its own
    assert "第 4 张" in (await bot.reply(RESIDENT)).content
    for _ in range(3):  # a second album goes over the limit of 5
        bot.emu.send_photo(RESIDENT, media_group_id="album-2")
    fifth = await bot.reply(RESIDENT)
    assert "第 5 张" in fifth.content
    limit = await bot.emu.wait_for_message(RESIDENT, timeout=5, after=fifth)
    assert "最多 5 张" in limit.content
    summary = await bot.say(RESIDENT, "/skip")
    assert "照片：已附 5 张" in summary.content
    assert sum("最多 5 张" in m.content for m in bot.emu.messages(RESIDENT)) == 1
    assert single is not None

    bot.emu.press(RESIDENT, summary, "确认提交")
    ref = (await bot.reply(RESIDENT)).content.split("编号 ", 1)[1].split("，", 1)[0]
    case = await bot.case(ref)
    assert len(case.photos) == len(set(case.photos)) == 5
    post = await bot.group_post(bot.triage_chat, ref)
    assert post.photo == case.photos[0] and "照片 5 张" in post.content
    # Staff see them all with /case: the timeline, then one album.
    timeline = await bot.say(TRIAGE_STAFF, f"/case {ref}")
    album = [
        await bot.emu.wait_for_message(TRIAGE_STAFF, timeout=5, after=timeline.index + i)
        for i in range(1, 6)
    ]
    assert [m.photo for m in album] == case.photos
    assert len({m.payload["media_group_id"] for m in album}) == 1


async def test_confident_case_is_dispatched_at_once_and_still_shown_to_triage(make_bot):
    bot = await make_bot(auto_dispatch())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    case = await bot.case(ref)
    assert case.status == DISPATCHED and case.department_code == "water"
    assert case.sign_by is not None and case.resolve_by is not None

    dept_post = await bot.group_post(bot.department_chat("water"), ref)
    assert [text for text, _ in dept_post.buttons] == ["✍️ 签收", "↩️ 退回"]
    triage_post = await bot.group_post(bot.triage_chat, ref)
    assert "已自动派至 水务局" in triage_post.content
    assert "🔀 重新分派" in [text for text, _ in triage_post.buttons]
    await bot.notices_due()
    notice = await bot.emu.wait_for_message(RESIDENT, lambda m: "已派至 水务局" in m.content)
    assert ref in notice.content
    assert await bot.corrections() == []  # the system's own choice is no correction


async def test_enterprise_registers_once_and_follows_its_demands(make_bot):
    bot = await make_bot(to_triage())
    user = ENTERPRISE_USER
    assert "企业全称" in (await bot.say(user, "/enterprise")).content
    assert "信用代码" in (await bot.say(user, "望城智造科技有限公司")).content
    refused = await bot.say(user, "12345")
    assert "18位" in refused.content
    industry = await bot.say(user, valid_credit_code())
    assert "所属行业" in industry.content
    assert "软件和信息技术服务业" in [b for row in bot.emu.reply_keyboard(user) for b in row]
    park = await bot.say(user, "软件和信息技术服务业")
    assert "园区" in park.content
    assert "不在园区" in [b for row in bot.emu.reply_keyboard(user) for b in row]
    bot.emu.send_text(user, "望城经开区")
    done = await bot.emu.wait_for_message(user, lambda m: "企业登记成功" in m.content)
    assert "行业：软件和信息技术服务业　园区：望城经开区" in done.content
    assert bot.emu.reply_keyboard(user)[0] == ["我要反映", "我的反映"]  # the menu is back
    await bot.emu.wait_for_message(user, lambda m: "企业遇到的问题" in m.content)

    await bot.say(user, "园区门口道路破损严重，货车进出非常困难，希望尽快修复")
    await bot.say(user, "/skip")
    summary = await bot.say(user, "/skip")
    assert "企业诉求（望城智造科技有限公司）" in summary.content
    bot.emu.press(user, summary, "确认提交")
    done = await bot.reply(user)
    assert done.content.startswith("企业诉求已受理，编号 WC-")
    ref = done.content.split("编号 ", 1)[1].split("，", 1)[0]
    case = await bot.case(ref)
    assert case.kind == ENTERPRISE and case.enterprise_id is not None

    post = await bot.group_post(bot.triage_chat, ref)
    assert "企业诉求" in post.content and "望城智造科技有限公司" in post.content

    # Listed apart from personal reports, and followed from /enterprise at any time.
    mine = await bot.say(user, "/my")
    assert "企业诉求：" in mine.content and ref in mine.content
    assert "您最近的反映" not in mine.content
    home = await bot.say(user, "/enterprise")
    assert "统一社会信用代码" in home.content and ref in home.content
    assert "待分拨" in home.content
    bot.emu.press(user, home, "提交新诉求")
    assert "企业遇到的问题" in (await bot.reply(user)).content


async def test_triage_correction_is_saved_and_reaches_the_chosen_department(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, LIGHT_TEXT)
    case = await bot.case(ref)
    chosen = "housing" if case.suggested_department != "housing" else "water"
    chosen_name = bot.settings.department(chosen).name
    post = await bot.group_post(bot.triage_chat, ref)

    answer = await bot.press(TRIAGE_STAFF, post, "改派其他部门")
    assert not answer["show_alert"]
    picker = bot.emu.message(bot.triage_chat, post.message_id)
    assert "↩️ 返回" in [text for text, _ in picker.buttons]
    answer = await bot.press(TRIAGE_STAFF, picker, chosen_name)
    assert answer["text"] == f"确认改派至 {chosen_name}？"  # nothing stored yet
    assert (await bot.case(ref)).status == TRIAGE
    asked = bot.emu.message(bot.triage_chat, post.message_id)
    assert [text for text, _ in asked.buttons] == [f"✅ 确认改派至 {chosen_name}", "↩️ 返回"]
    answer = await bot.press(TRIAGE_STAFF, asked, "确认改派至")
    assert answer["text"] == "操作成功"

    case = await bot.case(ref)
    assert case.status == DISPATCHED and case.department_code == chosen
    [correction] = await bot.corrections()
    assert (correction.suggested_label, correction.corrected_label) == (
        case.suggested_department,
        chosen,
    )
    assert correction.staff_telegram_id == TRIAGE_STAFF and correction.text == LIGHT_TEXT

    await bot.group_post(bot.department_chat(chosen), ref)
    await bot.notices_due()
    await bot.emu.wait_for_message(RESIDENT, lambda m: f"已派至 {chosen_name}" in m.content)
    redrawn = bot.emu.message(bot.triage_chat, post.message_id)
    assert f"已派至 {chosen_name}" in redrawn.content
    assert "🔀 重新分派" in [text for text, _ in redrawn.buttons]


async def test_confirming_the_suggestion_is_no_correction(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    post = await bot.group_post(bot.triage_chat, ref)
    await bot.press(TRIAGE_STAFF, post, "确认派至")
    assert (await bot.case(ref)).department_code == "water"
    assert await bot.corrections() == []


async def test_sign_for_and_resolve_tell_the_reporter_each_time(make_bot):
    bot = await make_bot(auto_dispatch())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    group = bot.department_chat("water")
    post = await bot.group_post(group, ref)
    await bot.notices_due()
    await bot.emu.wait_for_message(RESIDENT, lambda m: "已派至" in m.content)

    answer = await bot.press(WATER_STAFF, post, "签收")
    assert answer["text"] == "操作成功"
    assert (await bot.case(ref)).status == SIGNED
    await bot.emu.wait_for_message(RESIDENT, lambda m: "已签收" in m.content and ref in m.content)
    signed_post = bot.emu.message(group, post.message_id)
    assert [text for text, _ in signed_post.buttons] == ["✅ 办结", "⏳ 申请延期", "↩️ 退回"]

    await bot.press(WATER_STAFF, signed_post, "办结")
    ask = await bot.reply(WATER_STAFF, group)
    assert "办结情况" in ask.content and ask.markup.force_reply
    ask_photo = await bot.say(WATER_STAFF, "已更换损坏阀门，今天下午恢复供水", chat=group)
    assert "办结照片" in ask_photo.content
    bot.emu.send_photo(WATER_STAFF, chat_id=group)
    assert "已办结" in (await bot.reply(WATER_STAFF, group)).content

    case = await bot.case(ref)
    assert case.status == RESOLVED and case.resolution == "已更换损坏阀门，今天下午恢复供水"
    assert case.resolution_photo
    notice = await bot.emu.wait_for_message(RESIDENT, lambda m: "已办结" in m.content)
    assert notice.photo == case.resolution_photo and "恢复供水" in notice.content
    assert bot.emu.message(group, post.message_id).buttons == []


async def test_department_returns_a_case_to_triage_with_a_reason(make_bot):
    bot = await make_bot(auto_dispatch())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    group = bot.department_chat("water")
    post = await bot.group_post(group, ref)
    triage_before = len(bot.emu.messages(bot.triage_chat))

    await bot.press(WATER_STAFF, post, "退回")
    too_short = await bot.say(WATER_STAFF, "不", chat=group)
    assert "至少" in too_short.content
    await bot.say(WATER_STAFF, "属于物业管理范围，建议转住建局", chat=group)
    case = await bot.case(ref)
    assert case.status == TRIAGE and case.department_code is None
    returned = await bot.group_post(bot.triage_chat, "退回", after=triage_before)
    assert "建议转住建局" in returned.content and ref in returned.content
    assert "🔀 改派其他部门" in [text for text, _ in returned.buttons]


async def test_extension_is_requested_by_the_department_and_approved_by_triage(make_bot):
    bot = await make_bot(auto_dispatch())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    group = bot.department_chat("water")
    post = await bot.group_post(group, ref)
    await bot.press(WATER_STAFF, post, "签收")
    signed = bot.emu.message(group, post.message_id)

    await bot.press(WATER_STAFF, signed, "申请延期")
    await bot.reply(WATER_STAFF, group)
    assert "日期" in (await bot.say(WATER_STAFF, "需要更换整段主管道", chat=group)).content
    assert "格式" in (await bot.say(WATER_STAFF, "下周吧", chat=group)).content
    assert "延期申请已提交" in (await bot.say(WATER_STAFF, "2026-12-10", chat=group)).content

    request = await bot.group_post(bot.triage_chat, "申请延期")
    assert "需要更换整段主管道" in request.content
    approve = request.button_data("同意延期")
    answer = await bot.press_data(TRIAGE_STAFF, request, approve)
    assert answer["text"] == "操作成功"
    case = await bot.case(ref)
    assert case.resolve_by == datetime(2026, 12, 10, 10, 0)  # 18:00 in Wangcheng
    await bot.group_post(group, "延期申请已同意")
    again = await bot.press_data(TRIAGE_STAFF, request, approve)
    assert again["show_alert"]  # decided once only


async def test_unsure_classifier_sends_the_case_to_triage_with_a_note(make_bot):
    bot = await make_bot(unsure())
    await bot.say(RESIDENT, "/report")
    await bot.say(RESIDENT, LIGHT_TEXT)
    await bot.say(RESIDENT, "/skip")
    summary = await bot.say(RESIDENT, "/skip")
    assert "将由分拨中心确定承办部门" in summary.content
    bot.emu.press(RESIDENT, summary, "确认提交")
    done = await bot.reply(RESIDENT)
    ref = done.content.split("编号 ", 1)[1].split("，", 1)[0]
    post = await bot.group_post(bot.triage_chat, ref)
    assert "分类器无法确定" in post.content
    assert (await bot.case(ref)).status == TRIAGE


async def test_triage_marks_a_case_urgent(make_bot):
    bot = await make_bot(to_triage())
    ref = await bot.report(RESIDENT, LIGHT_TEXT)
    post = await bot.group_post(bot.triage_chat, ref)
    await bot.press(TRIAGE_STAFF, post, "标记紧急")
    assert (await bot.case(ref)).priority == URGENT
    redrawn = bot.emu.message(bot.triage_chat, post.message_id)
    assert "🚨 紧急" in redrawn.content
    assert "🚨 标记紧急" not in [text for text, _ in redrawn.buttons]


async def test_case_timeline_is_shown_only_to_its_reporter_and_staff(make_bot):
    bot = await make_bot(auto_dispatch())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    mine = await bot.say(RESIDENT, f"/case {ref}")
    assert ref in mine.content and "派单：水务局" in mine.content
    assert "智能分类" not in mine.content  # internal steps are for staff
    other = await bot.say(ENTERPRISE_USER, f"/case {ref}")
    assert "没有找到" in other.content and WATER_TEXT not in other.content
    staff_view = await bot.say(HOUSING_STAFF, f"/case {ref.lower()}")
    assert "没有找到" in staff_view.content  # another department's case
    triage_view = await bot.say(TRIAGE_STAFF, f"/case {ref}")
    assert "智能分类" in triage_view.content
    listing = await bot.say(RESIDENT, "我的反映")
    assert ref in listing.content and "🟢" in listing.content


async def test_staff_corrections_retrain_the_model_and_the_running_bot_picks_it_up(
    make_bot, model_path, tmp_path
):
    own_model = tmp_path / "model.skops"
    shutil.copy(model_path, own_model)
    settings = with_classifier(to_triage(), model_path=str(own_model), reload_check_seconds=0.2)
    suggester = Suggester.from_settings(settings)
    bot = await make_bot(settings, suggester=suggester, model=own_model)
    first_version = suggester.model_version

    ref = await bot.report(RESIDENT, LIGHT_TEXT)
    assert (await bot.case(ref)).model_version == first_version
    post = await bot.group_post(bot.triage_chat, ref)
    await bot.press(TRIAGE_STAFF, post, "改派其他部门")
    picker = bot.emu.message(bot.triage_chat, post.message_id)
    chosen = (
        "environment" if (await bot.case(ref)).suggested_department != "environment" else "housing"
    )
    await bot.press(TRIAGE_STAFF, picker, bot.settings.department(chosen).name)
    asked = bot.emu.message(bot.triage_chat, post.message_id)
    await bot.press(TRIAGE_STAFF, asked, "确认改派至")
    assert len(await bot.corrections()) == 1

    # The documented loop: retrain with the corrections, replacing the model file in place.
    repo = Path(__file__).resolve().parents[2]
    training = await asyncio.create_subprocess_exec(
        sys.executable,
        "train.py",
        "fit",
        "--corrections",
        "--jobs",
        "1",
        "--out",
        str(own_model),
        cwd=repo,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "DATABASE_URL": bot.db_url},
    )
    output = (await training.communicate())[0].decode()
    assert training.returncode == 0, output
    assert "1 条人工更正" in output

    for _ in range(100):  # the reload job runs every 0.2 s here
        if suggester.model_version != first_version:
            break
        await asyncio.sleep(0.05)
    assert suggester.model_version != first_version
    ref = await bot.report(RESIDENT, WATER_TEXT)
    assert (await bot.case(ref)).model_version == suggester.model_version


async def test_the_draft_can_be_edited_before_submitting_or_cancelled(make_bot):
    bot = await make_bot(to_triage())
    await bot.say(RESIDENT, "/report")
    await bot.say(RESIDENT, LIGHT_TEXT)
    await bot.say(RESIDENT, "/skip")
    summary = await bot.say(RESIDENT, "/skip")

    await bot.press(RESIDENT, summary, "修改")
    choices = bot.emu.message(RESIDENT, summary.message_id)
    assert [t for t, _ in choices.buttons] == ["修改描述", "重新上传照片", "修改位置", "↩️ 返回"]
    bot.emu.press(RESIDENT, choices, "修改描述")
    assert "描述" in (await bot.reply(RESIDENT)).content
    summary = await bot.say(RESIDENT, WATER_TEXT)  # straight back to the summary
    assert WATER_TEXT in summary.content and "初步判断由 水务局 处理" in summary.content

    await bot.press(RESIDENT, summary, "修改")
    bot.emu.press(RESIDENT, bot.emu.message(RESIDENT, summary.message_id), "修改位置")
    await bot.reply(RESIDENT)
    summary = await bot.say(RESIDENT, "高塘岭街道新城社区3栋")
    assert "📍 位置：高塘岭街道新城社区3栋" in summary.content

    bot.emu.press(RESIDENT, summary, "取消")
    assert "已取消" in (await bot.reply(RESIDENT)).content
    assert await bot.cases() == []
    assert "作为问题反映提交" in (await bot.say(RESIDENT, WATER_TEXT)).content
