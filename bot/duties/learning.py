"""The learning duty (#16): once `[learning] retrain_after_corrections` corrections are new (or
daily at `retrain_at`, if any is), train a challenger on the corpus plus staff decisions in a
separate process, let the gate judge it against the champion, record it in the store and, if
it won, hot-reload the bot's classifier.

The training runs in a spawned process that a thread waits for (classifier.learning), so the
bot's event loop never stalls. `whistle model train` runs the same `retrain_now`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import texts
from classifier import text as textmod
from classifier.data import DataError, corpus_files, read_examples
from classifier.labels import LabelMap
from classifier.learning import (
    ChallengerJob,
    ChallengerResult,
    Decision,
    LearningError,
    LearningParams,
    StaffDecision,
    retrain_async,
)
from classifier.registry import ModelRegistry
from models import learning
from models.tables import CHAMPION, REFUSED
from whistle.config import Settings

log = logging.getLogger(__name__)

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]
STATE_KEY = "learning"  # bot_data: the duty's lock and what it last tried


@dataclass(frozen=True)
class Outcome:
    """A challenger trained and judged."""

    result: ChallengerResult
    decision: Decision

    @property
    def promoted(self) -> bool:
        return self.decision.promote


def registry_of(settings: Settings) -> ModelRegistry:
    """The model folder; the champion is served at the file the bot loads."""
    return ModelRegistry(settings.models_dir, settings.model_path)


def learning_params(settings: Settings) -> LearningParams:
    s = settings.learning
    return LearningParams(
        retrain_after_corrections=s.retrain_after_corrections,
        margin=s.margin,
        department_margin=s.department_margin,
        min_cases=s.min_cases,
        holdout_every=s.holdout_every,
        recent_decisions=s.recent_decisions,
        reference_share=s.reference_share,
        department_cap=s.department_cap,
        min_held_out=s.min_held_out,
    )


def challenger_job(settings: Settings, decisions: list[learning.Decision]) -> ChallengerJob:
    """What the training process needs: the corpus, the decisions (texts stay in memory and
    in the model file, never in the registry's JSON), the district's departments."""
    corpus = [pair for path in corpus_files(settings.corpus_dir) for pair in read_examples(path)]
    userdict = settings.userdict_path
    words = tuple(textmod.read_userdict(userdict)) if userdict.exists() else ()
    # config.toml's corpus_labels (default: the label spelled like the code); a department
    # that takes none learns from decisions alone.
    label_map = LabelMap.from_settings(settings, known_labels={lab for _, lab in corpus})
    return ChallengerJob(
        corpus=corpus,
        decisions=[
            StaffDecision(str(d.case_id), d.text, d.department, d.at, d.corrected)
            for d in decisions
        ],
        label_map=label_map,
        models_dir=settings.models_dir,
        served=settings.model_path,
        params=learning_params(settings),
        userdict_words=words,
    )


async def retrain_now(
    settings: Settings, session: SessionFactory, now: datetime, *, trigger: str
) -> Outcome:
    """Train a challenger, gate it, promote it if it won, record it; LearningError if the
    training failed (nothing is recorded then).

    With no champion yet, a baseline on the corpus alone is trained first and put in service:
    the gate would wave through any first model, and the model shipped with the bot was
    trained on the reference set, so it cannot be judged on it fairly."""
    async with session() as s:
        decisions = await learning.staff_decisions(s)
        seen = await learning.newest_correction_id(s)
    if decisions and registry_of(settings).champion_version() is None:
        await _train(settings, session, [], 0, now, "baseline")
    return await _train(settings, session, decisions, seen, now, trigger)


async def _train(
    settings: Settings,
    session: SessionFactory,
    decisions: list[learning.Decision],
    seen: int,
    now: datetime,
    trigger: str,
) -> Outcome:
    try:
        job = await asyncio.to_thread(challenger_job, settings, decisions)
    except (DataError, OSError) as exc:  # the corpus or dictionary went missing or bad
        raise LearningError(f"训练数据无法读取: {exc}") from exc
    timeout = settings.learning.timeout_minutes * 60
    result, decision = await retrain_async(job, timeout=timeout)
    async with session() as s:
        await learning.record_model(
            s,
            version=result.version,
            file=str(result.path),
            status=CHAMPION if decision.promote else REFUSED,
            counts=result.counts,
            metrics=result.metrics,
            corrections_seen=seen,
            now=now,
            gate=decision.as_dict()
            | {
                "champion": result.champion_version,
                "champion_metrics": result.champion_metrics,
                "trigger": trigger,
                "seconds": result.seconds,
            },
        )
    log.info(
        "challenger %s (%s): %s",
        result.version,
        trigger,
        "promoted" if decision.promote else "refused: " + "; ".join(decision.reasons),
    )
    return Outcome(result, decision)


async def record_champion(settings: Settings, session: SessionFactory, now: datetime) -> str:
    """After an admin's promote or rollback: the store says what the registry serves."""
    version = registry_of(settings).champion_version()
    if version:
        async with session() as s:
            await learning.set_champion(s, version, now)
    return version or ""


def retrain_at_due(settings: Settings, now: datetime, last: datetime | None) -> bool:
    """Whether the daily time (district time) has passed since the last training."""
    if not settings.learning.retrain_at:
        return False
    zone = ZoneInfo(settings.district.timezone)
    local = now.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone)
    hh, mm = (int(x) for x in settings.learning.retrain_at.split(":"))
    today = datetime.combine(local.date(), time(hh, mm), zone)
    moment = today if local >= today else today - timedelta(days=1)
    moment_utc = moment.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    return last is None or last < moment_utc


