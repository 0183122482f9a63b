"""The outbox sender: claims due pushes and sends them within Telegram's flood limits.

Every push is an Outbox row (models.outbox). A pass claims a batch of due rows with a lease,
plans a send time for each with `FloodLimiter` (≈30 messages/s overall, 1/s per chat, 20/min
per group), sends them concurrently at those times and records each outcome right after
Telegram answers, in one short transaction with the outcomes that arrive alongside it:

- sent → mark_sent; never sent again.
- RetryAfter (429) → the row is due again after retry_after, the chat is held back that long;
  other chats carry on. Not counted as a failed attempt.
- Forbidden (user blocked the bot) → reporter marked unreachable, row dropped; the case stays.
- timeout / 5xx / network → retried with back-off (delivery.backoff_seconds) up to max_attempts.
- BadRequest (chat not found, bad markup, ...) → dropped: sending it again cannot succeed.

Exactly once, in practice: the idempotency key stops a push being queued twice; the lease
stops two workers (or two passes) sending one row at once — on PostgreSQL claim_due uses
SELECT ... FOR UPDATE SKIP LOCKED; and no send starts once the lease could have run out. A
worker that dies mid-batch leaves its unsent rows leased; whoever claims them after the lease
expires sends them. The one at-least-once window is a message Telegram accepted whose
mark_sent did not commit: a crash between the two, or a request that timed out after Telegram
had processed it. That is at most one message per send in flight, sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from telegram import Bot, InlineKeyboardMarkup, ReplyKeyboardMarkup
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application

from bot.context import Context
from bot.flood import OUTBOX, FloodControl, retry_after_seconds
from bot.services import Services, services_of
from models import outbox, people
from models.engine import STORE_DOWN
from models.followup import postpone_push, postpone_pushes, unreachable_chats
from models.tables import Outbox

log = logging.getLogger(__name__)

STATE_KEY = "delivery"
MAX_TEXT, MAX_CAPTION = 4096, 1024  # Telegram's limits: a message, a photo caption
# How far ahead a pass plans sends; rows that must wait longer go back to the outbox.
HORIZON_SECONDS = 2.0
# No send starts this close to the end of the row's lease.
LEASE_MARGIN_SECONDS = 10.0
MARK_RETRY_SECONDS = 0.5  # how often a sent push is marked again while the store is away


# ---------------------------------------------------------------- flood limits


class FloodLimiter:
    """Send times that respect Telegram's limits: evenly spaced overall (no bursts, so a
    server-side token bucket never runs dry), one per `chat_interval` per chat, and at most
    `group_limit` per minute per group (chat ids below zero)."""

    def __init__(
        self,
        per_second: float = 30,
        per_chat_per_second: float = 1,
        group_per_minute: int = 20,
        clock: Callable[[], float] = time.monotonic,
        holds: FloodControl | None = None,
    ):
        if per_second <= 0 or per_chat_per_second <= 0 or group_per_minute <= 0:
            raise ValueError("delivery limits must be positive")
        self.interval = 1.0 / per_second
        self.chat_interval = 1.0 / per_chat_per_second
        self.group_limit = int(group_per_minute)
        self.clock = clock
        # The Application's 429 windows (bot/flood.py): opened by replies as well as pushes.
        self.holds = holds
        self._next_send = 0.0
        self._next_in_chat: dict[int, float] = {}
        self._group_sends: dict[int, deque[float]] = {}

    def _chat_ready(self, chat_id: int, at: float) -> float:
        ready = max(at, self._next_in_chat.get(chat_id, 0.0))
        if self.holds is not None:
            ready = max(ready, self.clock() + self.holds.wait_for(chat_id))
        sends = self._group_sends.get(chat_id)
        if chat_id < 0 and sends is not None and len(sends) >= self.group_limit:
            ready = max(ready, sends[-self.group_limit] + 60.0)
        return ready

    def _take(self, chat_id: int, slot: float) -> None:
        self._next_send = slot + self.interval
        self._next_in_chat[chat_id] = slot + self.chat_interval
        if chat_id < 0:
            sends = self._group_sends.setdefault(chat_id, deque(maxlen=self.group_limit))
            sends.append(slot)

    def busy_chats(self, horizon: float = HORIZON_SECONDS) -> set[int]:
        """Groups that cannot take another message within `horizon` seconds (their 20 a
        minute are used up): not worth claiming their rows now."""
        now = self.clock()
        return {chat for chat in self._group_sends if self._chat_ready(chat, now) - now > horizon}

    def plan(
        self, chat_ids: list[int], horizon: float = HORIZON_SECONDS
    ) -> list[tuple[bool, float]]:
        """For each message (in queue order): (True, send time) if it can go within
        `horizon` seconds, else (False, earliest time it could go). Send times are reserved.

        Greedy: the chat that can send soonest goes next (ties: the oldest message), so one
        busy group never holds up messages to other chats. Times are clock() seconds.
        """
        now = self.clock()
        queues: dict[int, deque[int]] = {}
        for index, chat in enumerate(chat_ids):
            queues.setdefault(chat, deque()).append(index)
        heap = [(self._chat_ready(chat, now), q[0], chat) for chat, q in queues.items()]
        heapq.heapify(heap)
        result: list[tuple[bool, float]] = [(False, now)] * len(chat_ids)
        while heap:
            ready, _, chat = heapq.heappop(heap)
            slot = max(ready, self._next_send, now)
            queue = queues[chat]
            if slot - now > horizon:
                for index in queue:  # this chat waits for a later pass
                    result[index] = (False, slot)
                continue
            result[queue.popleft()] = (True, slot)
            self._take(chat, slot)
            if queue:
                heapq.heappush(heap, (self._chat_ready(chat, now), queue[0], chat))
        return result


# ---------------------------------------------------------------- per-application state


@dataclass
class DeliveryState:
    """What one Application's sender keeps between passes."""

    limiter: FloodLimiter
    worker: str
    batch_size: int
    lease_seconds: int
    max_attempts: int
    backoff: list[float]
    send_timeout: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    kicked: bool = False
    # Chats Telegram answered RetryAfter for, and until when (database clock) to leave them be.
    held_until: dict[int, datetime] = field(default_factory=dict)
    # Chats with rows the flood limits put back for later, and until when (database clock):
    # no newer row of theirs is claimed before, so none overtakes them (a 回访 before the 办结
    # notice it follows).
    deferred_until: dict[int, datetime] = field(default_factory=dict)
    stats: Counter = field(default_factory=Counter)
    # Set when the bot stops: planned sends are given back to the outbox at once, so a
    # backlog of group posts (20 a minute each) never holds up the stop.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def pause(self, seconds: float) -> bool:
        """Sleep `seconds` unless the bot stops meanwhile; True if it may go on."""
        if seconds > 0 and not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), seconds)
        return not self.stopping.is_set()

    @classmethod
    def from_settings(
        cls, settings, worker: str, holds: FloodControl | None = None
    ) -> DeliveryState:
        d = settings.delivery
        return cls(
            limiter=FloodLimiter(
                d.global_per_second, d.per_chat_per_second, d.group_per_minute, holds=holds
            ),
            worker=worker[:64],
            batch_size=max(1, int(d.global_per_second * HORIZON_SECONDS)),
            lease_seconds=d.lease_seconds,
            max_attempts=d.max_attempts,
            backoff=list(d.backoff_seconds),
            send_timeout=d.send_timeout_seconds,
        )

    def backoff_after(self, attempts: int) -> timedelta:
        """Wait before the next try, after `attempts` earlier tries (the last step repeats)."""
        steps = self.backoff or [60.0]
        return timedelta(seconds=steps[min(attempts, len(steps) - 1)])


