"""One flood-control state for everything the bot sends (issue #15).

Telegram answers 429 `retry_after` for a chat when the bot sent it too much; until the window
is over, any message to that chat only makes it longer. Every Bot API call of the
Application — replies, edits, callback answers, the error handler's apology and the outbox
sender's pushes — passes through `FloodControl` (PTB's rate-limiter hook), so a window opened
by any of them holds back all of them. The outbox's FloodLimiter (bot/delivery.py) plans its
sends around the same windows.

Replies are retried once after their window (a person waiting for an answer should get it,
late rather than never); the outbox sender handles its own 429s (it re-queues the push), so
its calls are never retried here (OUTBOX).
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

log = logging.getLogger(__name__)

OUTBOX = {"outbox": True}  # rate_limit_args of the outbox sender's calls
EVERY_CHAT = None  # the key of a window that holds back every chat (a 429 for no one chat)
REPLY_RETRIES = 1


def retry_after_seconds(exc: RetryAfter) -> float:
    """The window of a 429, in seconds."""
    with warnings.catch_warnings():  # PTB 22 warns that the int will become a timedelta
        warnings.simplefilter("ignore")
        wait = exc.retry_after
    return float(wait.total_seconds() if hasattr(wait, "total_seconds") else wait)


def chat_of(data: dict[str, Any]) -> int | None:
    """The chat a Bot API call writes to, if it names one."""
    chat = data.get("chat_id")
    try:
        return int(chat) if chat is not None else None
    except (TypeError, ValueError):  # an @channel username: it is its own chat
        return hash(chat)


class FloodControl(BaseRateLimiter):
    """The 429 windows of every chat (and of all chats), honoured by every call."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._until: dict[int | None, float] = {}

    def block(self, chat_id: int | None, seconds: float) -> None:
        """Telegram said: nothing to `chat_id` (None: to anyone) for `seconds`."""
        until = self.clock() + seconds
        self._until[chat_id] = max(until, self._until.get(chat_id, until))

    def wait_for(self, chat_id: int | None) -> float:
        """Seconds until a message may go to `chat_id` (0 when it may go now)."""
        now = self.clock()
        until = max(self._until.get(chat_id, 0.0), self._until.get(EVERY_CHAT, 0.0))
        if until <= now:
            self._forget_past(now)
            return 0.0
        return until - now

    def _forget_past(self, now: float) -> None:
        if len(self._until) > 1024:
            self._until = {chat: until for chat, until in self._until.items() if until > now}

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict | list[dict]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: dict | None,
    ) -> bool | dict | list[dict]:
        chat_id = chat_of(data)
        retries = 0 if rate_limit_args == OUTBOX else REPLY_RETRIES
        while True:
            wait = self.wait_for(chat_id)
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                seconds = retry_after_seconds(exc)
                self.block(chat_id, seconds)
                log.warning(
                    "Telegram flood control for chat %s (%s): %.0f s", chat_id, endpoint, seconds
                )
                if retries <= 0:
                    raise
                retries -= 1
