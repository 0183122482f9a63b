"""End to end through the bot: cases located in the demo district's grids, triage's 修改网格,
a reporter's 小区/村 (/home), and grid staff's /overdue with names."""

from __future__ import annotations

from sqlmodel import select

from bot import callbacks as cb
from bot import texts
from models import stats
from models.gridmap import GridMap
from models.tables import TRIAGE, CaseEvent, Reporter
from tests.test_bot_kit import RESIDENT, TRIAGE_STAFF, WATER_STAFF, auto_dispatch, to_triage

pytest_plugins = ["tests.test_bot_kit"]  # make_bot and the shared classifier model

WATER_TEXT = "小区停水两天了还没来水，自来水管道一直没人来修"
GRID_STAFF = 9004  # 网格员陈姐, grid WC-YLD-YX-01 in config.toml
IN_YINXING_01 = (28.37, 112.82)
IN_BBOX_OUTSIDE_GRIDS = (28.58, 113.03)  # inside the district's bbox, beyond every boundary


async def located_bot(make_bot, settings):
    """A bot whose GridMap is the demo district's (the kit's default has no grids)."""
    bot = await make_bot(settings)
    bot.services.gridmap = GridMap.from_settings(bot.settings)
    return bot


async def events(bot, case_id: int, action: str) -> list[CaseEvent]:
    async with bot.services.session() as session:
        stmt = select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.action == action)
        return list((await session.exec(stmt)).all())


async def test_a_located_case_shows_its_grid_and_triage_moves_it_street_by_street(make_bot):
    bot = await located_bot(make_bot, to_triage())
    ref = await bot.report(RESIDENT, WATER_TEXT, location=IN_YINXING_01)
    case = await bot.case(ref)
    assert (case.grid_code, case.located_by, case.out_of_grid) == ("WC-YLD-YX-01", "gps", False)

    post = await bot.group_post(bot.triage_chat, ref)
    assert "🏘 网格：月亮岛街道 › 银星村 › 银星村第一网格（按定位）" in post.content
    labels = [text for text, _ in post.buttons]
    # The grid buttons come last but 攻坚哨 (added later still): the others keep their places.
    assert labels == [
        "✅ 确认派至 水务局",
        "🔀 改派其他部门",
        "🚨 标记紧急",
        "🚫 不予受理",
        "🗺 修改网格",
        "🏘 交网格办理",
        "🧩 攻坚哨",
    ]

    answer = await bot.press(TRIAGE_STAFF, post, "修改网格")
    assert answer.get("text") == texts.PICK_STREET
    assert [t for t, _ in post.buttons] == ["白鹭湖街道", "高塘岭街道", "月亮岛街道", "↩️ 返回"]
    await bot.press(TRIAGE_STAFF, post, "高塘岭街道")
    assert [t for t, _ in post.buttons] == [
        "桂花坪村",
        "梅园社区",
        "新城社区",
        "✅ 定为 高塘岭街道",
        "↩️ 返回",
    ]
    await bot.press(TRIAGE_STAFF, post, "梅园社区")
    await bot.press(TRIAGE_STAFF, post, "梅园社区第二网格")
    assert "✅ 定为 梅园社区第二网格" in [t for t, _ in post.buttons]
    await bot.press(TRIAGE_STAFF, post, "定为 梅园社区第二网格")

    case = await bot.case(ref)
    assert (case.grid_code, case.located_by, case.status) == ("WC-GTL-MY-02", "staff", TRIAGE)
    assert "高塘岭街道 › 梅园社区 › 梅园社区第二网格（分拨员指定）" in post.content
    assert "网格改为 高塘岭街道 › 梅园社区 › 梅园社区第二网格" in post.content
    assert [t for t, _ in post.buttons][-3:] == ["🗺 修改网格", "🏘 交网格办理", "🧩 攻坚哨"]
    [moved] = await events(bot, case.id, "grid_changed")
    assert moved.actor_id == TRIAGE_STAFF
    assert moved.details["from"] == "WC-YLD-YX-01" and moved.details["to"] == "WC-GTL-MY-02"
    timeline = await bot.say(TRIAGE_STAFF, f"/case {ref}")
    assert "修改网格：高塘岭街道 › 梅园社区 › 梅园社区第二网格" in timeline.content


async def test_only_triage_may_move_a_case_and_an_old_button_is_refused(make_bot):
    bot = await located_bot(make_bot, to_triage())
    ref = await bot.report(RESIDENT, WATER_TEXT, location=IN_YINXING_01)
    post = await bot.group_post(bot.triage_chat, ref)
    stale = post.button_data("修改网格")  # at the case's first version
    refused = await bot.press_data(GRID_STAFF, post, stale)
    assert refused.get("show_alert") and (await bot.case(ref)).grid_code == "WC-YLD-YX-01"

    await bot.press(TRIAGE_STAFF, post, "标记紧急")  # the case moves on: version + 1
    first = cb.parse(stale)
    set_at_first = cb.make(cb.SET_GRID, first.case_id, first.version, "WC-GTL-MY-02")
    old = await bot.press_data(TRIAGE_STAFF, post, set_at_first)
    assert old.get("show_alert") and old.get("text") == texts.BUTTON_EXPIRED
    assert (await bot.case(ref)).grid_code == "WC-YLD-YX-01"


