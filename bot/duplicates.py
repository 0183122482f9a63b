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
from typing import NamedTuple

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks as cb
from bot import notices, posts, texts
from bot.common import kick_delivery
from classifier.similar import DuplicateFinder, DuplicateRules, grid_within
from models import followers, locating, outbox
from models.gridmap import GridMap
from models.lifecycle import STATUS_NAMES
from models.tables import OPEN_STATUSES, Case
from whistle.config import DuplicateSettings

log = logging.getLogger(__name__)

# The question reads back this many hits beyond k, for the reporter's own and followed cases
# and those not theirs to follow (a bound: the same text may match hundreds of cases).
MAX_LEFT_OUT = 20
HINT_EVENT = "duplicates"  # the outbox event of triage's hint (one per case)
REFRESH_SECONDS = 30.0  # how often cases closed elsewhere are dropped from the index
# How often the store is asked for cases opened elsewhere (12345, another worker). The bot's own
# cases are added as they are stored, so between reads a question needs no store read at all,
# and concurrent questions never queue behind one read.
READ_SECONDS = 1.0
ELSEWHERE_SECONDS = 5.0  # how often triage is hinted about cases opened elsewhere (12345)
SERVICES_ATTR = "duplicate_index"


class Similar(NamedTuple):
    """An open case that is likely the same problem, and its text similarity."""

    case: followers.OpenCase
    score: float


def grid_rule(gridmap: GridMap):
    """Whether a grid lies in another, as the district's grid tree says (its codes need not
    nest by prefix); codes the tree does not know are judged by their spelling."""
    tree = gridmap.tree
    if tree is None:
        return grid_within

    def within(code: str, area: str) -> bool:
        if code == area:
            return True
        if code in tree and area in tree:
            return area in tree.ancestors(code)
        return grid_within(code, area)

    return within


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
    read_at: float = float("-inf")
    swept_at: float = 0.0
    lock: asyncio.Lock | None = None
    ids: set[int] = field(default_factory=set)  # the cases in the finder
    built_to: int | None = None  # the newest case id when the index was first read
    from_elsewhere: list[int] = field(default_factory=list)  # opened since, not by this process

    def current(self, services) -> DuplicateFinder | None:
        """The finder when it is recent enough to answer without reading the store: built with
        the model in service, and read within READ_SECONDS or being read right now (a
        question does not wait for another's read: a second behind is what it may be)."""
        model = services.suggester.model
        if self.finder is None or model.model_version != self.model_version:
            return None
        reading = self.lock is not None and self.lock.locked()
        if reading or time.monotonic() - self.read_at < READ_SECONDS:
            return self.finder
        return None

    async def refresh(self, services) -> DuplicateFinder:
        """The finder, up to date with the store within READ_SECONDS (built afresh for a new
        model)."""
        finder = self.current(services)
        if finder is not None:
            return finder
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            model = services.suggester.model
            if self.finder is None or model.model_version != self.model_version:
                self.finder = DuplicateFinder(model, self.rules, grid_rule(services.gridmap))
                self.model_version, self.last_id, self.swept_at = model.model_version, 0, 0.0
                self.read_at, self.ids, self.built_to = float("-inf"), set(), None
            elif time.monotonic() - self.read_at < READ_SECONDS:
                return self.finder  # read while this one waited for the lock
            self.read_at = time.monotonic()
            async with services.read_session() as session:
                read = await followers.open_cases_after(session, self.last_id)
                sweep = time.monotonic() - self.swept_at > REFRESH_SECONDS
                still_open = await followers.open_case_ids(session) if sweep else None
            finder = self.finder
            # The bot's own cases were added as they were stored: only the others are new.
            opened = [row for row in read if row[0] not in self.ids]
            closed = self.ids - still_open if still_open is not None else set()
            await asyncio.to_thread(_apply, finder, opened, closed)
            self.ids = (self.ids - closed) | {row[0] for row in opened}
            if self.built_to is None:
                self.built_to = read[-1][0] if read else 0
            else:
                self.from_elsewhere += [row[0] for row in opened if row[0] > self.built_to]
            if read:
                self.last_id = max(self.last_id, read[-1][0])
            if sweep:
                self.swept_at = time.monotonic()
            return finder

    def expire(self) -> None:
        """The next refresh reads the store and drops the cases closed meanwhile."""
        self.read_at, self.swept_at = float("-inf"), 0.0

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


def _still_open(
    hits: list[tuple[int, float]], found: dict[int, followers.OpenCase], k: int
) -> list[Similar]:
    """The hits the store still has open, best first, at most k."""
    return [Similar(found[case_id], score) for case_id, score in hits if case_id in found][:k]


