"""What departments and leaders are asked and answered, through the bot and the emulator: the
申请延期 date prompt's example (always a date the bot accepts) and /stats periods."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest

from bot.department import example_date, parse_new_deadline
from bot.services import Services
from models.deadlines import Rules, deadline_after
from tests.test_bot_kit import RESIDENT, START, TRIAGE_STAFF, WATER_STAFF, auto_dispatch

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model

WATER_TEXT = "小区停水两天了还没来水，自来水管道一直没人来修"
LEADER = 9005


async def test_the_extension_prompt_gives_a_future_date_that_is_accepted(make_bot):
    bot = await make_bot(auto_dispatch())
    ref = await bot.report(RESIDENT, WATER_TEXT)
    group = bot.department_chat("water")
    post = await bot.group_post(group, ref)
    await bot.press(WATER_STAFF, post, "签收")
    await bot.press(WATER_STAFF, bot.emu.message(group, post.message_id), "申请延期")
    await bot.reply(WATER_STAFF, group)
    ask = await bot.say(WATER_STAFF, "需要更换整段主管道", chat=group)

    case = await bot.case(ref)
    calendar = bot.services.rules.calendar
    expected = calendar.to_local(deadline_after(case.resolve_by, "3wd", calendar)).date()
    assert f"格式如 {expected.isoformat()} 或 {expected:%m-%d}" in ask.content
    assert f"当前时限 {calendar.to_local(case.resolve_by):%m-%d %H:%M}" in ask.content
    assert expected > calendar.to_local(bot.clock()).date()
    wrong = await bot.say(WATER_STAFF, "下周吧", chat=group)
    assert f"请按 {expected.isoformat()} 这样的格式" in wrong.content
    done = await bot.say(WATER_STAFF, f"{expected:%m-%d}", chat=group)  # the short form
    assert "延期申请已提交" in done.content
    request = await bot.group_post(bot.triage_chat, "申请延期")
    assert f"新的办结日期：{expected:%m-%d} 18:00" in request.content
    assert (await bot.press(TRIAGE_STAFF, request, "同意延期"))["text"] == "操作成功"


@pytest.mark.parametrize(
    ("resolve_by", "now", "expected"),
    [
        # Due Mon 30 Nov 18:00 (10:00 UTC): three working days on is Thu 3 Dec.
        (datetime(2026, 11, 30, 10, 0), START, date(2026, 12, 3)),
        # Overdue since last week: counted from now (Tue 24 Nov), never a past date.
        (datetime(2026, 11, 17, 10, 0), START, date(2026, 11, 27)),
        # Due Wed 30 Sep before the National Day holidays: they are skipped, the 调休 Saturday
        # 10 Oct counts.
        (datetime(2026, 9, 30, 10, 0), datetime(2026, 9, 29, 2, 0), date(2026, 10, 10)),
        (None, START, date(2026, 11, 27)),
    ],
)
def test_example_dates_are_working_days_ahead_and_parse(settings, resolve_by, now, expected):
    services = Services(
        settings=settings, engine=None, rules=Rules.from_settings(settings), suggester=None
    )
    example = example_date(services, resolve_by, now)
    assert example == expected
    assert parse_new_deadline(example.isoformat(), services, now) is not None
    assert parse_new_deadline(f"{example:%m-%d}", services, now) is not None


async def test_stats_understands_the_periods_people_ask_for(make_bot):
    bot = await make_bot(auto_dispatch())
    await bot.report(RESIDENT, WATER_TEXT)  # Tue 24 Nov 2026

    async def title_and_created(arg: str) -> tuple[str, int]:
        answer = (await bot.say(LEADER, f"/stats {arg}".strip())).content
        created = re.search(r"受理 (\d+) 件", answer)
        return answer.splitlines()[0], int(created.group(1)) if created else -1

    assert await title_and_created("") == ("📊 本月办理统计（2026-11-01 至 2026-11-30）", 1)
    assert await title_and_created("本周") == ("📊 本周办理统计（2026-11-23 至 2026-11-29）", 1)
    assert await title_and_created("上周") == ("📊 上周办理统计（2026-11-16 至 2026-11-22）", 0)
    assert await title_and_created("上个月") == (
        "📊 2026年10月办理统计（2026-10-01 至 2026-10-31）",
        0,
    )
    assert await title_and_created("今天") == ("📊 今日办理统计（2026-11-24 至 2026-11-24）", 1)
    assert await title_and_created("今年") == ("📊 2026年办理统计（2026-01-01 至 2026-12-31）", 1)
    assert await title_and_created("2026-11-20~2026-11-24") == (
        "📊 办理统计（2026-11-20 至 2026-11-24）",
        1,
    )
    assert await title_and_created("2026-11-23") == ("📊 办理统计（2026-11-23 至 2026-11-23）", 0)
    future = await bot.say(LEADER, "/stats 2026-12")
    assert future.content == "2026年12月还没有开始，请换一个统计期间。"
    future = await bot.say(LEADER, "/stats 2026-11-25~2026-11-30")
    assert future.content == "2026-11-25 起的期间还没有开始，请换一个统计期间。"
    for wrong in ("明年", "2026-11-24~2026-11-20", "2026-02-30"):
        usage = await bot.say(LEADER, f"/stats {wrong}")
        assert usage.content.startswith("用法：/stats [今天|本周|上周|本月|上个月|今年|")
