"""不予受理 in the store and in the figures (SQLite and PostgreSQL): the transition, its event,
who may do it, what is refused without a trace, merging a duplicate, and how stats count it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from models import cases, stats
from models.cases import Actor
from models.engine import session_scope
from models.lifecycle import AlreadyDone, IllegalTransition, NotPermitted, StaleVersion
from models.tables import (
    CLOSED,
    DISPATCHED,
    MERGED,
    NOT_ACCEPTED,
    RESOLVED,
    SIGNED,
    SUBMITTED,
    TRIAGE,
)
from models.validation import InvalidInput
from tests.worded import raises_worded

NOW = datetime(2026, 11, 24, 2, 0)  # Tuesday 10:00 in Changsha
LATER = NOW + timedelta(hours=1)


async def events_of(seeded, case_id):
    async with seeded.session_factory() as s:
        return await cases.case_events(s, case_id)


async def fresh(seeded, case_id):
    async with seeded.session_factory() as s:
        return await cases.get_case(s, case_id)


async def _not_accept(seeded, case, actor=None, **kw):
    kw.setdefault("category", "remit")
    async with session_scope(seeded.engine) as s:
        return await cases.not_accept(
            s, case.id, actor or Actor.staff(seeded.triage), LATER, rules=seeded.rules, **kw
        )


@pytest.mark.parametrize("status", [SUBMITTED, TRIAGE, DISPATCHED])
async def test_triage_refuses_a_case_it_can_still_refuse(seeded, status):
    case = await seeded.case_in(status, NOW)
    refused = await _not_accept(seeded, case, category="nongov", expected_version=case.version)
    assert refused.status == NOT_ACCEPTED and refused.version == case.version + 1
    # Nobody handles it any more: no department, no deadlines; it ended now.
    assert (
        refused.department_code,
        refused.dispatched_at,
        refused.sign_by,
        refused.resolve_by,
    ) == (None, None, None, None)
    assert refused.closed_at == LATER
    last = (await events_of(seeded, case.id))[-1]
    assert (last.action, last.from_status, last.to_status) == ("not_accepted", status, NOT_ACCEPTED)
    assert (last.actor_kind, last.actor_id) == ("staff", seeded.triage)
    assert last.details["category"] == "nongov" and last.details["reason"] == "非政府职能事项"
    if status == DISPATCHED:
        assert last.details["from_department"] == "water"


async def test_a_typed_reason_is_kept_in_the_event(seeded):
    case = await seeded.case_in(TRIAGE, NOW)
    await _not_accept(seeded, case, category="other", note="  系个人之间的借贷纠纷  ")
    last = (await events_of(seeded, case.id))[-1]
    assert last.details == {"category": "other", "reason": "系个人之间的借贷纠纷"}


@pytest.mark.parametrize("status", [SIGNED, RESOLVED, CLOSED, MERGED])
async def test_a_case_past_dispatch_cannot_be_refused(seeded, status):
    case = await seeded.case_in(status, NOW)
    before = len(await events_of(seeded, case.id))
    with pytest.raises(IllegalTransition):
        await _not_accept(seeded, case)
    after = await fresh(seeded, case.id)
    assert (after.status, after.version) == (status, case.version)
    assert len(await events_of(seeded, case.id)) == before


async def test_refusing_twice_is_already_done(seeded):
    case = await seeded.case_in(NOT_ACCEPTED, NOW)
    with raises_worded(AlreadyDone, "已不予受理"):
        await _not_accept(seeded, case)


async def test_bad_reasons_stale_versions_and_others_change_nothing(seeded):
    case = await seeded.case_in(DISPATCHED, NOW)
    before = len(await events_of(seeded, case.id))
    attempts = [
        ({"category": "because"}, InvalidInput),
        ({"category": "other"}, InvalidInput),  # 其他 needs the reason
        ({"category": "other", "note": " 否 "}, InvalidInput),
        ({"category": "other", "note": "长" * 501}, InvalidInput),
        ({"expected_version": case.version + 3}, StaleVersion),
        ({"actor": Actor.staff(seeded.dept_staff["water"])}, NotPermitted),
        ({"actor": Actor.staff(seeded.leader)}, NotPermitted),
        ({"actor": Actor.reporter(1001)}, NotPermitted),
    ]
    for kw, error in attempts:
        with pytest.raises(error):
            await _not_accept(seeded, case, **kw)
    after = await fresh(seeded, case.id)
    assert (after.status, after.version, after.department_code) == (
        DISPATCHED,
        case.version,
        "water",
    )
    assert len(await events_of(seeded, case.id)) == before


async def test_merge_refuses_a_target_that_is_not_open_with_its_status(seeded):
    dup = await seeded.case_in(TRIAGE, NOW)
    for status, name in ((RESOLVED, "已办结"), (NOT_ACCEPTED, "不予受理"), (MERGED, "已合并")):
        target = await seeded.case_in(status, NOW, reporter=2002)
        async with session_scope(seeded.engine) as s:
            with raises_worded(InvalidInput, f"{target.ref} 当前为“{name}”"):
                await cases.merge(
                    s, dup.id, target.id, Actor.staff(seeded.triage), NOW, rules=seeded.rules
                )
    target = await seeded.case_in(DISPATCHED, NOW, reporter=2003)
    async with session_scope(seeded.engine) as s:
        with pytest.raises(StaleVersion):
            await cases.merge(
                s,
                dup.id,
                target.id,
                Actor.staff(seeded.triage),
                NOW,
                rules=seeded.rules,
                expected_version=dup.version - 1,
            )
        merged = await cases.merge(
            s,
            dup.id,
            target.id,
            Actor.staff(seeded.triage),
            NOW,
            rules=seeded.rules,
            expected_version=dup.version,
        )
    assert (merged.status, merged.merged_into_id) == (MERGED, target.id)


async def test_not_accepted_cases_are_counted_as_reports_but_in_no_rate(seeded):
    """Two cases resolved on time by 水务局, one still open there, two refused by triage (one
    of them after 水务局 had been given it): 水务局's 办结率 is 2/3, not 2/4."""
    for _ in range(2):
        case = await seeded.case_in(RESOLVED, NOW)
        async with session_scope(seeded.engine) as s:
            await cases.rate(
                s, case.id, Actor.reporter(1001), "satisfied", None, NOW, rules=seeded.rules
            )
    await seeded.case_in(DISPATCHED, NOW)
    await _not_accept(seeded, await seeded.case_in(DISPATCHED, NOW))
    await _not_accept(seeded, await seeded.case_in(TRIAGE, NOW))

    start, end = NOW - timedelta(days=1), NOW + timedelta(days=1)
    async with session_scope(seeded.engine) as s:
        figures = await stats.summary(s, start=start, end=end, now=LATER, rules=seeded.rules)
        league = {
            row["code"]: row
            for row in await stats.by_department(
                s, start=start, end=end, now=LATER, rules=seeded.rules
            )
        }
    assert figures["created"] == 5 and figures["by_status"][NOT_ACCEPTED] == 2
    assert (figures["dispatched"], figures["done"], figures["open"]) == (3, 2, 1)
    assert figures["completion_rate"] == pytest.approx(2 / 3)
    assert figures["on_time_rate"] == 1.0 and figures["satisfaction_rate"] == 1.0
    assert figures["acceptance_rate"] == 1.0  # 3 dispatched to the suggestion, of 3
    assert league["water"]["created"] == 3
    assert league["water"]["completion_rate"] == pytest.approx(2 / 3)

    # The dashboard's headline says the same (month of NOW in district time).
    dashboard = await stats.dashboard_data(seeded.engine, now=LATER, rules=seeded.rules)
    assert dashboard["headline"]["completion_rate"] == pytest.approx(2 / 3)
    assert dashboard["headline"]["month"] == 5 and dashboard["headline"]["open"] == 1
