"""The lifecycle table (models.lifecycle.TRANSITIONS) walked move by move on both databases:
every status is reachable, and every move applies exactly the effects it declares; and the
running deadline's Python rule agrees with its SQL twin."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from models import cases, lifecycle
from models.cases import Actor
from models.engine import session_scope
from models.lifecycle import (
    EFFECTS,
    LIT_STATUSES,
    TRANSITIONS,
    running_deadline,
    running_deadline_sql,
)
from models.tables import DISPATCHED, SIGNED, SUBMITTED, Case, Department
from tests.models.test_store_lifecycle import ALL_STATUSES, changes_for, fresh

NOW = datetime(2026, 11, 24, 2, 0)  # Tuesday 10:00 in Changsha
LATER = NOW + timedelta(hours=3)
MARK = NOW + timedelta(minutes=7)  # reminders and survey times set before the move

_ALERTS = ("yellow_notified_at", "red_notified_at", "escalated_at")
_SURVEY = ("survey_sent_at", "survey_reminded_at")
# The columns each effect may write, stated here independently of the store's code.
WRITES = {
    lifecycle.START_DEADLINES: {"dispatched_at", "signed_at", "sign_by", "resolve_by"},
    lifecycle.RECOUNT_DEADLINES: {"sign_by", "resolve_by", *_ALERTS},
    lifecycle.CLEAR_DEADLINES: {
        "department_code",
        "dispatched_at",
        "signed_at",
        "sign_by",
        "resolve_by",
    },
    lifecycle.FRESH_ALERTS: set(_ALERTS),
    lifecycle.STAMP_SIGNED: {"signed_at"},
    lifecycle.STAMP_RESOLVED: {"resolved_at"},
    lifecycle.STAMP_CLOSED: {"closed_at"},
    lifecycle.RESET_OUTCOME: {"resolved_at", "closed_at", "resolved_level", *_SURVEY},
    lifecycle.COUNT_REOPEN: {"reopen_count"},
    lifecycle.START_GRID_DEADLINES: {"dispatched_at", "signed_at", "sign_by", "resolve_by"},
    lifecycle.STAMP_WHISTLED: {"whistled_at"},
    lifecycle.START_VERIFY: {"verify_by"},
}
_BOOKKEEPING = {"status", "version"}


def test_every_status_is_reachable_from_submitted_and_every_effect_is_used():
    reached, frontier = {SUBMITTED}, [SUBMITTED]
    while frontier:
        status = frontier.pop()
        for t in TRANSITIONS.values():
            if status in t.from_statuses and t.to and t.to not in reached:
                reached.add(t.to)
                frontier.append(t.to)
    assert reached == set(ALL_STATUSES)
    assert {e for t in TRANSITIONS.values() for e in t.effects} == set(EFFECTS) == set(WRITES)
    assert set(cases._EFFECTS) == set(EFFECTS)  # the store knows how to apply each one
    assert all(t.action == action for action, t in TRANSITIONS.items())


async def _expected(seeded, before: Case, effect: str, changes: dict) -> dict:
    """What `effect` should leave in the columns it writes."""
    if effect in (lifecycle.START_DEADLINES, lifecycle.RECOUNT_DEADLINES):
        code = changes.get("department_code", before.department_code)
        async with seeded.session_factory() as s:
            dept = await s.get(Department, code) if code else None
        priority = changes.get("priority", before.priority)
        if effect == lifecycle.START_DEADLINES:
            sign_by, resolve_by = seeded.rules.deadlines(dept, priority, LATER)
            return {
                "dispatched_at": LATER,
                "signed_at": None,
                "sign_by": sign_by,
                "resolve_by": resolve_by,
            }
        if before.dispatched_at is None:  # nothing to recount before the dispatch
            return {name: getattr(before, name) for name in WRITES[effect]}
        sign_by, resolve_by = seeded.rules.deadlines(dept, priority, before.dispatched_at)
        return {
            "sign_by": sign_by if before.status == DISPATCHED else before.sign_by,
            "resolve_by": resolve_by,
            **dict.fromkeys(_ALERTS),
        }
    if effect == lifecycle.START_GRID_DEADLINES:
        sign_by, resolve_by = seeded.rules.grid_deadlines(LATER)
        return {
            "dispatched_at": LATER,
            "signed_at": None,
            "sign_by": sign_by,
            "resolve_by": resolve_by,
        }
    if effect == lifecycle.START_VERIFY:
        return {"verify_by": seeded.rules.verify_deadline(LATER)}
    if effect == lifecycle.COUNT_REOPEN:
        return {"reopen_count": before.reopen_count + 1}
    stamps = {
        lifecycle.STAMP_SIGNED,
        lifecycle.STAMP_RESOLVED,
        lifecycle.STAMP_CLOSED,
        lifecycle.STAMP_WHISTLED,
    }
    return {name: LATER if effect in stamps else None for name in WRITES[effect]}


@pytest.mark.parametrize("action", sorted(TRANSITIONS))
async def test_each_move_applies_exactly_its_declared_effects(seeded, action):
    move = TRANSITIONS[action]
    for status in sorted(move.from_statuses):
        case = await seeded.case_in(status, NOW)
        async with session_scope(seeded.engine) as s:
            await s.exec(
                update(Case)
                .where(Case.id == case.id)
                .values(**dict.fromkeys(_ALERTS + _SURVEY, MARK))
            )
        before = await fresh(seeded, case.id)
        changes = await changes_for(seeded, action)
        async with session_scope(seeded.engine) as s:
            await cases.transition(
                s, case.id, action, Actor.SYSTEM, LATER, rules=seeded.rules, **changes
            )
        after = await fresh(seeded, case.id)
        assert after.status == (move.to or status), (action, status)
        written = set(changes) | _BOOKKEEPING
        for effect in move.effects:
            expected = await _expected(seeded, before, effect, changes)
            actual = {name: getattr(after, name) for name in expected}
            assert actual == expected, (action, status, effect)
            written |= WRITES[effect]
        untouched = set(Case.model_fields) - written
        assert {n: getattr(after, n) for n in untouched} == {
            n: getattr(before, n) for n in untouched
        }, (action, status)


async def test_running_deadline_and_its_sql_twin_agree_in_every_status(seeded):
    """Both deadlines set to different times in every status: the Python rule and the SQL
    expression pick the same one (or none)."""
    sign_by, resolve_by = NOW + timedelta(hours=5), NOW + timedelta(days=4)
    picked = {}
    for status in ALL_STATUSES:
        case = await seeded.case_in(status, NOW)
        async with session_scope(seeded.engine) as s:
            await s.exec(
                update(Case)
                .where(Case.id == case.id)
                .values(sign_by=sign_by, resolve_by=resolve_by)
            )
        case = await fresh(seeded, case.id)
        async with seeded.session_factory() as s:
            in_sql = (await s.exec(select(running_deadline_sql()).where(Case.id == case.id))).one()
        assert in_sql == running_deadline(case), status
        picked[status] = in_sql
    assert picked[DISPATCHED] == sign_by and picked[SIGNED] == resolve_by
    assert {s for s, d in picked.items() if d is not None} == set(LIT_STATUSES)
