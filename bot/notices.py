"""The reporter's progress notices, and the outbox key of every push about a case: one notice
per real change, in order, in the reporter's words.

The bot queues each notice in the transaction of its change (bot/actions.py, bot/survey.py)
and the follow-up engine's safety net (bot/duties/status_notices.py) re-creates missing ones
from the case events; both build them here, under one key per change,
f"case:{id}:{event}:{version}:{chat}", so the outbox keeps one.

- A 派单 notice waits `followup.dispatch_notice_delay_seconds` (60 s) before it goes out. A
  re-route meanwhile drops it (dropped, its key still says "told") and queues its own, so
  triage re-routing A→B→C within a minute reaches the reporter as one notice naming C. A 退回
  drops it too: the department it names no longer has the case. Any other change (签收,
  办结 …) sends it at once: the case has stayed where it names.
- No notice is due before an earlier notice of the same case that is still waiting, so the
  reporter reads them in the order they happened.
- Enterprises read 您的企业诉求 where residents read 您反映的问题 (texts.subject).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import posts, texts
from bot.common import department_name, local_time
from bot.services import Services
from models import followup as fq
from models import outbox
from models.lifecycle import NOT_ACCEPTED_REASONS
from models.tables import Case

log = logging.getLogger(__name__)

DISPATCHED = "dispatched"
# A waiting notice is at most a minute old: a case changes only a few times in that while,
# so its keys are among those of the last few versions.
RECENT_VERSIONS = 20
SUPERSEDED = "superseded by a later change"
# Changes after which the department a waiting 派单 notice names no longer has the case: the
# notice is dropped, not sent first (a 退回 drops it itself: the reporter is not told of it).
ENDS_WAITING_DISPATCH = frozenset({DISPATCHED, "not_accepted", "merged", "to_grid"})


def notice_key(case_id: int, event: str, version: int, chat_id: int) -> str:
    """The outbox key of a push about a case (shared with the group posts' keys)."""
    return f"case:{case_id}:{event}:{version}:{chat_id}"


def case_key(case: Case, event: str, chat_id: int, version: int | None = None) -> str:
    """The outbox key of a push about `case` at its current version (or `version`)."""
    return notice_key(case.id, event, case.version if version is None else version, chat_id)


def push_row(
    case: Case,
    event: str,
    chat_id: int | None,
    text: str,
    kind: str,
    now: datetime,
    *,
    markup=None,
    photo: str | None = None,
) -> dict | None:
    """The outbox row of a push about `case` to a group (None, with a warning, when no chat
    is configured)."""
    if chat_id is None:
        log.warning("no chat configured for %s of case %s", event, case.ref)
        return None
    return outbox.push_row(
        key=case_key(case, event, chat_id),
        chat_id=chat_id,
        text=text,
        kind=kind,
        now=now,
        reply_markup=posts.as_dict(markup),
        photo=photo,
        case_id=case.id,
    )


def _earlier_keys(case: Case, chat_id: int, version: int, events: tuple[str, ...]) -> list[str]:
    """Keys the case's notices of `events` to this chat had before `version`."""
    return [
        notice_key(case.id, event, v, chat_id)
        for v in range(max(0, version - RECENT_VERSIONS), version)
        for event in events
    ]


def notice_text(
    services: Services, case: Case, event: str, details: dict | None = None
) -> tuple[str, str | None]:
    """(text, photo) of the reporter's notice of `event`; `details` are the event's."""
    details = details or {}
    fields = {
        "ref": case.ref,
        "subject": texts.subject(case.kind),
        "department": department_name(services, details.get("department") or case.department_code),
    }
    if event == DISPATCHED:
        return texts.NOTICE_DISPATCHED.format(**fields), None
    if event == "signed":
        return texts.NOTICE_SIGNED.format(**fields), None
    if event == "resolved":
        photo = details.get("photo_file") or (
            case.resolution_photo if details.get("photo") else None
        )
        result = details.get("result") or case.resolution or ""
        return texts.NOTICE_RESOLVED.format(**fields, result=result), photo
    if event == "verified":  # 核查通过: the department's 办结, now confirmed on site
        return (
            texts.NOTICE_RESOLVED.format(**fields, result=case.resolution or ""),
            case.resolution_photo,
        )
    if event == "to_grid":
        grid = details.get("grid") or case.handling_grid_code
        name = services.gridmap.name(grid) or grid or ""
        return texts.NOTICE_TO_GRID.format(**fields, grid=name), None
    if event == "extended":
        deadline = details.get("resolve_by")
        when = local_time(
            services, datetime.fromisoformat(deadline) if deadline else case.resolve_by
        )
        reason = details.get("reason")
        template = texts.NOTICE_EXTENDED if reason else texts.NOTICE_EXTENDED_NO_REASON
        return template.format(**fields, deadline=when, reason=reason), None
    if event == "reopened":
        return texts.NOTICE_REOPENED.format(**fields), None
    if event == "not_accepted":
        category, note = details["category"], details.get("note")
        advice = texts.NOT_ACCEPTED_ADVICE[category].format(
            district=services.settings.district.name
        )
        return texts.NOTICE_NOT_ACCEPTED.format(
            ref=case.ref, reason=note or NOT_ACCEPTED_REASONS[category], advice=advice
        ), None
    if event == "merged":
        return texts.NOTICE_MERGED.format(ref=case.ref, into=details["into"]), None
    if event == "marked_hard":
        co = "、".join(department_name(services, code) for code in details.get("co", ()))
        return texts.NOTICE_MARKED_HARD.format(**fields, co=co or "—"), None
    raise ValueError(f"no reporter notice for {event!r}")


async def drop_waiting_dispatch(
    session: AsyncSession, case: Case, chat_id: int, now: datetime, *, version: int | None = None
) -> None:
    """Drop the case's 派单 notices to this chat that have not gone out yet."""
    version = case.version if version is None else version
    await fq.drop_waiting(
        session, _earlier_keys(case, chat_id, version, (DISPATCHED,)), now, reason=SUPERSEDED
    )


async def notice_row(
    session: AsyncSession,
    case: Case,
    event: str,
    chat_id: int,
    text: str,
    now: datetime,
    *,
    photo: str | None = None,
    version: int | None = None,
    due: datetime | None = None,
    new_case: bool = False,
) -> dict:
    """The outbox row of the reporter's notice of `event`, after dropping what it replaces.

    `version` is the case's version right after the event (default: the case's now); `due`
    the earliest the notice may go (a 派单 notice: dispatch_due). `new_case`: the case was
    created in this transaction, so nothing of it is waiting yet.
    """
    version = case.version if version is None else version
    due = max(now, due or now)
    if not new_case:
        if event in ENDS_WAITING_DISPATCH:
            await drop_waiting_dispatch(session, case, chat_id, now, version=version)
        else:
            await fq.bring_forward(
                session, _earlier_keys(case, chat_id, version, (DISPATCHED,)), now
            )
        waiting = await fq.waiting_due(
            session, _earlier_keys(case, chat_id, version, fq.NOTICE_EVENTS), now
        )
        due = max(due, waiting or due)
    return outbox.push_row(
        key=notice_key(case.id, event, version, chat_id),
        chat_id=chat_id,
        text=text,
        kind="progress",
        now=now,
        photo=photo,
        case_id=case.id,
        due_at=due,
    )


async def reporter_notice(
    session: AsyncSession,
    services: Services,
    case: Case,
    event: str,
    now: datetime,
    *,
    details: dict | None = None,
    chat_id: int | None = None,
    new_case: bool = False,
    version: int | None = None,
    at: datetime | None = None,
) -> dict | None:
    """The outbox row of the reporter's notice of `event` (text, photo, key, when it is due),
    or None when the reporter cannot be reached (blocked the bot: /case still shows them).

    `details`: the event's; `chat_id`: the reporter's chat when the caller knows it
    (`new_case`: the case was created in this transaction); `version`: the case's version
    right after the event (default: now); `at`: when the event happened (default: now).
    """
    chat_id = chat_id or await fq.reporter_chat(session, case)
    if chat_id is None:
        return None
    text, photo = notice_text(services, case, event, details)
    due = dispatch_due(services, at or now) if event == DISPATCHED else None
    return await notice_row(
        session,
        case,
        event,
        chat_id,
        text,
        now,
        photo=photo,
        version=version,
        due=due,
        new_case=new_case,
    )


def dispatch_due(services: Services, at: datetime) -> datetime:
    """When the notice of a 派单 made at `at` goes out, unless a re-route replaces it."""
    return at + timedelta(seconds=services.settings.followup.dispatch_notice_delay_seconds)
