"""Status callbacks to Open311 clients: the outbox's webhook rows, POSTed as JSON.

Each pass queues callbacks for new status changes (models.open311.queue_callbacks), claims
due webhook rows with a lease (models.outbox.claim_due(webhooks=True)) and POSTs each to its
client's callback URL as {"service_request_updates": [record]}:

- 2xx → sent, never again. The record's update_id (also the X-Whistle-Update-Id header) lets
  the client drop the one repeat possible: a POST it took whose mark_sent did not commit.
- anything else, or no answer → retried with back-off; the other rows for that URL in the
  same pass wait too (a platform that is down is not hammered), up to max_attempts.
- the client was revoked or dropped its URL → dropped.

A case's updates arrive in order: one waits while an earlier update of its case is pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from models import open311, outbox
from models.engine import session_scope, sessionmaker
from models.tables import Outbox
from whistle.config import Open311Settings

log = logging.getLogger(__name__)


@dataclass
class CallbackSender:
    engine: AsyncEngine
    clock: Callable[[], datetime]
    local: Callable[[datetime], str]
    poll_seconds: float = 2.0
    backoff_seconds: Sequence[float] = (5, 30, 120, 600, 1800, 3600)
    max_attempts: int = 50  # a platform outage may last a day: keep trying that long
    timeout_seconds: float = 10.0
    batch_size: int = 50
    lease_seconds: int = 60
    worker: str = field(default_factory=lambda: f"o311:{socket.gethostname()}:{os.getpid()}")

    @classmethod
    def from_options(
        cls, engine: AsyncEngine, clock, local, options: Open311Settings
    ) -> CallbackSender:
        return cls(
            engine=engine,
            clock=clock,
            local=local,
            poll_seconds=options.callback_poll_seconds,
            backoff_seconds=options.callback_backoff_seconds,
            max_attempts=options.callback_max_attempts,
            timeout_seconds=options.callback_timeout_seconds,
        )

    def _retry_at(self, attempts: int) -> datetime:
        delay = self.backoff_seconds[min(attempts, len(self.backoff_seconds) - 1)]
        return self.clock() + timedelta(seconds=float(delay))

    async def run_once(self, http: httpx.AsyncClient) -> int:
        """Queue new updates and send one batch of due ones; returns how many were sent."""
        async with session_scope(self.engine) as session:
            await open311.queue_callbacks(session, self.clock(), self.local)
        async with sessionmaker(self.engine)() as session:
            rows = await outbox.claim_due(
                session,
                self.clock(),
                worker=self.worker,
                limit=self.batch_size,
                lease_seconds=self.lease_seconds,
                webhooks=True,
            )
        sent, down = 0, set()
        for row in rows:
            sent += await self._send(http, row, down)
        return sent

    async def _send(self, http: httpx.AsyncClient, row: Outbox, down: set[str]) -> int:
        async with session_scope(self.engine) as session:
            client = await open311.callback_target(session, row.case_id)
            if client is None:
                await outbox.mark_dropped(
                    session, row.id, reason="no active callback", now=self.clock()
                )
                return 0
            if await open311.hold_for_earlier(session, row):
                return 0
        url = client.callback_url
        error = (
            "host down earlier in this pass" if url in down else await self._post(http, url, row)
        )
        async with session_scope(self.engine) as session:
            if error is None:
                await outbox.mark_sent(session, row.id, message_id=None, now=self.clock())
                return 1
            down.add(url)
            await outbox.mark_retry(
                session,
                row.id,
                error=error,
                retry_at=self._retry_at(row.attempts),
                now=self.clock(),
                max_attempts=self.max_attempts,
            )
        return 0

    async def _post(self, http: httpx.AsyncClient, url: str, row: Outbox) -> str | None:
        """None if the client took the update, else why not."""
        record = row.text
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Whistle-Update-Id": row.key.removeprefix("o311:"),
        }
        body = ('{"service_request_updates": [' + record + "]}").encode()
        try:
            response = await http.post(
                url, content=body, headers=headers, timeout=self.timeout_seconds
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    async def run(self) -> None:
        """Passes until cancelled; a failing pass (database away) is logged and retried."""
        async with httpx.AsyncClient() as http:
            while True:
                try:
                    sent = await self.run_once(http)
                except SQLAlchemyError:
                    log.exception("Open311 callbacks: database error")
                    sent = 0
                if not sent:
                    await asyncio.sleep(self.poll_seconds)


@contextlib.asynccontextmanager
async def running(sender: CallbackSender | None) -> AsyncIterator[None]:
    """Run `sender` in the background while the block runs (nothing if None)."""
    if sender is None:
        yield
        return
    task = asyncio.create_task(sender.run(), name="open311-callbacks")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
