"""Duplicate reports (重复件, #16), bot side: the open cases indexed by the classifier's own
vectors (classifier.similar.DuplicateFinder), asked before a resident confirms a report and
for every case triage sees.

The index lives in the bot's memory. Cases the bot opens are added as they are stored; before
each question the cases opened elsewhere are added and, at most every REFRESH_SECONDS, those
no longer open dropped; a new model means a new index (its vectors are the model's). A
candidate is read back from the store before anyone is shown it, so an index a few seconds
behind never shows a closed case.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks as cb
from bot import notices, texts
from classifier.similar import DuplicateFinder, DuplicateRules
from models import followers, locating, outbox
from models.lifecycle import STATUS_NAMES
from models.tables import OPEN_STATUSES, Case
from whistle.config import DuplicateSettings

log = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0  # how often cases closed elsewhere are dropped from the index
SERVICES_ATTR = "duplicate_index"


def rules_of(settings: DuplicateSettings) -> DuplicateRules:
    return DuplicateRules(
        threshold=settings.threshold,
        text_only_threshold=settings.text_only_threshold,
        distance_m=settings.distance_m,
        window_days=settings.window_days,
        k=settings.k,
    )


@dataclass
class DuplicateIndex:
    """The finder, the model it was built with and how far it has read the store."""

    rules: DuplicateRules
    finder: DuplicateFinder | None = None
    model_version: str | None = None
    last_id: int = 0
    swept_at: float = 0.0
    lock: asyncio.Lock | None = None
    ids: set[int] = field(default_factory=set)  # the cases in the finder

    async def refresh(self, services) -> DuplicateFinder:
        """The finder, up to date with the store (built afresh for a new model)."""
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            model = services.suggester.model
            if self.finder is None or model.model_version != self.model_version:
                self.finder = DuplicateFinder(model, self.rules)
                self.model_version, self.last_id, self.swept_at = model.model_version, 0, 0.0
                self.ids = set()
            async with services.read_session() as session:
                opened = await followers.open_cases_after(session, self.last_id)
                sweep = time.monotonic() - self.swept_at > REFRESH_SECONDS
                still_open = await followers.open_case_ids(session) if sweep else None
            finder = self.finder
            closed = self.ids - still_open if still_open is not None else set()
            await asyncio.to_thread(_apply, finder, opened, closed)
            self.ids = (self.ids - closed) | {row[0] for row in opened}
            if opened:
                self.last_id = max(self.last_id, opened[-1][0])
            if sweep:
                self.swept_at = time.monotonic()
            return finder

    def add(self, case: Case) -> None:
        """A case the bot just opened (so the next report sees it at once)."""
        if self.finder is not None and case.status in OPEN_STATUSES:
            self.finder.add(
                case.id, case.text, case.created_at, case.grid_code, case.latitude, case.longitude
            )
            self.ids.add(case.id)


def _apply(finder: DuplicateFinder, opened: list[tuple], closed: set[int]) -> None:
    """Vectorising takes a moment per case: done off the event loop."""
    for case_id, text, at, grid, lat, lon in opened:
        finder.add(case_id, text, at, grid, lat, lon)
    for case_id in closed:
        finder.remove(case_id)


def index_of(services) -> DuplicateIndex | None:
    """The Services' index (made on first use); None when [duplicates] is off or there is no
    classifier (a worker)."""
    if not services.settings.duplicates.enabled or services.suggester is None:
        return None
    index = getattr(services, SERVICES_ATTR, None)
    if index is None:
        index = DuplicateIndex(rules_of(services.settings.duplicates))
        setattr(services, SERVICES_ATTR, index)
    return index


async def _open_cases(services, hits: list[tuple[int, float]]) -> list[tuple[Case, float]]:
    """The hits' cases as the store has them now, open ones only, best first."""
    if not hits:
        return []
    async with services.read_session() as session:
        found = {
            c.id: c
            for c in [await session.get(Case, case_id) for case_id, _ in hits]
            if c is not None and c.status in OPEN_STATUSES
        }
    return [(found[case_id], score) for case_id, score in hits if case_id in found]


async def similar_to_draft(services, telegram_id: int, draft: dict) -> list[tuple[Case, float]]:
    """Open cases that are likely the problem a resident is about to report (their own and
    those they follow left out), best first."""
    index = index_of(services)
    if index is None:
        return []
    try:
        finder = await index.refresh(services)
        async with services.read_session() as session:
            where = await locating.locate_new_case(
                session,
                services.gridmap,
                telegram_id=telegram_id,
                latitude=draft["lat"],
                longitude=draft["lon"],
                text=draft["text"],
                address=draft["address"],
            )
            mine = await followers.cases_of_reporter(session, telegram_id)
        hits = finder.candidates(
            draft["text"],
            services.clock(),
            where.grid_code,
            draft["lat"],
            draft["lon"],
            exclude=mine,
        )
    except Exception:  # the question is a courtesy: a report must never fail for it
        log.exception("duplicate lookup failed; the report goes on without it")
        return []
    return await _open_cases(services, hits)


async def similar_to_case(services, case: Case) -> list[tuple[Case, float]]:
    """Open cases (other than `case`) that are likely the same problem: what triage sees."""
    index = index_of(services)
    if index is None:
        return []
    try:
        finder = await index.refresh(services)
        hits = finder.candidates(
            case.text,
            case.created_at,
            case.grid_code,
            case.latitude,
            case.longitude,
            exclude={case.id},
        )
    except Exception:
        log.exception("duplicate lookup failed for %s", case.ref)
        return []
    return await _open_cases(services, hits)


def note_new_case(services, case: Case) -> None:
    index = index_of(services)
    if index is not None:
        index.add(case)


# ---- triage: likely duplicates of an incoming case, with 合并 ------------------------------------


def merge_keyboard(case: Case, similar: list[tuple[Case, float]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    texts.BTN_MERGE_INTO.format(ref=other.ref),
                    callback_data=cb.make(cb.MERGE, case.id, case.version, str(other.id)),
                )
            ]
            for other, _ in similar
        ]
    )


async def after_submit(services, case: Case) -> None:
    """A case the bot just stored: indexed, and triage told of its likely duplicates (each
    with 合并: this case is merged into that one)."""
    note_new_case(services, case)
    similar = await similar_to_case(services, case)
    chat = services.settings.telegram.triage_chat_id
    if not similar or not chat:
        return
    async with services.session() as session:
        counts = [await followers.reporters_count(session, other.id) for other, _ in similar]
        lines = [texts.DUPLICATE_HINT.format(ref=case.ref)] + [
            texts.DUPLICATE_HINT_LINE.format(
                n=n, ref=other.ref, status=STATUS_NAMES[other.status], score=score, count=count
            )
            for n, ((other, score), count) in enumerate(zip(similar, counts), start=1)
        ]
        row = notices.push_row(
            case,
            "duplicates",
            int(chat),
            "\n".join(lines),
            "triage",
            services.clock(),
            markup=merge_keyboard(case, similar),
        )
        await outbox.enqueue_many(session, [row])


async def warm_up(context) -> None:
    """Build the index once at start-up, so the first report does not wait for it."""
    index = index_of(context.services)
    if index is not None:
        try:
            await index.refresh(context.services)
        except Exception:
            log.exception("could not build the duplicate index; the first report will")
