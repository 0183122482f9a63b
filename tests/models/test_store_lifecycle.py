"""The case lifecycle: every allowed and refused move, concurrency, and all-or-nothing writes."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import select

from models import cases, people
from models.cases import Actor
from models.engine import session_scope
from models.lifecycle import (
    TRANSITIONS,
    AlreadyDone,
    CaseNotFound,
    IllegalTransition,
    NotPermitted,
    StaleVersion,
)
from models.tables import (
    CLOSED,
    DISPATCHED,
    GRID_ASSIGNED,
    GRID_SIGNED,
    MERGED,
    NOT_ACCEPTED,
    RESOLVED,
    SIGNED,
    SUBMITTED,
    TRIAGE,
    UNSATISFIED,
    VERIFYING,
    CaseEvent,
    ExtensionRequest,
    LabelCorrection,
)
from models.validation import InvalidInput
from tests.worded import raises_worded

NOW = datetime(2026, 11, 24, 2, 0)  # Tuesday 10:00 in Changsha
ALL_STATUSES = (
    SUBMITTED,
    TRIAGE,
    DISPATCHED,
    SIGNED,
    RESOLVED,
    CLOSED,
    MERGED,
    NOT_ACCEPTED,
    GRID_ASSIGNED,
    GRID_SIGNED,
    VERIFYING,
)


async def events_of(seeded, case_id) -> list[CaseEvent]:
    async with seeded.session_factory() as s:
        return await cases.case_events(s, case_id)


async def fresh(seeded, case_id):
    async with seeded.session_factory() as s:
        return await cases.get_case(s, case_id)


async def changes_for(seeded, action: str) -> dict:
    """The column values an action needs when called through transition() directly."""
    if action in ("dispatch", "redispatch", "whistle_department"):
        return {"department_code": "housing"}
    if action == "extend":
        return {"resolve_by": NOW + timedelta(days=30)}
    if action == "set_priority":
        return {"priority": "urgent"}
    if action == "rate":
        return {"satisfaction": "satisfied"}
    if action == "merge":
        target = await seeded.case_in(SUBMITTED, NOW, reporter=4242)
        return {"merged_into_id": target.id}
    return {}


@pytest.mark.parametrize("action", sorted(TRANSITIONS))
async def test_every_status_allows_exactly_the_moves_in_the_table(seeded, action):
    allowed_from, to = TRANSITIONS[action].from_statuses, TRANSITIONS[action].to
    for status in ALL_STATUSES:
        case = await seeded.case_in(status, NOW)
        before = len(await events_of(seeded, case.id))
        changes = await changes_for(seeded, action)
        later = NOW + timedelta(hours=1)
        async with session_scope(seeded.engine) as s:
            if status in allowed_from:
                moved = await cases.transition(
                    s, case.id, action, Actor.SYSTEM, later, rules=seeded.rules, **changes
                )
            else:
                with pytest.raises(IllegalTransition):
                    await cases.transition(
                        s, case.id, action, Actor.SYSTEM, later, rules=seeded.rules, **changes
                    )
                moved = None
        after = await fresh(seeded, case.id)
        events = await events_of(seeded, case.id)
        if moved is None:
            assert (after.status, after.version) == (status, case.version), (action, status)
            assert len(events) == before
            continue
        assert after.status == (to or status), (action, status)
        assert after.version == case.version + 1
        assert len(events) == before + 1
        last = events[-1]
        assert (last.action, last.from_status, last.to_status) == (
            TRANSITIONS[action].event,
            status,
            to or status,
        )
        assert last.at == later


async def test_dispatch_sets_deadlines_from_department_limits(seeded):
    case = await seeded.case_in(TRIAGE, NOW)
    async with session_scope(seeded.engine) as s:
        case = await cases.dispatch(
            s, case.id, "water", Actor.staff(seeded.triage), NOW, rules=seeded.rules
        )
    assert case.status == DISPATCHED and case.dispatched_at == NOW
    # 1 working day to sign, 5 to resolve: Tue 10:00 local -> Wed, and next Tue.
    assert case.sign_by == datetime(2026, 11, 25, 2, 0)
    assert case.resolve_by == datetime(2026, 12, 1, 2, 0)
    async with session_scope(seeded.engine) as s:
        case = await cases.set_priority(
            s, case.id, "urgent", Actor.staff(seeded.leader), NOW, rules=seeded.rules
        )
    assert case.sign_by == NOW + timedelta(hours=2)
    assert case.resolve_by == NOW + timedelta(days=1)


async def test_staff_choice_is_audited_and_corrections_become_training_data(seeded):
    agreed = await seeded.case_in(TRIAGE, NOW, text="水管爆了")
    corrected = await seeded.case_in(TRIAGE, NOW, text="楼道灯不亮")
    triage = Actor.staff(seeded.triage)
    async with session_scope(seeded.engine) as s:
        await cases.dispatch(s, agreed.id, "water", triage, NOW, rules=seeded.rules)
        await cases.dispatch(s, corrected.id, "housing", triage, NOW, rules=seeded.rules)
    assert "confirmed" in [e.action for e in await events_of(seeded, agreed.id)]
    relabel = [e for e in await events_of(seeded, corrected.id) if e.action == "relabelled"]
    assert relabel[0].details == {"from": "water", "to": "housing"}
    async with seeded.session_factory() as s:
        assert await cases.corrections_for_training(s) == [("楼道灯不亮", "housing")]
        # A later redispatch to yet another department wins for that case.
        await cases.redispatch(s, corrected.id, "municipal", triage, NOW, rules=seeded.rules)
        await s.commit()
        assert await cases.corrections_for_training(s) == [("楼道灯不亮", "municipal")]


async def test_return_goes_back_to_triage_and_clears_the_department(seeded):
    case = await seeded.case_in(SIGNED, NOW)
    async with session_scope(seeded.engine) as s:
        case = await cases.return_case(
            s,
            case.id,
            Actor.staff(seeded.dept_staff["water"]),
            "不属于本部门职责",
            NOW,
            rules=seeded.rules,
        )
    assert case.status == TRIAGE
    assert (case.department_code, case.sign_by, case.resolve_by) == (None, None, None)
    last = (await events_of(seeded, case.id))[-1]
    assert last.action == "returned"
    assert last.details == {
        "reason": "不属于本部门职责",
        "department": None,
        "from_department": "water",
    }


async def test_unsatisfied_rating_reopens_with_new_deadlines(seeded):
    case = await seeded.case_in(RESOLVED, NOW)
    later = NOW + timedelta(days=2)
    async with session_scope(seeded.engine) as s:
        case = await cases.rate(
            s, case.id, Actor.reporter(1001), UNSATISFIED, "水还是没来", later, rules=seeded.rules
        )
    assert case.status == DISPATCHED and case.department_code == "water"
    assert case.reopen_count == 1 and case.satisfaction == UNSATISFIED
    assert case.dispatched_at == later and case.resolved_at is None
    assert case.resolve_by == seeded.rules.deadlines(None, "normal", later)[1]
    actions = [e.action for e in await events_of(seeded, case.id)]
    assert actions[-2:] == ["rated", "reopened"]


async def test_satisfied_rating_closes_and_only_the_reporter_may_rate(seeded):
    case = await seeded.case_in(RESOLVED, NOW)
    async with session_scope(seeded.engine) as s:
        with pytest.raises(NotPermitted):
            await cases.rate(
                s, case.id, Actor.reporter(777), "satisfied", None, NOW, rules=seeded.rules
            )
        with pytest.raises(InvalidInput):
            await cases.rate(
                s, case.id, Actor.reporter(1001), "great", None, NOW, rules=seeded.rules
            )
        case = await cases.rate(
            s, case.id, Actor.reporter(1001), "basic", None, NOW, rules=seeded.rules
        )
    assert (case.status, case.satisfaction, case.closed_at) == (CLOSED, "basic", NOW)


async def test_close_unrated(seeded):
    case = await seeded.case_in(RESOLVED, NOW)
    async with session_scope(seeded.engine) as s:
        case = await cases.close_unrated(s, case.id, NOW + timedelta(days=6), rules=seeded.rules)
    assert (case.status, case.satisfaction) == (CLOSED, "unrated")


async def test_extension_request_and_decision(seeded):
    case = await seeded.case_in(SIGNED, NOW)
    dept, triage = Actor.staff(seeded.dept_staff["water"]), Actor.staff(seeded.triage)
    new_by = case.resolve_by + timedelta(days=3)
    async with session_scope(seeded.engine) as s:
        with pytest.raises(InvalidInput):  # must move the deadline later
            await cases.request_extension(s, case.id, dept, "需要采购配件", case.resolve_by, NOW)
        with pytest.raises(NotPermitted):  # triage does not ask, it decides
            await cases.request_extension(s, case.id, triage, "需要采购配件", new_by, NOW)
        req = await cases.request_extension(s, case.id, dept, "需要采购配件", new_by, NOW)
        with pytest.raises(AlreadyDone):
            await cases.request_extension(s, case.id, dept, "再延一次", new_by, NOW)
    async with session_scope(seeded.engine) as s:
        with pytest.raises(NotPermitted):
            await cases.decide_extension(s, req.id, dept, True, NOW, rules=seeded.rules)
        case = await cases.decide_extension(s, req.id, triage, True, NOW, rules=seeded.rules)
        with pytest.raises(AlreadyDone):
            await cases.decide_extension(s, req.id, triage, False, NOW, rules=seeded.rules)
    assert case.resolve_by == new_by and case.yellow_notified_at is None
    async with seeded.session_factory() as s:
        assert (await s.get(ExtensionRequest, req.id)).status == "approved"
    extended = [e for e in await events_of(seeded, case.id) if e.action == "extended"]
    assert extended[0].details["reason"] == "需要采购配件"
    # A second request can be rejected: the deadline stays where it is.
    async with session_scope(seeded.engine) as s:
        again = await cases.request_extension(
            s, case.id, dept, "还要再等等", new_by + timedelta(days=2), NOW
        )
        case = await cases.decide_extension(s, again.id, triage, False, NOW, rules=seeded.rules)
    assert case.resolve_by == new_by
    assert (await events_of(seeded, case.id))[-1].action == "extension_rejected"


async def test_permissions_are_enforced_on_each_move(seeded):
    case = await seeded.case_in(DISPATCHED, NOW)
    housing = Actor.staff(seeded.dept_staff["housing"])
    async with session_scope(seeded.engine) as s:
        with pytest.raises(NotPermitted):
            await cases.sign_for(s, case.id, housing, NOW, rules=seeded.rules)
        with pytest.raises(NotPermitted):
            await cases.sign_for(s, case.id, Actor.reporter(1001), NOW, rules=seeded.rules)
        with pytest.raises(NotPermitted):  # leaders supervise, they don't dispatch
            await cases.redispatch(
                s, case.id, "housing", Actor.staff(seeded.leader), NOW, rules=seeded.rules
            )
        with pytest.raises(NotPermitted):  # a stranger
            await cases.add_progress_note(
                s, case.id, Actor.staff(123456), "看看", NOW, rules=seeded.rules
            )
    assert (await fresh(seeded, case.id)).version == case.version


async def test_stale_button_and_missing_case(seeded):
    case = await seeded.case_in(DISPATCHED, NOW)
    staff = Actor.staff(seeded.dept_staff["water"])
    async with session_scope(seeded.engine) as s:
        await cases.add_progress_note(s, case.id, staff, "已联系物业", NOW, rules=seeded.rules)
    async with session_scope(seeded.engine) as s:
        with pytest.raises(StaleVersion):
            await cases.sign_for(
                s, case.id, staff, NOW, rules=seeded.rules, expected_version=case.version
            )
        with pytest.raises(CaseNotFound):
            await cases.sign_for(s, 999_999, staff, NOW, rules=seeded.rules)
        signed = await cases.sign_for(
            s, case.id, staff, NOW, rules=seeded.rules, expected_version=case.version + 1
        )
    assert signed.status == SIGNED


async def test_refused_input_writes_nothing_even_if_the_caller_commits(seeded):
    case = await seeded.case_in(DISPATCHED, NOW)
    before = len(await events_of(seeded, case.id))
    staff = Actor.staff(seeded.dept_staff["water"])
    async with session_scope(seeded.engine) as s:  # commits after the caught errors
        for attempt in (
            cases.dispatch(
                s, case.id, "nonexistent", Actor.staff(seeded.triage), NOW, rules=seeded.rules
            ),
            cases.return_case(s, case.id, staff, " ", NOW, rules=seeded.rules),
            cases.resolve(s, case.id, staff, "好了", NOW, rules=seeded.rules),  # not signed
            cases.merge(s, case.id, case.id, Actor.staff(seeded.triage), NOW, rules=seeded.rules),
            cases.set_priority(
                s, case.id, "very", Actor.staff(seeded.triage), NOW, rules=seeded.rules
            ),
        ):
            with pytest.raises((InvalidInput, IllegalTransition)):
                await attempt
    after = await fresh(seeded, case.id)
    assert (after.status, after.version) == (DISPATCHED, case.version)
    assert len(await events_of(seeded, case.id)) == before


async def test_failure_inside_a_transition_leaves_nothing_half_written(seeded):
    case = await seeded.case_in(DISPATCHED, NOW)
    staff = Actor.staff(seeded.dept_staff["water"])
    before = len(await events_of(seeded, case.id))
    # 1. The event cannot be stored (details not JSON) after the case row was updated.
    with pytest.raises(Exception, match="not JSON serializable"):
        async with session_scope(seeded.engine) as s:
            await cases.transition(
                s, case.id, "sign", staff, NOW, rules=seeded.rules, details={"oops": object()}
            )
    # 2. The database itself refuses the event insert (a trigger), after the UPDATE.
    async with seeded.engine.begin() as conn:
        if seeded.dialect == "postgresql":
            await conn.execute(
                text(
                    "CREATE FUNCTION refuse_signed() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.action = 'signed' THEN RAISE EXCEPTION 'event store down'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse_signed BEFORE INSERT ON caseevent "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_signed()"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse_signed BEFORE INSERT ON caseevent "
                    "WHEN NEW.action = 'signed' BEGIN SELECT RAISE(ABORT, 'event store down'); END"
                )
            )
    with pytest.raises(Exception, match="event store down"):
        async with session_scope(seeded.engine) as s:
            await cases.sign_for(s, case.id, staff, NOW, rules=seeded.rules)
    after = await fresh(seeded, case.id)
    assert (after.status, after.version, after.signed_at) == (DISPATCHED, case.version, None)
    assert len(await events_of(seeded, case.id)) == before


async def _second_signer(seeded) -> Actor:
    async with session_scope(seeded.engine) as s:
        await people.upsert_staff(s, 9102, "水务局李工", "department", department_code="water")
    return Actor.staff(9102)


async def test_two_staff_signing_at_once_one_wins(seeded):
    """A signs but has not committed; B's sign blocks on the row, then loses with AlreadyDone."""
    case = await seeded.case_in(DISPATCHED, NOW)
    first, second = Actor.staff(seeded.dept_staff["water"]), await _second_signer(seeded)

    async def sign_as(actor):
        async with session_scope(seeded.engine) as s:
            return await cases.sign_for(s, case.id, actor, NOW, rules=seeded.rules)

    async with seeded.session_factory() as session_a:
        await cases.sign_for(session_a, case.id, first, NOW, rules=seeded.rules)
        b = asyncio.create_task(sign_as(second))
        await asyncio.sleep(0.4)
        assert not b.done(), "B should be waiting for A's transaction"
        await session_a.commit()
    with raises_worded(AlreadyDone, "已被签收"):
        await b
    signed = [e for e in await events_of(seeded, case.id) if e.action == "signed"]
    assert [e.actor_id for e in signed] == [first.telegram_id]


