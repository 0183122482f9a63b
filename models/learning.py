"""The learning loop's store side (#16): the model registry mirrored in the store, the staff
decisions a challenger trains on, new corrections, and the acceptance rate of suggestions.

The model files and the champion pointer live in classifier.registry (the bot serves a file);
this table is what the bot, the dashboard and `whistle model` read without touching files.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.tables import (
    CHAMPION,
    RETIRED,
    Case,
    CaseEvent,
    LabelCorrection,
    ModelVersion,
)

# The CaseEvent actions that record a staff choice of department (models.cases._record_label).
DECISION_ACTIONS = ("confirmed", "relabelled")


@dataclass(frozen=True)
class Decision:
    """One case's department as staff settled it (the latest choice)."""

    case_id: int
    text: str
    department: str
    at: datetime
    corrected: bool  # staff chose another department than the suggestion


async def staff_decisions(session: AsyncSession) -> list[Decision]:
    """Every case whose department staff confirmed or changed, with the latest choice. Cases
    the classifier dispatched on its own are left out: training on them teaches the model
    its own guesses."""
    rows = (
        await session.exec(
            select(CaseEvent.case_id, CaseEvent.action, CaseEvent.details, CaseEvent.at, Case.text)
            .join(Case, col(Case.id) == col(CaseEvent.case_id))
            .where(col(CaseEvent.action).in_(DECISION_ACTIONS), CaseEvent.actor_kind == "staff")
            .order_by(col(CaseEvent.at), col(CaseEvent.id))
        )
    ).all()
    corrected = set((await session.exec(select(LabelCorrection.case_id).distinct())).all())
    latest: dict[int, Decision] = {}
    for case_id, action, details, at, text in rows:
        department = details.get("department") if action == "confirmed" else details.get("to")
        if department:
            latest[case_id] = Decision(case_id, text, department, at, case_id in corrected)
    return list(latest.values())


async def newest_correction_id(session: AsyncSession) -> int:
    return (await session.exec(select(func.max(LabelCorrection.id)))).one() or 0


async def corrections_since_training(session: AsyncSession) -> int:
    """Corrections newer than any a kept model was trained with."""
    seen = (await session.exec(select(func.max(ModelVersion.corrections_seen)))).one() or 0
    return (
        await session.exec(
            select(func.count()).select_from(LabelCorrection).where(col(LabelCorrection.id) > seen)
        )
    ).one()


async def last_trained_at(session: AsyncSession) -> datetime | None:
    return (await session.exec(select(func.max(ModelVersion.created_at)))).one()


async def record_model(
    session: AsyncSession,
    *,
    version: str,
    file: str,
    status: str,
    counts: dict,
    metrics: dict,
    gate: dict,
    corrections_seen: int,
    now: datetime,
) -> ModelVersion:
    """Keep a trained model's row (a retraining of the same version updates it)."""
    row = await get_model(session, version) or ModelVersion(
        version=version, file=file, created_at=now
    )
    row.file, row.status, row.counts, row.metrics, row.gate = file, status, counts, metrics, gate
    row.corrections_seen = corrections_seen
    session.add(row)
    await session.flush()
    if status == CHAMPION:
        await set_champion(session, version, now)
    return row


async def set_champion(session: AsyncSession, version: str, now: datetime) -> None:
    """The version now serves; the one that served before is retired. A version the store
    does not know yet (the first served model, or one kept before the store's registry)
    gets a row of its own."""
    for row in (
        await session.exec(select(ModelVersion).where(ModelVersion.status == CHAMPION))
    ).all():
        if row.version != version:
            row.status = RETIRED
            session.add(row)
    row = await get_model(session, version)
    if row is None:
        row = ModelVersion(version=version, file="", created_at=now)
    if row.status != CHAMPION:
        row.status, row.promoted_at = CHAMPION, now
    session.add(row)
    await session.flush()


async def get_model(session: AsyncSession, version: str) -> ModelVersion | None:
    return (await session.exec(select(ModelVersion).where(ModelVersion.version == version))).first()


async def list_models(session: AsyncSession) -> list[ModelVersion]:
    """Every kept model, newest first."""
    return list(
        (
            await session.exec(
                select(ModelVersion).order_by(
                    col(ModelVersion.created_at).desc(), col(ModelVersion.id).desc()
                )
            )
        ).all()
    )


# ---------------------------------------------------------------- acceptance (采纳率)


@dataclass(frozen=True)
class Acceptance:
    reviewed: int  # suggestions staff looked at (confirmed or changed)
    accepted: int  # of them, kept as suggested

    @property
    def rate(self) -> float | None:
        return self.accepted / self.reviewed if self.reviewed else None


async def _reviewed(session: AsyncSession, since: datetime | None):
    """(model_version, created_at, accepted) of each case staff settled; the first staff
    choice decides (a later re-route is about the case, not the suggestion)."""
    query = (
        select(
            Case.id,
            Case.model_version,
            Case.created_at,
            Case.suggested_department,
            CaseEvent.action,
            CaseEvent.details,
        )
        .join(CaseEvent, col(CaseEvent.case_id) == col(Case.id))
        .where(
            col(CaseEvent.action).in_(DECISION_ACTIONS),
            CaseEvent.actor_kind == "staff",
            col(Case.suggested_department).is_not(None),
        )
    )
    if since is not None:
        query = query.where(col(Case.created_at) >= since)
    first: dict[int, tuple] = {}
    for case_id, version, created, suggested, action, details in (
        await session.exec(query.order_by(col(CaseEvent.at), col(CaseEvent.id)))
    ).all():
        if case_id not in first:
            chosen = details.get("department") if action == "confirmed" else details.get("to")
            first[case_id] = (version, created, chosen == suggested)
    return first.values()


async def acceptance_by_version(session: AsyncSession) -> dict[str, Acceptance]:
    """model version → how often staff kept its suggestion."""
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for version, _, accepted in await _reviewed(session, None):
        tally[version or "?"][0] += 1
        tally[version or "?"][1] += int(accepted)
    return {v: Acceptance(n, k) for v, (n, k) in tally.items()}


async def acceptance_by_week(
    session: AsyncSession, since: datetime | None = None
) -> list[tuple[date, str, Acceptance]]:
    """(Monday of the week, model version, acceptance) in time order: the learning curve."""
    tally: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    for version, created, accepted in await _reviewed(session, since):
        monday = created.date() - timedelta(days=created.weekday())
        tally[(monday, version or "?")][0] += 1
        tally[(monday, version or "?")][1] += int(accepted)
    return [(week, version, Acceptance(n, k)) for (week, version), (n, k) in sorted(tally.items())]