async def test_a_place_in_the_text_places_the_case_and_no_place_offers_to_ask_home(make_bot):
    bot = await located_bot(make_bot, to_triage())
    ref = await bot.report(RESIDENT, "森林海小区门口水管爆了，水流了一地")
    case = await bot.case(ref)
    assert (case.grid_code, case.located_by) == ("WC-YLD-YX-01", "place")
    assert not any(texts.HOME_OFFER in m.content for m in bot.emu.messages(RESIDENT))

    ref = await bot.report(RESIDENT, "楼道里的灯坏了很久都没人修")
    case = await bot.case(ref)
    assert case.grid_code is None and case.located_by is None and not case.out_of_grid
    post = await bot.group_post(bot.triage_chat, ref)
    assert texts.POST_NO_GRID in post.content
    offer = await bot.emu.wait_for_message(
        RESIDENT, lambda m: texts.HOME_OFFER in m.content, timeout=5
    )

    await bot.press(RESIDENT, offer, "登记我的小区")
    assert (await bot.reply(RESIDENT)).content == texts.ASK_HOME
    unknown = await bot.say(RESIDENT, "火星基地")
    assert unknown.content == texts.HOME_NOT_FOUND.format(text="火星基地")
    saved = await bot.say(RESIDENT, "我住石门苑")
    assert saved.content == texts.HOME_SAVED.format(
        place="石门苑", path="高塘岭街道 › 梅园社区 › 梅园社区第二网格"
    )
    async with bot.services.session() as session:
        reporter = (
            await session.exec(select(Reporter).where(Reporter.telegram_id == RESIDENT))
        ).one()
    assert (reporter.home_grid_code, reporter.home_place) == ("WC-GTL-MY-02", "石门苑")

    # Later reports without a location or a place go to the home grid; no offer this time.
    offers = sum(texts.HOME_OFFER in m.content for m in bot.emu.messages(RESIDENT))
    ref = await bot.report(RESIDENT, "楼道里的灯又坏了，晚上上楼很危险")
    case = await bot.case(ref)
    assert (case.grid_code, case.located_by) == ("WC-GTL-MY-02", "home")
    post = await bot.group_post(bot.triage_chat, ref)
    assert "梅园社区第二网格（按反映人居住地）" in post.content
    assert sum(texts.HOME_OFFER in m.content for m in bot.emu.messages(RESIDENT)) == offers


async def test_home_can_be_skipped_and_only_text_is_taken(make_bot):
    bot = await located_bot(make_bot, to_triage())
    assert (await bot.say(RESIDENT, "/home")).content == texts.ASK_HOME
    bot.emu.send_location(RESIDENT, *IN_YINXING_01)
    assert (await bot.reply(RESIDENT)).content == texts.HOME_TEXT_ONLY
    assert (await bot.say(RESIDENT, "/skip")).content == texts.HOME_SKIPPED
    async with bot.services.session() as session:
        reporter = (
            await session.exec(select(Reporter).where(Reporter.telegram_id == RESIDENT))
        ).first()
    assert reporter is None or reporter.home_grid_code is None


async def test_without_grids_home_says_so_and_posts_have_no_grid_line(make_bot):
    bot = await make_bot(to_triage())  # the kit's Services: no GridMap
    assert (await bot.say(RESIDENT, "/home")).content == texts.HOME_UNAVAILABLE
    ref = await bot.report(RESIDENT, WATER_TEXT, location=IN_YINXING_01)
    assert (await bot.case(ref)).grid_code is None
    post = await bot.group_post(bot.triage_chat, ref)
    assert "网格" not in post.content and "修改网格" not in [t for t, _ in post.buttons]


async def test_a_location_outside_every_grid_is_flagged_and_waits_for_triage(make_bot):
    bot = await located_bot(make_bot, auto_dispatch())
    ref = await bot.report(RESIDENT, WATER_TEXT, location=IN_BBOX_OUTSIDE_GRIDS)
    case = await bot.case(ref)
    assert case.status == TRIAGE and case.out_of_grid and case.grid_code is None
    assert not case.out_of_area
    post = await bot.group_post(bot.triage_chat, ref)
    assert texts.POST_OUT_OF_GRID in post.content
    assert post.buttons[0][0] == "✅ 确认派至 水务局"  # the classifier was sure: triage decides
    # Outside every grid the reporter is not at home: no offer to ask for it.
    assert not any(texts.HOME_OFFER in m.content for m in bot.emu.messages(RESIDENT))