def flood_control(bot: Bot) -> FloodControl | None:
    """The bot's shared flood-control state, if it has one (build_application gives it)."""
    limiter = getattr(bot, "rate_limiter", None)  # ExtBot's; a plain Bot has none
    return limiter if isinstance(limiter, FloodControl) else None


def delivery_state(application: Application) -> DeliveryState:
    """The sender state of an application (created on first use)."""
    state = application.bot_data.get(STATE_KEY)
    if state is None:
        settings = services_of(application).settings
        state = DeliveryState.from_settings(
            settings,
            worker=f"{socket.gethostname()}:{os.getpid()}:{id(application):x}",
            holds=flood_control(application.bot),
        )
        application.bot_data[STATE_KEY] = state
    return state


# ---------------------------------------------------------------- one pass


def _pass_clock(services: Services, now: datetime | None) -> Callable[[], datetime]:
    """The clock for database times during a pass: the services' clock, or — when a test
    passes `now` — that moment advanced by the real time the pass has taken."""
    if now is None:
        return services.clock
    started = time.monotonic()
    return lambda: now + timedelta(seconds=time.monotonic() - started)


async def deliver_due(
    application: Application, now: datetime | None = None, *, max_seconds: float = 30.0
) -> int:
    """Send due pushes until none are left (or `max_seconds` pass); returns how many went."""
    state = delivery_state(application)
    services = services_of(application)
    async with state.lock:
        clock = _pass_clock(services, now)
        started, sent = time.monotonic(), 0
        while True:
            state.kicked = False
            batch_sent, claimed = await _deliver_batch(application.bot, services, state, clock)
            sent += batch_sent
            more = (claimed >= state.batch_size or state.kicked) and not state.stopping.is_set()
            if not more or time.monotonic() - started > max_seconds:
                break
        if more:
            kick(application)  # there is more: the next pass starts at once
        return sent