async def due_trigger(
    settings: Settings, session: SessionFactory, now: datetime, failed_seen: int = 0
) -> str | None:
    """ "corrections" or "daily" when a retraining is due, else None. Corrections that a
    failed training already saw (failed_seen: the newest id then) wait for more."""
    async with session() as s:
        new = await learning.corrections_since_training(s)
        newest = await learning.newest_correction_id(s)
        last = await learning.last_trained_at(s)
    if failed_seen and newest <= failed_seen:
        return None
    if new >= settings.learning.retrain_after_corrections:
        return "corrections"
    if new and retrain_at_due(settings, now, last):
        return "daily"
    return None


async def learning_job(context) -> None:
    """Every [learning] check_seconds in the bot: retrain when due, then reload the model.
    A training still running makes the next tick a no-op."""
    services = context.services
    state = context.application.bot_data.setdefault(STATE_KEY, {})
    lock = state.setdefault("lock", asyncio.Lock())
    if lock.locked():
        return
    async with lock:
        await run_learning_pass(services, state)


async def run_learning_pass(services, state: dict) -> Outcome | None:
    """One look: train if due; a promoted challenger is put in service at once."""
    settings, now = services.settings, services.clock()
    trigger = await due_trigger(settings, services.session, now, state.get("failed_seen", 0))
    if trigger is None:
        return None
    try:
        outcome = await retrain_now(settings, services.session, now, trigger=trigger)
    except LearningError as exc:
        async with services.session() as s:
            state["failed_seen"] = await learning.newest_correction_id(s)
        log.error("挑战模型训练失败，现用模型不变: %s", exc)
        return None
    state.pop("failed_seen", None)
    await put_in_service(services)  # the challenger, or a baseline trained before it
    return outcome


async def put_in_service(services) -> bool:
    """Load the served file now rather than at the next reload check."""
    suggester = services.suggester
    if suggester is None:
        return False
    return bool(await asyncio.to_thread(suggester.reload_if_changed))


# ---- what admins do and see (/model, `whistle model`) -----------------------------------------


async def promote_version(
    settings: Settings, session: SessionFactory, version: str, now: datetime
) -> str:
    """Put a kept model in service by hand (RegistryError says why not)."""
    entry = await asyncio.to_thread(registry_of(settings).promote, version)
    await record_champion(settings, session, now)
    return entry.version


async def rollback(settings: Settings, session: SessionFactory, now: datetime) -> str:
    """Put the champion before the current one back in service (RegistryError if none)."""
    entry = await asyncio.to_thread(registry_of(settings).rollback)
    await record_champion(settings, session, now)
    return entry.version


def _score(metrics: dict, name: str) -> str:
    m = metrics.get(name) or {}
    if not m.get("n"):
        return texts.MODEL_NO_SCORE
    return texts.MODEL_SCORE.format(f1=m["macro_f1"], n=m["n"])


def describe_models(
    rows: list, acceptance: dict, serving: str, retrain_after: int, limit: int = 5
) -> str:
    """The newest `limit` models: status, data counts, held-out scores, acceptance rate."""
    if not rows:
        return texts.MODEL_NONE.format(version=serving or "—", after=retrain_after)
    lines = [
        texts.MODEL_HEADER.format(
            version=serving or "—", shown=min(limit, len(rows)), total=len(rows)
        )
    ]
    for row in rows[:limit]:
        counts, taken = row.counts or {}, acceptance.get(row.version)
        rate = (
            texts.MODEL_ACCEPTANCE.format(
                rate=taken.rate, accepted=taken.accepted, reviewed=taken.reviewed
            )
            if taken and taken.reviewed
            else texts.MODEL_NO_SCORE
        )
        lines.append(
            texts.MODEL_ENTRY.format(
                status=texts.MODEL_STATUS_NAMES.get(row.status, row.status),
                version=row.version,
                created=row.created_at.strftime("%Y-%m-%d %H:%M"),
                examples=counts.get("training_examples", "—"),
                corpus=counts.get("training_corpus", "—"),
                corrections=counts.get("training_corrections", "—"),
                confirmed=counts.get("training_confirmed", "—"),
                recent=_score(row.metrics or {}, "recent"),
                reference=_score(row.metrics or {}, "reference"),
                acceptance=rate,
            )
        )
        if row.status == REFUSED and (row.gate or {}).get("reasons"):
            lines.append(texts.MODEL_REFUSAL.format(reasons="；".join(row.gate["reasons"])))
    return "\n".join(lines)


async def model_overview(
    settings: Settings, session: SessionFactory, serving: str, limit: int = 5
) -> str:
    async with session() as s:
        rows = await learning.list_models(s)
        acceptance = await learning.acceptance_by_version(s)
    return describe_models(
        rows, acceptance, serving, settings.learning.retrain_after_corrections, limit
    )
