"""What the duplicate question and triage's hint read about the cases the index found
(models/followers.open_cases_with_counts), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime

from models import followers
from models.engine import session_scope
from models.tables import DISPATCHED, RESOLVED, TRIAGE

NOW = datetime(2026, 11, 24, 2, 0)


async def test_open_cases_come_with_how_many_people_reported_them(seeded):
    lone = await seeded.case_in(TRIAGE, NOW, reporter=3001)
    popular = await seeded.case_in(DISPATCHED, NOW, reporter=3002)
    closed = await seeded.case_in(RESOLVED, NOW, reporter=3003)
    async with session_scope(seeded.engine) as s:
        for neighbour in (3004, 3005):
            await followers.follow(s, popular.id, neighbour, NOW)
    ids = [lone.id, popular.id, closed.id, 999_999]
    async with seeded.session_factory() as s:
        found = await followers.open_cases_with_counts(s, ids)
    assert {case_id: c.reporters for case_id, c in found.items()} == {lone.id: 1, popular.id: 3}
    assert (found[popular.id].ref, found[popular.id].status) == (popular.ref, DISPATCHED)
    async with seeded.session_factory() as s:
        assert await followers.open_cases_with_counts(s, []) == {}


async def test_a_persons_own_and_followed_cases_are_left_out_for_them_only(seeded):
    own = await seeded.case_in(TRIAGE, NOW, reporter=3101)
    followed = await seeded.case_in(TRIAGE, NOW, reporter=3102)
    other = await seeded.case_in(TRIAGE, NOW, reporter=3103)
    async with session_scope(seeded.engine) as s:
        await followers.follow(s, followed.id, 3101, NOW)
    ids = [own.id, followed.id, other.id]
    async with seeded.session_factory() as s:
        assert set(await followers.open_cases_with_counts(s, ids, not_of=3101)) == {other.id}
        # The follower's neighbour still sees every one of them.
        assert set(await followers.open_cases_with_counts(s, ids, not_of=3103)) == {
            own.id,
            followed.id,
        }
        # Someone the store has never seen excludes nothing.
        assert set(await followers.open_cases_with_counts(s, ids, not_of=424242)) == set(ids)