async def _deliver_batch(
    bot: Bot, services: Services, state: DeliveryState, clock: Callable[[], datetime]
) -> tuple[int, int]:
    """Claim one batch and send it; returns (sent, claimed)."""
    if state.stopping.is_set():
        return 0, 0
    # Rows for chats that must wait anyway stay unclaimed: claiming them only to put them
    # back would rewrite a busy group's whole backlog every pass.
    now = clock()
    for chat_id in [c for c, until in state.deferred_until.items() if until <= now]:
        del state.deferred_until[chat_id]
    waiting = (
        state.limiter.busy_chats()
        | {c for c, until in state.held_until.items() if until > now}
        | set(state.deferred_until)
    )
    async with services.session() as session:
        rows = await outbox.claim_due(
            session,
            now,
            worker=state.worker,
            limit=state.batch_size,
            lease_seconds=state.lease_seconds,
            skip_chats=waiting,
        )
    if not rows:
        return 0, 0
    claimed_at, claimed = time.monotonic(), len(rows)
    rows = await _drop_unreachable(services, state, clock, rows)
    rows = await _hold_back(services, state, clock, rows)
    # All are due: each chat's go in the order they were queued, so that a row put back
    # for later keeps its place before the rows queued after it.
    rows.sort(key=lambda r: r.id)
    plan = state.limiter.plan([r.chat_id for r in rows])
    tasks, deferred = [], []
    mono, now = time.monotonic(), clock()
    for row, (go, at) in zip(rows, plan, strict=True):
        if go:
            tasks.append(_send_at(bot, services, state, clock, row, at, claimed_at))
        else:
            deferred.append((row, now + timedelta(seconds=max(0.0, at - mono))))
    for row, due in deferred:
        state.deferred_until[row.chat_id] = max(due, state.deferred_until.get(row.chat_id, due))
    await _postpone(services, state, deferred)
    results = await asyncio.gather(*tasks)
    return sum(results), claimed


async def _hold_back(
    services: Services, state: DeliveryState, clock: Callable[[], datetime], rows: list[Outbox]
) -> list[Outbox]:
    """Rows for chats still under a RetryAfter go back to the outbox until it is over."""
    now = clock()
    for chat_id in [c for c, until in state.held_until.items() if until <= now]:
        del state.held_until[chat_id]
    held = [(r, state.held_until[r.chat_id]) for r in rows if r.chat_id in state.held_until]
    await _postpone(services, state, held)
    return [r for r in rows if r.chat_id not in state.held_until]


async def _drop_unreachable(
    services: Services, state: DeliveryState, clock: Callable[[], datetime], rows: list[Outbox]
) -> list[Outbox]:
    """Drop rows for reporters who blocked the bot (known from an earlier 403); keep the rest."""
    async with services.session() as session:
        blocked = await unreachable_chats(session, [r.chat_id for r in rows])
        for row in rows:
            if row.chat_id in blocked:
                await outbox.mark_dropped(
                    session, row.id, reason="reporter unreachable", now=clock()
                )
    state.stats["dropped"] += sum(1 for r in rows if r.chat_id in blocked)
    return [r for r in rows if r.chat_id not in blocked]


