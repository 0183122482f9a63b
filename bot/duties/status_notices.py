"""Reporter notices for every status change (dispatched, signed, resolved, extended,
reopened), read from the case events: the safety net behind the notices the bot queues in
the transaction of each change (bot/notices.py builds both, under one key per change).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from bot import notices
from bot.services import Services
from models import drafts, outbox
from models import followup as fq

NOTICE_CURSOR = "followup:notices"  # BotState: last case event the notices have passed
# An event is passed by the cursor only once it is this old: a transaction that took an
# event id earlier but committed later is still seen (ids are not commit-ordered on PG).
NOTICE_SETTLE = timedelta(seconds=60)
NOTICE_CATCH_UP = timedelta(hours=24)  # a fresh cursor looks this far back


async def queue_status_notices(services: Services, now: datetime) -> Counter:
    """Queue a reporter notice for each recent status change that has none yet.

    The bot queues these itself as it makes each change; this catches changes made
    elsewhere (another worker, an admin tool). It reads without the writer's turn and
    writes only the notices that are really missing, so it costs replies nothing.
    """
    async with services.read_session() as session:
        state = await drafts.get_state(session, NOTICE_CURSOR)
        cursor = (
            state["cursor"] if state else await fq.last_event_before(session, now - NOTICE_CATCH_UP)
        )
        changes = await fq.status_notices(session, after_id=cursor)
        last_dispatch = {
            change.case.id: change.event.id
            for change in changes
            if change.event.action == notices.DISPATCHED
        }
        wanted = {
            _notice_key(change): change
            for change in changes
            if change.chat_id is not None
            and change.event.at >= now - NOTICE_CATCH_UP
            and not _replaced(change, last_dispatch)
        }
        queued_before = await fq.existing_outbox_keys(session, list(wanted))
        missing = [change for key, change in wanted.items() if key not in queued_before]
    settled = _settled_cursor(cursor, changes, now)
    if not missing and settled == cursor and state is not None:
        return Counter()
    queued = 0
    async with services.session() as session:
        for change in missing:
            queued += await _queue_notice(session, services, change, now)
        await drafts.save_states(session, {NOTICE_CURSOR: {"cursor": settled}}, now)
    return Counter(notice=queued) if queued else Counter()


def _notice_key(change: fq.StatusNotice) -> str:
    return notices.notice_key(change.case.id, change.event.action, change.version, change.chat_id)


def _replaced(change: fq.StatusNotice, last_dispatch: dict[int, int]) -> bool:
    """A 派单 the case has moved on from (re-routed, returned, reopened): its notice, if it
    was never queued, would now be wrong; the later change has its own.

    `last_dispatch`: the newest 派单 event id per case among the changes read.
    """
    if change.event.action != notices.DISPATCHED:
        return False
    case, event = change.case, change.event
    return (
        last_dispatch[case.id] > event.id
        or case.dispatched_at is None
        or case.dispatched_at > event.at
    )


def _settled_cursor(cursor: int, changes: list[fq.StatusNotice], now: datetime) -> int:
    """The newest event before which every change is old enough (NOTICE_SETTLE) that no
    transaction still open can add one with a smaller id."""
    settled = cursor
    for change in changes:
        if change.event.at > now - NOTICE_SETTLE:
            break
        settled = change.event.id
    return settled


async def _queue_notice(
    session, services: Services, change: fq.StatusNotice, now: datetime
) -> bool:
    """The reporter's notice of one status change; True if this call queued it."""
    event, case = change.event, change.case
    row = await notices.reporter_notice(
        session,
        services,
        case,
        event.action,
        now,
        details=event.details,
        chat_id=change.chat_id,
        version=change.version,
        at=event.at,
    )
    queued = await outbox.enqueue(
        session,
        key=row["key"],
        chat_id=row["chat_id"],
        text=row["text"],
        kind=row["kind"],
        now=now,
        photo=row["photo"],
        case_id=row["case_id"],
        due_at=row["due_at"],
    )
    return queued is not None