async def test_grid_staff_see_their_grid_by_name_in_overdue(make_bot):
    bot = await located_bot(make_bot, to_triage())
    answer = await bot.say(GRID_STAFF, "/overdue")
    assert "月亮岛街道 › 银星村 › 银星村第一网格" in answer.content
    assert "WC-YLD-YX-01" not in answer.content


async def test_the_dashboards_community_panel_counts_located_cases_by_community(make_bot):
    bot = await located_bot(make_bot, to_triage())
    await bot.report(RESIDENT, WATER_TEXT, location=IN_YINXING_01)
    await bot.report(RESIDENT, "梅园路上的井盖丢了，晚上很危险")
    await bot.report(RESIDENT, "石门苑楼下的垃圾好几天没人清运")
    start, end = stats.month_bounds(bot.clock(), bot.services.rules.calendar)
    async with bot.services.read_session() as session:
        panel = await stats.by_grid(session, start=start, end=end)
    assert panel == [
        {"code": "WC-GTL-MY", "name": "梅园社区", "count": 2},
        {"code": "WC-YLD-YX", "name": "银星村", "count": 1},
    ]


async def test_grid_staffs_overdue_and_stats_cover_their_grid_and_below_by_name(make_bot):
    bot = await located_bot(make_bot, auto_dispatch())
    own = await bot.report(RESIDENT, WATER_TEXT, location=IN_YINXING_01)
    below = await bot.report(RESIDENT, "汉王陵公园旁边的自来水管破了，一直在漏水")
    elsewhere = await bot.report(RESIDENT, "梅园路上的自来水管破了，水流了一地")
    assert [(await bot.case(ref)).grid_code for ref in (own, below, elsewhere)] == [
        "WC-YLD-YX-01",
        "WC-YLD-YX-01-A",
        "WC-GTL-MY-01",
    ]
    assert {(await bot.case(ref)).status for ref in (own, below, elsewhere)} == {"dispatched"}
    bot.clock.advance(days=5)  # past the 1-working-day sign-for limit: all three are red

    overdue = (await bot.say(GRID_STAFF, "/overdue")).content
    assert "🔴 2 件" in overdue and own in overdue and below in overdue
    assert elsewhere not in overdue
    # Each case under the name of the grid it lies in: the worker's own and the micro-grid.
    assert "【银星村第一网格】🔴 1" in overdue and "【汉王陵片区微网格】🔴 1" in overdue

    report = (await bot.say(GRID_STAFF, "/stats")).content
    assert "月亮岛街道 › 银星村 › 银星村第一网格：受理 2 件，派单 2 件，办结 0 件" in report
    assert "当前在办 2 件：🔴 2　🟡 0" in report
    assert "下辖微网格（按红黄灯排序）：" in report
    lines = report.splitlines()
    below_lines = lines[lines.index("下辖微网格（按红黄灯排序）：") + 1 :]
    no_rates = "不出网格 —，不出街镇 —"
    assert below_lines == [
        f"🔴 汉王陵片区微网格：受理 1，在办 1（🔴 1），办结率 0.0%，按时 —，满意率 —，{no_rates}",
        f"🟢 银星新苑微网格：受理 0，在办 0（🔴 0），办结率 —，按时 —，满意率 —，{no_rates}",
    ]
    assert "梅园" not in report and "全区" not in report


async def test_departments_see_where_the_case_lies_in_posts_and_case(make_bot):
    bot = await located_bot(make_bot, to_triage())
    placed = await bot.report(RESIDENT, WATER_TEXT, location=IN_YINXING_01)
    unplaced = await bot.report(RESIDENT, "楼道里的水管一直在漏水，没人来修")
    assert (await bot.case(unplaced)).grid_code is None
    for ref in (placed, unplaced):
        post = await bot.group_post(bot.triage_chat, ref)
        await bot.press(TRIAGE_STAFF, post, "确认派至 水务局")
    await bot.settle()
    water = bot.department_chat("water")
    where = "所在网格：月亮岛街道 › 银星村 › 银星村第一网格"

    post = await bot.group_post(water, placed)
    assert f"🏘 {where}" in post.content
    assert "所在网格" not in (await bot.group_post(water, unplaced)).content
    await bot.press(WATER_STAFF, post, "签收")  # the post is rebuilt: the grid stays
    assert f"🏘 {where}" in post.content

    assert where in (await bot.say(WATER_STAFF, f"/case {placed}")).content
    # The reporter's 已签收 notice first, so that /case's answer is the next message.
    await bot.emu.wait_for_message(RESIDENT, lambda m: "已签收" in m.content, timeout=5)
    await bot.settle()
    assert where in (await bot.say(RESIDENT, f"/case {placed}")).content
    assert "所在网格" not in (await bot.say(WATER_STAFF, f"/case {unplaced}")).content