async def _postpone(
    services: Services, state: DeliveryState, rows: list[tuple[Outbox, datetime]]
) -> None:
    """Rows that cannot go in this pass go back to the outbox, due at the given time."""
    if not rows:
        return
    async with services.session() as session:
        await postpone_pushes(session, {row.id: due for row, due in rows}, worker=state.worker)
    state.stats["postponed"] += len(rows)


async def _send_at(
    bot: Bot,
    services: Services,
    state: DeliveryState,
    clock: Callable[[], datetime],
    row: Outbox,
    at: float,
    claimed_at: float,
) -> int:
    """Wait for the planned moment, send one row, record the outcome. Returns 1 if sent."""
    if not await state.pause(at - time.monotonic()):
        await _postpone(services, state, [(row, clock())])  # unsent: queued for the next start
        return 0
    if time.monotonic() - claimed_at > state.lease_seconds - LEASE_MARGIN_SECONDS:
        return 0  # the lease may be gone; whoever claims the row next sends it
    if row.chat_id in state.held_until:  # a RetryAfter for this chat came in meanwhile
        await _postpone(services, state, [(row, state.held_until[row.chat_id])])
        return 0
    holds = state.limiter.holds
    window = holds.wait_for(row.chat_id) if holds is not None else 0.0
    if window > HORIZON_SECONDS:  # a reply's 429 opened a long window meanwhile
        await _postpone(services, state, [(row, clock() + timedelta(seconds=window))])
        return 0
    if not await state.pause(window):
        await _postpone(services, state, [(row, clock())])
        return 0
    try:
        message_id = await _send(bot, row, state.send_timeout)
    except RetryAfter as exc:
        await _on_retry_after(services, state, clock, row, exc)
        return 0
    except Forbidden as exc:
        await _on_forbidden(services, state, clock, row, exc)
        return 0
    except BadRequest as exc:
        log.error("outbox %s to chat %s dropped: %s", row.id, row.chat_id, exc)
        await _record(
            services, outbox.mark_dropped, row.id, reason=f"BadRequest: {exc}", now=clock()
        )
        state.stats["dropped"] += 1
        return 0
    except Exception as exc:  # noqa: BLE001 - network, timeout, 5xx, anything else: retry later
        await _on_transient(services, state, clock, row, exc)
        return 0
    await _record_sent(services, state, clock, row, message_id, claimed_at)
    state.stats["sent"] += 1
    return 1


async def _record_sent(
    services: Services,
    state: DeliveryState,
    clock: Callable[[], datetime],
    row: Outbox,
    message_id: int,
    claimed_at: float,
) -> None:
    """Mark a sent push sent. If the store went away meanwhile (a database restart), keep
    trying while the lease is ours: a row left pending would be sent again by whoever
    claims it after the lease."""
    while True:
        try:
            await _record(services, outbox.mark_sent, row.id, message_id=message_id, now=clock())
            return
        except STORE_DOWN as exc:
            lease_left = (
                state.lease_seconds - LEASE_MARGIN_SECONDS - (time.monotonic() - claimed_at)
            )
            if lease_left < MARK_RETRY_SECONDS or not await state.pause(MARK_RETRY_SECONDS):
                raise
            log.warning("outbox %s sent, not yet marked (%s): retrying", row.id, exc)


def _markup(stored: dict | None, bot: Bot) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | None:
    """The keyboard of a push: inline buttons, or the reply keyboard (the main menu) that
    comes back with a reply sent through the outbox (the 受理 confirmation)."""
    if not stored:
        return None
    if "keyboard" in stored:
        return ReplyKeyboardMarkup.de_json(stored, bot)
    return InlineKeyboardMarkup.de_json(stored, bot)


