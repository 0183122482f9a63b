"""Open311 GeoReport v2 over the routing store: public views of cases, their status changes
(`servicerequestupdates`) and the queue of status callbacks to API clients.

Status callbacks go through the outbox (models.outbox) as rows for chat WEBHOOK_CHAT, keyed by
the CaseEvent they report, so each update is queued once and sent once. They are queued by
`queue_callbacks`, a scan of new CaseEvents, not by the code that moves a case: every way a
case moves (bot, follow-up engine, API) is covered without touching it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import outbox
from models.lifecycle import STATUS_NAMES
from models.tables import (
    CLOSED,
    MERGED,
    NOT_ACCEPTED,
    OPEN_STATUSES,
    RESOLVED,
    ApiClient,
    BotState,
    Case,
    CaseEvent,
    Department,
    Outbox,
)

OPEN, CLOSED_311 = "open", "closed"
CALLBACK_KIND = "open311_update"
_CURSOR_KEY = "open311:callback_cursor"
# Events younger than this may still be joined by an older-id event that commits later
# (PostgreSQL hands out ids before commit): the cursor stays behind them and rescans.
_SETTLE = timedelta(seconds=30)
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_ID_CARD = re.compile(r"(?<![0-9])\d{6}(19|20)\d{2}[01]\d[0-3]\d\d{3}[\dXx](?![0-9])")


def status_311(status: str) -> str:
    """Open311 has two statuses: a case is open while someone still has to act on it."""
    return OPEN if status in OPEN_STATUSES else CLOSED_311


def scrub(text: str) -> str:
    """Public text without mobile numbers or ID card numbers a caller may have typed."""
    return _ID_CARD.sub("[身份证号已隐去]", _PHONE.sub(r"\1****\2", text or ""))


@dataclass(frozen=True)
class Privacy:
    """What public answers may show of a case's place ([open311] in config.toml)."""

    exact_location: bool = False  # else lat/long rounded to ~100 m
    show_address: bool = False

    def coordinates(self, lat: float | None, lon: float | None) -> tuple:
        if lat is None or lon is None or self.exact_location:
            return lat, lon
        return round(lat, 3), round(lon, 3)


def _notes(case: Case, reason: str | None = None) -> str:
    name = STATUS_NAMES.get(case.status, case.status)
    if case.status in (RESOLVED, CLOSED) and case.resolution:
        return f"{name}：{scrub(case.resolution)}"
    if case.status == NOT_ACCEPTED and reason:
        return f"{name}：{reason}"
    return name


def public_request(
    case: Case, departments: dict[str, str], privacy: Privacy, local, reason: str | None = None
) -> dict:
    """One service_request as the public sees it: no names, phones or caller contact."""
    code = case.department_code or case.suggested_department
    lat, lon = privacy.coordinates(case.latitude, case.longitude)
    updated = max(
        t
        for t in (
            case.created_at,
            case.dispatched_at,
            case.signed_at,
            case.resolved_at,
            case.closed_at,
        )
        if t is not None
    )
    return {
        "service_request_id": case.ref,
        "status": status_311(case.status),
        "status_notes": _notes(case, reason),
        "service_name": departments.get(code or "", ""),
        "service_code": code or "",
        "description": scrub(case.text),
        "agency_responsible": departments.get(case.department_code or "", ""),
        "service_notice": "",
        "requested_datetime": local(case.created_at),
        "updated_datetime": local(updated),
        "expected_datetime": local(case.resolve_by) if case.resolve_by else "",
        "address": (case.address or "") if privacy.show_address else "",
        "address_id": "",
        "zipcode": "",
        "lat": lat if lat is not None else "",
        "long": lon if lon is not None else "",
        "media_url": next((p for p in case.photos if p.startswith(("http://", "https://"))), ""),
    }


async def department_names(session: AsyncSession) -> dict[str, str]:
    rows = await session.exec(select(Department.code, Department.name))
    return dict(rows.all())


async def active_departments(session: AsyncSession) -> list[Department]:
    stmt = select(Department).where(col(Department.active).is_(True)).order_by(Department.code)
    return list((await session.exec(stmt)).all())


@dataclass(frozen=True)
class RequestQuery:
    """Filters of GET requests (times naive UTC; ids are case references)."""

    ids: tuple[str, ...] = ()
    service_codes: tuple[str, ...] = ()
    status: str | None = None  # open | closed
    start: datetime | None = None
    end: datetime | None = None
    page: int = 1
    page_size: int = 50


async def find_requests(session: AsyncSession, q: RequestQuery) -> list[Case]:
    """Cases matching the query, newest first (merged cases live on in the one they joined)."""
    stmt = select(Case).where(col(Case.status) != MERGED)
    if q.ids:
        stmt = stmt.where(col(Case.ref).in_(q.ids))
    if q.service_codes:
        stmt = stmt.where(col(Case.department_code).in_(q.service_codes))
    if q.status == OPEN:
        stmt = stmt.where(col(Case.status).in_(OPEN_STATUSES))
    elif q.status == CLOSED_311:
        stmt = stmt.where(col(Case.status).not_in(OPEN_STATUSES))
    if q.start:
        stmt = stmt.where(col(Case.created_at) >= q.start)
    if q.end:
        stmt = stmt.where(col(Case.created_at) <= q.end)
    stmt = (
        stmt.order_by(col(Case.created_at).desc(), col(Case.id).desc())
        .offset((q.page - 1) * q.page_size)
        .limit(q.page_size)
    )
    return list((await session.exec(stmt)).all())