async def similar_to_draft(services, telegram_id: int, draft: dict) -> list[Similar]:
    """Open cases that are likely the problem a resident (or an enterprise) is about to
    report, among those they may follow (their own and those they follow left out), best
    first. Most reports have none: those cost the index's
    search and the locating read, nothing more."""
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
            # More than the best k: the reporter's own cases are left out below, by the
            # store, which knows who follows what.
            hits = finder.candidates(
                draft["text"],
                services.clock(),
                where.grid_code,
                draft["lat"],
                draft["lon"],
                k=index.rules.k + MAX_LEFT_OUT,
            )
            if not hits:
                return []
            found = await followers.open_cases_with_counts(
                session,
                [c for c, _ in hits],
                not_of=telegram_id,
                offered_to=(telegram_id, draft["kind"]),
            )
    except Exception:  # the question is a courtesy: a report must never fail for it
        log.exception("duplicate lookup failed; the report goes on without it")
        return []
    return _still_open(hits, found, index.rules.k)


def note_new_case(services, case: Case) -> None:
    """A case this process stored: in the index at once (call right after its commit)."""
    index = index_of(services)
    if index is not None:
        index.add(case)


# ---- triage: likely duplicates of an incoming case, with 合并 ------------------------------------


def merge_keyboard(case: Case, similar: list[Similar]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    texts.BTN_MERGE_INTO.format(ref=s.case.ref),
                    callback_data=cb.make(cb.MERGE, case.id, case.version, str(s.case.id)),
                )
            ]
            for s in similar
        ]
    )


async def queue_hint(session, services, case: Case) -> None:
    """Triage's 可能重复 hint for a new case (each likely duplicate with 合并: this case is
    merged into that one), queued in the transaction that stores or routes the case, after
    its triage post: it is never lost and never sent twice (one key per case). Nothing
    without a built index (a process that serves no resident, e.g. the web API alone: the
    bot's index hints those cases, see hint_cases_from_elsewhere) or without hits."""
    index = getattr(services, SERVICES_ATTR, None)
    chat = services.settings.telegram.triage_chat_id
    if index is None or index.finder is None or not chat:
        return
    try:
        hits = index.finder.candidates(
            case.text,
            case.created_at,
            case.grid_code,
            case.latitude,
            case.longitude,
            exclude={case.id},
        )
    except Exception:  # the hint is a courtesy: a case must never fail for it
        log.exception("duplicate lookup failed for %s", case.ref)
        return
    if not hits:
        return
    found = await followers.open_cases_with_counts(session, [c for c, _ in hits])
    similar = _still_open(hits, found, len(hits))
    if not similar:
        return
    lines = [texts.DUPLICATE_HINT.format(ref=case.ref)] + [
        texts.DUPLICATE_HINT_LINE.format(
            n=n,
            ref=s.case.ref,
            status=STATUS_NAMES[s.case.status],
            score=s.score,
            count=s.case.reporters,
        )
        for n, s in enumerate(similar, start=1)
    ]
    row = outbox.push_row(
        key=notices.case_key(case, HINT_EVENT, int(chat), version=0),
        chat_id=int(chat),
        text="\n".join(lines),
        kind="triage",
        now=services.clock(),
        reply_markup=posts.as_dict(merge_keyboard(case, similar)),
        case_id=case.id,
    )
    await outbox.enqueue_many(session, [row])


async def hint_cases_from_elsewhere(context) -> None:
    """A duty: triage's hint for the cases another process opened (the 12345 platform through
    the web API) since the index was built, once the index has read them."""
    services = context.services
    index = index_of(services)
    if index is None or index.finder is None:
        return
    await index.refresh(services)
    while index.from_elsewhere:
        case_ids, index.from_elsewhere = index.from_elsewhere[:50], index.from_elsewhere[50:]
        try:
            async with services.session() as session:
                for case_id in case_ids:
                    case = await session.get(Case, case_id)
                    if case is not None and case.status in OPEN_STATUSES:
                        await queue_hint(session, services, case)
        except Exception:
            # The store is away (restarting, locked): these are hinted at the next run.
            index.from_elsewhere = case_ids + index.from_elsewhere
            raise
    kick_delivery(context.application)


async def warm_up(context) -> None:
    """Build the index once at start-up, so the first report does not wait for it."""
    index = index_of(context.services)
    if index is not None:
        try:
            await index.refresh(context.services)
        except Exception:
            log.exception("could not build the duplicate index; the first report will")
