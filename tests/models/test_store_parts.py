"""攻坚哨 in the store (models/parts.py) on SQLite and PostgreSQL: marking a case, each part's
own lifecycle and lights, the case's 办结 waiting for every part, a leader's override,
concurrent signers, and refusals that leave nothing half-written."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlmodel import select

from models import cases, parts, people
from models import followup as fq
from models.cases import Actor
from models.deadlines import RED, YELLOW, case_light
from models.engine import session_scope
from models.lifecycle import (
    WAIVED,
    AlreadyDone,
    IllegalTransition,
    NotPermitted,
    StaleVersion,
)
from models.reference import get_department
from models.tables import DISPATCHED, RESOLVED, SIGNED, TRIAGE, CasePart
from models.validation import InvalidInput
from tests.worded import raises_worded

NOW = datetime(2026, 11, 24, 2, 0)  # Tuesday 10:00 in Changsha
DECISION = "水务局牵头改造管网，住建局督促物业配合，市政局恢复路面；区财政出资，年底前完工"


async def mark(
    seeded,
    case,
    *,
    actor=None,
    lead="water",
    co=("municipal", "housing"),
    decision=DECISION,
    expected_version=None,
):
    async with session_scope(seeded.engine) as s:
        return await parts.mark_hard(
            s,
            case.id,
            lead=lead,
            co_departments=co,
            decision=decision,
            actor=actor or Actor.staff(seeded.leader),
            now=NOW,
            rules=seeded.rules,
            expected_version=expected_version,
        )


async def parts_by_department(seeded, case_id) -> dict[str, CasePart]:
    async with seeded.session_factory() as s:
        return {p.department_code: p for p in await cases.parts_of(s, case_id)}


async def move(seeded, part, action, actor, **kw):
    async with session_scope(seeded.engine) as s:
        if action == "sign":
            return await parts.sign_part(s, part.id, actor, NOW, rules=seeded.rules, **kw)
        return await parts.resolve_part(
            s, part.id, actor, "已完成本部门任务", NOW, rules=seeded.rules, **kw
        )


async def test_bad_marks_are_refused_and_write_nothing(seeded):
    case = await seeded.case_in(TRIAGE, NOW)
    refusals = [
        ({"co": ()}, InvalidInput, "至少选择一个协同部门"),
        ({"co": ("water",)}, InvalidInput, "牵头部门不能同时是协同部门"),
        ({"co": ("nowhere",)}, InvalidInput, "不存在或已停用"),
        ({"decision": "好"}, InvalidInput, "会议决定不能少于"),
        ({"actor": Actor.staff(seeded.dept_staff["water"])}, NotPermitted, "没有权限"),
        ({"expected_version": case.version + 5}, StaleVersion, "已过期"),
    ]
    for kw, kind, words in refusals:
        with raises_worded(kind, words):
            await mark(seeded, case, **kw)
    after = await cases_get(seeded, case.id)
    assert (after.status, after.version, after.is_hard, after.department_code) == (
        TRIAGE,
        case.version,
        False,
        None,
    )
    assert await parts_by_department(seeded, case.id) == {}
    resolved = await seeded.case_in(RESOLVED, NOW, reporter=1002)
    with raises_worded(IllegalTransition, "已办结"):
        await mark(seeded, resolved)
    await mark(seeded, case)
    with raises_worded(AlreadyDone, "已列为攻坚哨"):
        await mark(seeded, case)


async def cases_get(seeded, case_id):
    async with seeded.session_factory() as s:
        return await cases.get_case(s, case_id)


async def test_the_case_resolves_only_when_every_part_is_done(seeded):
    triage_case = await seeded.case_in(TRIAGE, NOW)
    case, made = await mark(seeded, triage_case)  # a leader, who may not dispatch otherwise
    assert (case.status, case.department_code, case.is_hard, case.hard_at) == (
        DISPATCHED,
        "water",
        True,
        NOW,
    )
    assert [p.department_code for p in made] == ["municipal", "housing"]
    found = await parts_by_department(seeded, case.id)
    assert all(p.status == DISPATCHED and p.dispatched_at == NOW for p in found.values())
    async with seeded.session_factory() as s:  # each part's deadlines are its department's
        expected = seeded.rules.deadlines(await get_department(s, "housing"), "normal", NOW)
    assert (found["housing"].sign_by, found["housing"].resolve_by) == expected

    water = Actor.staff(seeded.dept_staff["water"])
    housing = Actor.staff(seeded.dept_staff["housing"])
    municipal = Actor.staff(seeded.dept_staff["municipal"])
    async with session_scope(seeded.engine) as s:
        case = await cases.sign_for(s, case.id, water, NOW, rules=seeded.rules)
    version = case.version

    async def resolve_case():
        async with session_scope(seeded.engine) as s:
            return await cases.resolve(s, case.id, water, "管网改造完成", NOW, rules=seeded.rules)

    with raises_worded(IllegalTransition, "尚有协同部门未办结：市政局、住建局"):
        await resolve_case()
    with raises_worded(NotPermitted, "没有权限"):  # not its part
        await move(seeded, found["municipal"], "sign", housing)
    with raises_worded(IllegalTransition, "不能执行该操作"):  # 办结 before 签收
        await move(seeded, found["housing"], "resolve", housing)
    await move(seeded, found["housing"], "sign", housing)
    with raises_worded(AlreadyDone, "已被签收"):
        await move(seeded, found["housing"], "sign", housing)
    await move(seeded, found["housing"], "resolve", housing)
    with raises_worded(IllegalTransition, "尚有协同部门未办结：市政局"):
        await resolve_case()
    await move(seeded, found["municipal"], "sign", municipal)
    _, done = await move(seeded, found["municipal"], "resolve", municipal)
    assert (done.status, done.result, done.resolved_at) == (RESOLVED, "已完成本部门任务", NOW)
    assert (await cases_get(seeded, case.id)).version == version  # parts never stale its buttons
    assert (await resolve_case()).status == RESOLVED

    async with seeded.session_factory() as s:
        trail = [e.action for e in await cases.case_events(s, case.id)]
    assert trail.count("part_signed") == 2 and trail.count("part_resolved") == 2
    assert trail.index("marked_hard") < trail.index("part_signed") < trail.index("resolved")
    with raises_worded(IllegalTransition, "已办结"):  # the case is closed to its parts now
        await move(seeded, found["municipal"], "resolve", municipal)


async def test_a_leader_overrides_the_open_parts(seeded):
    case, _ = await mark(seeded, await seeded.case_in(SIGNED, NOW), co=("housing",))
    assert case.status == SIGNED  # the lead already had it: nothing restarts
    reason = "经专题会议研究，由水务局统一完成"

    async def waive(actor, why=reason):
        async with session_scope(seeded.engine) as s:
            return await parts.waive_open_parts(s, case.id, actor, why, NOW, rules=seeded.rules)

    with raises_worded(NotPermitted, "没有权限"):
        await waive(Actor.staff(seeded.triage))
    with raises_worded(InvalidInput, "理由不能少于"):
        await waive(Actor.staff(seeded.leader), "好")
    _, waived = await waive(Actor.staff(seeded.leader))
    assert [(p.status, p.result) for p in waived] == [(WAIVED, reason)]
    with raises_worded(AlreadyDone, "均已办结"):
        await waive(Actor.staff(seeded.leader))
    async with session_scope(seeded.engine) as s:
        resolved = await cases.resolve(
            s, case.id, Actor.staff(seeded.dept_staff["water"]), "已完成", NOW, rules=seeded.rules
        )
    assert resolved.status == RESOLVED
    plain = await seeded.case_in(SIGNED, NOW, reporter=1003)
    async with session_scope(seeded.engine) as s:
        with raises_worded(InvalidInput, "不是攻坚哨"):
            await parts.waive_open_parts(
                s, plain.id, Actor.staff(seeded.leader), reason, NOW, rules=seeded.rules
            )


async def test_marking_a_case_of_another_department_moves_it_to_the_lead(seeded):
    case = await seeded.case_in(SIGNED, NOW, department="housing")
    case, _ = await mark(seeded, case, actor=Actor.staff(seeded.triage), co=("municipal",))
    assert (case.status, case.department_code, case.signed_at) == (DISPATCHED, "water", None)


async def test_two_signers_of_one_part_never_both_win(seeded):
    async with session_scope(seeded.engine) as s:
        await people.upsert_staff(s, 9103, "住建局王工", "department", department_code="housing")
    first, second = Actor.staff(seeded.dept_staff["housing"]), Actor.staff(9103)
    for i in range(4):
        _, made = await mark(
            seeded, await seeded.case_in(TRIAGE, NOW, reporter=3000 + i), co=("housing",)
        )

        async def sign_as(actor, part=made[0]):
            try:
                await move(seeded, part, "sign", actor)
                return actor.telegram_id
            except AlreadyDone:
                return None

        winners = await asyncio.gather(sign_as(first), sign_as(second))
        assert sum(w is not None for w in winners) == 1
        async with seeded.session_factory() as s:
            signed = (await s.exec(select(CasePart).where(CasePart.id == made[0].id))).one()
        assert signed.status == SIGNED and signed.version == 1


async def test_parts_light_and_alert_once(seeded):
    _, made = await mark(seeded, await seeded.case_in(TRIAGE, NOW), co=("housing",))
    part = made[0]
    yellow_at = NOW + (part.sign_by - NOW) * 0.9
    assert case_light(part, yellow_at, seeded.rules) == YELLOW
    late = part.sign_by + timedelta(hours=30)
    assert case_light(part, late, seeded.rules) == RED
    async with seeded.session_factory() as s:
        due = await fq.due_part_alerts(s, late, seeded.rules, escalate_after=timedelta(hours=24))
    assert sorted(kind for kind, p, _ in due if p.id == part.id) == ["escalation", "red"]
    async with session_scope(seeded.engine) as s:
        assert await fq.claim_alert(s, part, "red", late)
    async with session_scope(seeded.engine) as s:
        assert not await fq.claim_alert(s, part, "red", late)  # once per deadline
    async with seeded.session_factory() as s:
        due = await fq.due_part_alerts(s, late, seeded.rules, escalate_after=timedelta(hours=24))
    assert [kind for kind, p, _ in due if p.id == part.id] == ["escalation"]