async def not_accepted_reasons(session: AsyncSession, case_ids: list[int]) -> dict[int, str]:
    """The reason triage gave for each 不予受理 case among `case_ids`."""
    if not case_ids:
        return {}
    stmt = select(CaseEvent.case_id, CaseEvent.details).where(
        col(CaseEvent.case_id).in_(case_ids), col(CaseEvent.action) == "not_accepted"
    )
    return {cid: (d or {}).get("reason", "") for cid, d in (await session.exec(stmt)).all()}


# ---------------------------------------------------------------- status updates


def _status_changes():
    """Events that change a case's status (its creation included)."""
    return or_(
        col(CaseEvent.from_status).is_(None), col(CaseEvent.from_status) != col(CaseEvent.to_status)
    )


def update_record(event: CaseEvent, case: Case, local) -> dict:
    """A servicerequestupdates record (mySociety's extension of Open311) for one change."""
    return {
        "update_id": str(event.id),
        "service_request_id": case.ref,
        "external_id": case.external_id or "",
        "status": status_311(event.to_status or case.status),
        "whistle_status": event.to_status or case.status,
        "description": STATUS_NAMES.get(event.to_status or "", event.to_status or ""),
        "updated_datetime": local(event.at),
        "media_url": "",
    }


async def client_updates(
    session: AsyncSession,
    client_id: int,
    start: datetime | None,
    end: datetime | None,
    limit: int = 1000,
) -> list[tuple[CaseEvent, Case]]:
    """Status changes of one client's cases in [start, end], oldest first."""
    stmt = (
        select(CaseEvent, Case)
        .join(Case, col(Case.id) == col(CaseEvent.case_id))
        .where(
            col(Case.api_client_id) == client_id,
            col(CaseEvent.to_status).is_not(None),
            _status_changes(),
        )
    )
    if start:
        stmt = stmt.where(col(CaseEvent.at) >= start)
    if end:
        stmt = stmt.where(col(CaseEvent.at) <= end)
    stmt = stmt.order_by(col(CaseEvent.at), col(CaseEvent.id)).limit(limit)
    return list((await session.exec(stmt)).all())


async def queue_callbacks(session: AsyncSession, now: datetime, local, limit: int = 500) -> int:
    """Queue a callback for each new status change of a case whose client has a callback
    URL; returns how many events were looked at. Safe to run twice (keys are per event)."""
    cursor_row = await session.get(BotState, _CURSOR_KEY)
    cursor = int(cursor_row.value.get("last_id", 0)) if cursor_row else 0
    stmt = (
        select(CaseEvent, Case)
        .join(Case, col(Case.id) == col(CaseEvent.case_id))
        .join(ApiClient, col(ApiClient.id) == col(Case.api_client_id))
        .where(
            col(CaseEvent.id) > cursor,
            col(CaseEvent.to_status).is_not(None),
            _status_changes(),
            col(ApiClient.callback_url).is_not(None),
        )
        .order_by(col(CaseEvent.id))
        .limit(limit)
    )
    rows = list((await session.exec(stmt)).all())
    await outbox.enqueue_many(
        session,
        [
            outbox.push_row(
                key=f"o311:{event.id}",
                chat_id=outbox.WEBHOOK_CHAT,
                text=json.dumps(update_record(event, case, local), ensure_ascii=False),
                kind=CALLBACK_KIND,
                now=now,
                case_id=case.id,
            )
            for event, case in rows
        ],
    )
    settled = [e.id for e, _ in rows if e.at <= now - _SETTLE]
    unsettled = [e.id for e, _ in rows if e.at > now - _SETTLE]
    new_cursor = min(unsettled) - 1 if unsettled else max(settled, default=cursor)
    if len(rows) < limit and not unsettled:
        # Nothing left to scan: jump past events of other cases too (but not unsettled ones).
        newest = (
            await session.exec(
                select(func.max(CaseEvent.id)).where(col(CaseEvent.at) <= now - _SETTLE)
            )
        ).one()
        new_cursor = max(new_cursor, newest or 0)
    if new_cursor > cursor:
        if cursor_row is None:
            session.add(BotState(key=_CURSOR_KEY, value={"last_id": new_cursor}, updated_at=now))
        else:
            cursor_row.value = {"last_id": new_cursor}
            cursor_row.updated_at = now
            session.add(cursor_row)
    return len(rows)


async def callback_target(session: AsyncSession, case_id: int) -> ApiClient | None:
    """The client to call back about a case (None once revoked or without a URL)."""
    stmt = (
        select(ApiClient)
        .join(Case, and_(col(Case.api_client_id) == col(ApiClient.id)))
        .where(
            col(Case.id) == case_id,
            col(ApiClient.active).is_(True),
            col(ApiClient.callback_url).is_not(None),
        )
    )
    return (await session.exec(stmt)).first()


async def hold_for_earlier(session: AsyncSession, row: Outbox) -> bool:
    """Keep a case's updates in order: if an earlier update of the same case is still
    waiting (its client was down), this one waits until just after it. True if held."""
    stmt = select(func.max(Outbox.due_at)).where(
        col(Outbox.case_id) == row.case_id,
        col(Outbox.id) < row.id,
        col(Outbox.chat_id) == outbox.WEBHOOK_CHAT,
        col(Outbox.status) == outbox.PENDING,
    )
    due = (await session.exec(stmt)).one()
    if due is None:
        return False
    await session.exec(
        update(Outbox)
        .where(col(Outbox.id) == row.id)
        .values(due_at=max(due, row.due_at), lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return True