async def test_concurrent_signers_never_both_win(seeded):
    first, second = Actor.staff(seeded.dept_staff["water"]), await _second_signer(seeded)
    dispatched = [await seeded.case_in(DISPATCHED, NOW, reporter=2000 + i) for i in range(8)]

    async def sign_as(actor, case_id):
        try:
            async with session_scope(seeded.engine) as s:
                await cases.sign_for(s, case_id, actor, NOW, rules=seeded.rules)
            return actor.telegram_id
        except AlreadyDone:
            return None

    for case in dispatched:
        winners = await asyncio.gather(sign_as(first, case.id), sign_as(second, case.id))
        assert sum(w is not None for w in winners) == 1
        signed = [e for e in await events_of(seeded, case.id) if e.action == "signed"]
        assert [e.actor_id for e in signed] == [w for w in winners if w is not None]


async def test_concurrent_progress_notes_both_land(seeded):
    """Moves that stay allowed after a lost compare-and-set are retried, not refused."""
    case = await seeded.case_in(SIGNED, NOW)
    staff = Actor.staff(seeded.dept_staff["water"])

    async def note(i):
        async with session_scope(seeded.engine) as s:
            await cases.add_progress_note(s, case.id, staff, f"进展{i}", NOW, rules=seeded.rules)

    await asyncio.gather(*(note(i) for i in range(4)))
    after = await fresh(seeded, case.id)
    assert after.version == case.version + 4
    notes = [e for e in await events_of(seeded, case.id) if e.action == "progress_note"]
    assert sorted(e.details["note"] for e in notes) == ["进展0", "进展1", "进展2", "进展3"]


async def test_merge_points_to_the_surviving_case(seeded):
    dup = await seeded.case_in(SUBMITTED, NOW)
    main = await seeded.case_in(DISPATCHED, NOW, reporter=3003)
    async with session_scope(seeded.engine) as s:
        merged = await cases.merge(
            s, dup.id, main.id, Actor.staff(seeded.triage), NOW, rules=seeded.rules
        )
    assert (merged.status, merged.merged_into_id) == (MERGED, main.id)
    async with seeded.session_factory() as s:
        rows = (await s.exec(select(LabelCorrection))).all()
    assert rows == []  # the system dispatch of `main` is not a correction
