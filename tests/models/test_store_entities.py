"""Reporters, enterprises, reference data, case creation and who may see a case."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime

import pytest
from sqlmodel import func, select

from models import cases, people, reference
from models.cases import Actor
from models.credit_code import ALPHABET, is_valid_credit_code, validate_credit_code
from models.engine import session_scope
from models.lifecycle import NotPermitted
from models.tables import DISPATCHED, ENTERPRISE, SUBMITTED, Case, CaseEvent, Department, Grid
from models.validation import InvalidInput, normalize_phone
from tests.worded import raises_worded
from whistle.config import ConfigError, DepartmentConfig, GridConfig

NOW = datetime(2026, 11, 24, 2, 0)


# ---------------------------------------------------------------- 统一社会信用代码


def reference_check_char(first17: str) -> str:
    """GB 32100-2015 §5, written out independently of models.credit_code."""
    charset = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    weights = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
    total = sum(charset.index(c) * w for c, w in zip(first17, weights, strict=True))
    return charset[(31 - total % 31) % 31]


# Bodies (first 17 characters) in the shapes of published codes: 9 = 市场监管 registration,
# 1 = 企业 / 2 = 个体工商户, six-digit division code, nine-character organisation code.
BODIES = [
    "91350100M000100Y4",
    "91430100MA4L16JQ9",
    "91110000802100433",
    "92430122MA4QXTAB7",
    "12100000400000716",
    "91430112MA4T6LUX1",
]


def test_the_published_example_is_valid():
    assert reference_check_char("91350100M000100Y4") == "3"
    assert validate_credit_code("91350100M000100Y43") == "91350100M000100Y43"


@pytest.mark.parametrize("body", BODIES)
def test_codes_with_the_standard_check_character_are_accepted(body):
    code = body + reference_check_char(body)
    assert validate_credit_code(code) == code
    assert validate_credit_code(" " + code.lower() + " ") == code  # typed loosely


@pytest.mark.parametrize("body", BODIES)
def test_any_single_character_change_is_refused(body):
    code = body + reference_check_char(body)
    for i in range(18):
        replacements = [c for c in ALPHABET if c != code[i]]
        if 2 <= i < 8:  # the division code is digits only
            replacements = [c for c in replacements if c.isdigit()]
        for c in replacements[::5]:
            changed = code[:i] + c + code[i + 1 :]
            assert not is_valid_credit_code(changed), changed


@pytest.mark.parametrize(
    "bad, hint",
    [
        ("91350100M000100Y4", "18位"),
        ("91350100M000100Y433", "18位"),
        ("91350100M0001O0Y43", "无效字符"),  # letter O
        ("913501A0M000100Y43", "无效字符"),  # letter in the division code
        ("91350100M000100Y44", "校验位"),
        ("", "18位"),
    ],
)
def test_bad_codes_say_what_is_wrong(bad, hint):
    with raises_worded(InvalidInput, hint):
        validate_credit_code(bad)


# ---------------------------------------------------------------- phone numbers


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("13812345678", "13812345678"),
        ("+86 138-1234-5678", "13812345678"),
        ("0731-88888888", "0731-88888888"),
        ("(0731)8888 8888", "0731-88888888"),
        ("010 6552 9988", "010-65529988"),
    ],
)
def test_valid_phone_numbers_are_normalised(raw, clean):
    assert normalize_phone(raw) == clean


@pytest.mark.parametrize("raw", ["12345", "23812345678", "1381234567", "abc", "0731-123", ""])
def test_invalid_phone_numbers_are_refused(raw):
    with raises_worded(InvalidInput, "手机号码"):
        normalize_phone(raw)


# ---------------------------------------------------------------- reporters, enterprises


async def test_phone_is_kept_only_with_consent(session):
    await people.get_or_create_reporter(session, 1, "张三", now=NOW)
    r = await people.set_reporter_phone(session, 1, "138 1234 5678", consent=True)
    assert (r.phone, r.phone_consent) == ("13812345678", True)
    r = await people.set_reporter_phone(session, 1, "13812345678", consent=False)
    assert (r.phone, r.phone_consent) == (None, False)
    with pytest.raises(InvalidInput):
        await people.set_reporter_phone(session, 1, "12345", consent=True)
    with pytest.raises(InvalidInput):
        await people.set_reporter_phone(session, 404, "13812345678", consent=True)


async def test_reporter_is_created_once_and_reachability_recorded(session):
    a = await people.get_or_create_reporter(session, 5, "李四", now=NOW)
    b = await people.get_or_create_reporter(session, 5, "李四（新名）", now=NOW)
    assert a.id == b.id and b.display_name == "李四（新名）"
    await people.set_reporter_reachable(session, 5, False)
    await people.set_reporter_reachable(session, 999, False)  # unknown: ignored
    await session.commit()
    await session.refresh(b)
    assert b.reachable is False


async def test_concurrent_first_contact_makes_one_reporter(session_factory):
    async def first_contact():
        async with session_factory() as s:
            r = await people.get_or_create_reporter(s, 77, "王五", now=NOW)
            await s.commit()
            return r.id

    ids = await asyncio.gather(*(first_contact() for _ in range(4)))
    assert len(set(ids)) == 1


async def test_enterprise_registration_links_colleagues(session):
    code = "91350100M000100Y43"
    e1 = await people.register_enterprise(session, 10, "望城某某科技有限公司", code, now=NOW)
    e2 = await people.register_enterprise(
        session, 11, "望城某某科技", code.lower(), industry="制造业", park="望城经开区", now=NOW
    )
    assert e1.id == e2.id and e2.industry == "制造业"
    colleague = await people.get_or_create_reporter(session, 11, now=NOW)
    assert (colleague.kind, colleague.enterprise_id) == (ENTERPRISE, e1.id)
    assert (await people.enterprise_of(session, 10)).id == e1.id
    await people.set_news_subscription(session, 10, False)
    assert (await people.enterprise_of(session, 11)).news_subscribed is False
    with raises_worded(InvalidInput, "校验位"):
        await people.register_enterprise(session, 12, "另一家公司", "91350100M000100Y44", now=NOW)
    with raises_worded(InvalidInput, "企业名称"):
        await people.register_enterprise(session, 12, "某", code, now=NOW)
    with pytest.raises(InvalidInput):
        await people.set_news_subscription(session, 12, True)


# ---------------------------------------------------------------- creating cases


async def test_case_gets_readable_unique_refs_per_local_day(session):
    a = await cases.create_case(session, reporter_telegram_id=1, text="路灯不亮", now=NOW)
    b = await cases.create_case(session, reporter_telegram_id=2, text="井盖丢失", now=NOW)
    # 17:00 UTC is already the next day in Changsha.
    c = await cases.create_case(
        session, reporter_telegram_id=1, text="噪音扰民", now=datetime(2026, 11, 24, 17, 0)
    )
    assert [a.ref, b.ref, c.ref] == ["WC-20261124-0001", "WC-20261124-0002", "WC-20261125-0001"]
    assert a.status == SUBMITTED and a.version == 0


async def test_case_records_classification(seeded, session):
    case = await cases.create_case(
        session,
        reporter_telegram_id=1,
        text="停水了",
        now=NOW,
        photos=["file-1"],
        suggestions=[("housing", 0.2), ("water", 0.7)],
        model_version="m-1",
        latitude=28.3,
        longitude=112.8,
        address="月亮岛街道银星村",
        grid_code="WC-YLD-YX-01-A",
    )
    assert (case.suggested_department, case.suggested_confidence) == ("water", 0.7)
    assert case.suggestions == [["water", 0.7], ["housing", 0.2]]
    events = await cases.case_events(session, case.id)
    assert [e.action for e in events] == ["created", "classified"]
    assert events[1].details["model_version"] == "m-1"
    with pytest.raises(InvalidInput):
        await cases.create_case(session, reporter_telegram_id=1, text="  ", now=NOW)
    with pytest.raises(InvalidInput):
        await cases.create_case(
            session, reporter_telegram_id=1, text="x", now=NOW, grid_code="NOWHERE"
        )
    with raises_worded(InvalidInput, "企业"):
        await cases.create_case(session, reporter_telegram_id=1, text="x", now=NOW, kind=ENTERPRISE)


async def test_same_idempotency_key_never_makes_two_cases(session_factory):
    async def submit():
        async with session_factory() as s:
            case = await cases.create_case(
                s, reporter_telegram_id=3, text="楼上漏水", now=NOW, idempotency_key="update:123"
            )
            await s.commit()
            return case.id

    ids = await asyncio.gather(*(submit() for _ in range(3)))
    ids.append(await submit())
    assert len(set(ids)) == 1
    async with session_factory() as s:
        assert (await s.exec(select(func.count()).select_from(Case))).one() == 1
        assert (await s.exec(select(func.count()).select_from(CaseEvent))).one() == 1


async def test_enterprise_case_is_linked_to_the_enterprise(session):
    ent = await people.register_enterprise(
        session, 20, "望城某某食品有限公司", "91350100M000100Y43", now=NOW
    )
    case = await cases.create_case(
        session, reporter_telegram_id=20, text="用工招聘需要帮助", now=NOW, kind=ENTERPRISE
    )
    assert (case.kind, case.enterprise_id) == (ENTERPRISE, ent.id)
    assert [c.id for c in await cases.cases_of_reporter(session, 20, kind=ENTERPRISE)] == [case.id]
    assert await cases.cases_of_reporter(session, 20, kind="resident") == []


# ---------------------------------------------------------------- who sees what


async def test_a_reporter_never_gets_someone_elses_case(seeded):
    mine = await seeded.case_in(DISPATCHED, NOW, reporter=501)
    async with session_scope(seeded.engine) as s:
        await cases.create_case(s, reporter_telegram_id=502, text="别人的问题", now=NOW)
        await people.register_enterprise(s, 601, "望城甲公司", "91350100M000100Y43", now=NOW)
        await people.register_enterprise(s, 602, "望城甲公司", "91350100M000100Y43", now=NOW)
        ent_case = await cases.create_case(
            s, reporter_telegram_id=601, text="企业诉求", now=NOW, kind=ENTERPRISE
        )
    async with seeded.session_factory() as s:
        assert (await cases.case_for_viewer(s, mine.ref, 501)).id == mine.id
        assert (await cases.case_for_viewer(s, mine.ref.lower(), 501)).id == mine.id
        assert await cases.case_for_viewer(s, mine.ref, 502) is None
        assert await cases.case_for_viewer(s, mine.ref, 999) is None  # never seen the bot
        assert await cases.case_for_viewer(s, "WC-20261124-9999", 501) is None
        assert [c.id for c in await cases.cases_of_reporter(s, 502)] != [mine.id]
        assert mine.id not in [c.id for c in await cases.cases_of_reporter(s, 502)]
        # Colleagues of the same enterprise share its cases.
        assert (await cases.case_for_viewer(s, ent_case.ref, 602)).id == ent_case.id
        assert await cases.case_for_viewer(s, ent_case.ref, 501) is None
        # Staff see what their role allows.
        assert await cases.case_for_viewer(s, mine.ref, seeded.triage) is not None
        assert await cases.case_for_viewer(s, mine.ref, seeded.leader) is not None
        assert await cases.case_for_viewer(s, mine.ref, seeded.dept_staff["water"]) is not None
        assert await cases.case_for_viewer(s, mine.ref, seeded.dept_staff["housing"]) is None


async def test_grid_staff_see_cases_in_their_grid_and_below(seeded):
    inside = await seeded.case_in(DISPATCHED, NOW, grid_code="WC-YLD-YX-01-A")
    outside = await seeded.case_in(DISPATCHED, NOW, grid_code="WC-GTL-XC-01")
    grid = Actor.staff(seeded.grid)
    async with session_scope(seeded.engine) as s:
        assert await cases.case_for_viewer(s, inside.ref, seeded.grid) is not None
        assert await cases.case_for_viewer(s, outside.ref, seeded.grid) is None
        await cases.add_progress_note(s, inside.id, grid, "已上门核实", NOW, rules=seeded.rules)
        with pytest.raises(NotPermitted):
            await cases.add_progress_note(s, outside.id, grid, "看看", NOW, rules=seeded.rules)
        with pytest.raises(NotPermitted):
            await cases.sign_for(s, inside.id, grid, NOW, rules=seeded.rules)


# ---------------------------------------------------------------- reference data


async def test_reference_data_follows_config(seeded):
    async with seeded.session_factory() as s:
        depts = await reference.departments(s)
        assert {d.code for d in depts} == {d.code for d in seeded.settings.departments}
        water = await reference.get_department(s, "water")
        assert (water.name, water.chat_id) == ("水务局", -1000000000101)
        assert seeded.rules.limits_for(water, "urgent") == ("2h", "1d")
        assert [st.telegram_id for st in await people.staff_of_department(s, "water")] == [9002]
        assert (await people.get_staff(s, 9001)).role == "triage"
        assert await people.get_staff(s, 1234) is None
        assert (await s.get(Grid, "WC-YLD-YX-01-A")).parent_code == "WC-YLD-YX-01"

    # A department dropped from the config is deactivated, never deleted; limits override.
    changed = dataclasses.replace(
        seeded.settings,
        departments=tuple(
            dataclasses.replace(d, limits={"resolve_normal": "10wd"}) if d.code == "water" else d
            for d in seeded.settings.departments
            if d.code != "transport"
        ),
    )
    async with session_scope(seeded.engine) as s:
        await reference.sync_reference_data(s, changed)
    async with seeded.session_factory() as s:
        assert (await s.get(Department, "transport")).active is False
        assert "transport" not in {d.code for d in await reference.departments(s)}
        assert "transport" in {d.code for d in await reference.departments(s, active_only=False)}
        water = await reference.get_department(s, "water")
        assert seeded.rules.limits_for(water, "normal") == ("1wd", "10wd")


async def test_bad_reference_data_is_refused(seeded):
    bad_limit = dataclasses.replace(
        seeded.settings,
        departments=(
            DepartmentConfig(code="water", name="水务局", limits={"sign_normal": "soon"}),
        ),
    )
    bad_grid = dataclasses.replace(
        seeded.settings,
        grids=(
            *seeded.settings.grids,
            GridConfig(code="ELSEWHERE", name="某处", level="grid", parent="WC-NOWHERE"),
        ),
    )
    for settings, msg in ((bad_limit, "时限"), (bad_grid, "ELSEWHERE 的上级 WC-NOWHERE 不存在")):
        with pytest.raises(ConfigError, match=msg):
            async with session_scope(seeded.engine) as s:
                await reference.sync_reference_data(s, settings)
    # A code need not start with its parent's (统计用区划代码 do not): the parent must exist.
    numeric = dataclasses.replace(
        seeded.settings,
        grids=(
            *seeded.settings.grids,
            GridConfig(code="430112001001", name="某社区", level="community", parent="WC-GTL"),
        ),
    )
    async with session_scope(seeded.engine) as s:
        await reference.sync_reference_data(s, numeric)
    async with seeded.session_factory() as s:
        assert (await s.get(Grid, "430112001001")).parent_code == "WC-GTL"