async def _send(bot: Bot, row: Outbox, timeout: float) -> int:
    """One push to Telegram; returns the id of the message that carries the buttons."""
    timeouts = {
        "read_timeout": timeout,
        "write_timeout": timeout,
        "connect_timeout": timeout,
        "pool_timeout": timeout,
    }
    if flood_control(bot) is not None:  # its 429s are handled here, not retried there
        timeouts["rate_limit_args"] = OUTBOX
    markup = _markup(row.reply_markup, bot)
    text = row.text if len(row.text) <= MAX_TEXT else row.text[: MAX_TEXT - 1] + "…"
    chat_id = row.chat_id
    for _ in range(2):  # a second time only if the group moved to a supergroup
        try:
            if row.photo and len(text) <= MAX_CAPTION:
                message = await bot.send_photo(
                    chat_id, row.photo, caption=text or None, reply_markup=markup, **timeouts
                )
            else:
                if row.photo:  # caption too long for Telegram: the photo, then the text
                    await bot.send_photo(chat_id, row.photo, **timeouts)
                message = await bot.send_message(chat_id, text, reply_markup=markup, **timeouts)
            return message.message_id
        except ChatMigrated as exc:
            log.warning("chat %s is now %s: update config.toml", chat_id, exc.new_chat_id)
            chat_id = exc.new_chat_id
    raise TelegramError(f"chat {row.chat_id} migrated twice")


async def _record(services: Services, mark, outbox_id: int, **kwargs) -> None:
    """Record a push's outcome, in one transaction with the outcomes arriving alongside."""
    await services.gathered.run(lambda session: mark(session, outbox_id, **kwargs))


async def _on_retry_after(
    services: Services,
    state: DeliveryState,
    clock: Callable[[], datetime],
    row: Outbox,
    exc: RetryAfter,
) -> None:
    wait = retry_after_seconds(exc)
    until = clock() + timedelta(seconds=wait)
    state.held_until[row.chat_id] = max(until, state.held_until.get(row.chat_id, until))
    async with services.session() as session:
        await postpone_push(session, row.id, worker=state.worker, due_at=until, error=str(exc))
    state.stats["429"] += 1
    log.warning("Telegram flood control for chat %s: retry in %.0f s", row.chat_id, wait)


async def _on_forbidden(
    services: Services,
    state: DeliveryState,
    clock: Callable[[], datetime],
    row: Outbox,
    exc: Forbidden,
) -> None:
    async with services.session() as session:
        if row.chat_id > 0:  # a private chat: the reporter blocked the bot
            await people.set_reporter_reachable(session, row.chat_id, False)
        await outbox.mark_dropped(session, row.id, reason=f"Forbidden: {exc}", now=clock())
    state.stats["dropped"] += 1
    if row.chat_id < 0:
        log.error("bot cannot post in group %s (%s): check that it is a member", row.chat_id, exc)
    else:
        log.info("chat %s blocked the bot; no more pushes to it", row.chat_id)


async def _on_transient(
    services: Services,
    state: DeliveryState,
    clock: Callable[[], datetime],
    row: Outbox,
    exc: Exception,
) -> None:
    if not isinstance(exc, TelegramError):
        log.exception("unexpected error sending outbox %s", row.id, exc_info=exc)
    now = clock()
    retry_at = now + state.backoff_after(row.attempts)
    async with services.session() as session:
        await outbox.mark_retry(
            session,
            row.id,
            error=f"{type(exc).__name__}: {exc}",
            retry_at=retry_at,
            now=now,
            max_attempts=state.max_attempts,
        )
    state.stats["retried"] += 1
    if row.attempts + 1 >= state.max_attempts:
        log.error(
            "outbox %s to chat %s failed for good after %s attempts: %s",
            row.id,
            row.chat_id,
            row.attempts + 1,
            exc,
        )


# ---------------------------------------------------------------- the job and kick()


async def delivery_job(context: Context) -> None:
    state = delivery_state(context.application)
    if state.lock.locked():
        state.kicked = True  # the running pass will look again before it returns
        return
    await deliver_due(context.application)


def stop_sending(application: Application) -> None:
    """The bot is stopping: sends not yet started go back to the outbox (unsent, queued)."""
    delivery_state(application).stopping.set()


def kick(application: Application) -> None:
    """Wake the sender now (call after committing a transaction that queued pushes)."""
    state = delivery_state(application)
    if state.stopping.is_set():
        return
    if state.lock.locked():
        state.kicked = True
        return
    if application.job_queue is not None and application.running:
        application.job_queue.run_once(delivery_job, 0, name="outbox-kick")


# A pass may outlast the interval (a long queue); the next tick then starts a second instance
# that sees the lock and returns at once. With APScheduler's default of one instance it
# would log "skipped: maximum number of running instances reached" every tick instead.
OVERLAP_ALLOWED = {"max_instances": 2}
