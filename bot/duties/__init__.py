"""The background duties of the follow-up engine (跟踪督办): nothing is left hanging.

One pass, `run_followup_pass`, runs each duty of DUTIES in turn (one module each, as
FixMyStreet's scripts). It runs every followup.poll_seconds inside the bot (or on any
number of workers against one PostgreSQL database) and turns time into pushes:

1. 红黄灯 — the department group gets a reminder when a case turns yellow and an alarm when it
   turns red; once it has been red for followup.escalate_after_red_hours the leader chat gets a
   督办 (and the department a notice), recorded in the case's events.
2. The leaders' daily digest of red cases per department, once a day after followup.digest_time.
3. 回访 — the reporter gets a survey (满意 / 基本满意 / 不满意) after resolution, one reminder
   after survey_reminder_days, and the case closes as 未评价 after survey_close_days.
   不满意 asks for an optional comment, then reopens the case back to the same department.
4. Reporter notices for every status change (dispatched, signed, resolved, extended,
   reopened), read from the case events. The bot already queues most of them in the same
   transaction as the change under the same key, f"case:{id}:{event}:{version}:{chat}", so
   the outbox keeps one; this catches the rest (extensions, changes made elsewhere). Both
   build them with bot/notices.py, which holds a 派单 notice back a minute for a re-route to
   replace; a 派单 that was replaced before it was told is never told.

Everything goes through the outbox under idempotency keys, and each alert is claimed with a
compare-and-set on the case, so running the pass twice, or on several workers, queues each push
once. bot/delivery.py sends them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime

from telegram.ext import Application

from bot import delivery, survey
from bot.context import Context
from bot.duties import alerts, digest, status_notices, surveys
from bot.duties.config import FollowupConfig
from bot.services import Services, services_of


async def _status_notices(services: Services, config: FollowupConfig, now: datetime) -> Counter:
    return await status_notices.queue_status_notices(services, now)  # reads no settings


DUTIES = (
    alerts.queue_deadline_alerts,  # 1. 红黄灯 and 督办
    digest.queue_digest,  # 2. the leaders' daily digest
    surveys.submit_stale_ratings,  # 3. 回访: a 不满意 whose comment never came
    surveys.queue_surveys,  # 3. 回访: surveys, reminders, 未评价
    _status_notices,  # 4. reporter notices the bot did not queue itself
)
STATE_KEY = "followup"  # bot_data: the pass's lock


def _services(app_or_services: Application | Services) -> Services:
    return (
        app_or_services if isinstance(app_or_services, Services) else services_of(app_or_services)
    )


async def run_followup_pass(
    app_or_services: Application | Services, now: datetime | None = None
) -> Counter:
    """One pass of every duty; returns how many pushes of each kind it queued."""
    services = _services(app_or_services)
    now = now or services.clock()
    config = FollowupConfig.from_settings(services.settings)
    counts: Counter = Counter()
    for duty in DUTIES:
        counts.update(await duty(services, config, now))
    if isinstance(app_or_services, Application) and sum(counts.values()):
        delivery.kick(app_or_services)
    return counts


async def followup_job(context: Context) -> None:
    """The pass, every followup.poll_seconds; a pass still running makes the next tick a no-op."""
    state = context.application.bot_data.setdefault(STATE_KEY, {})
    lock = state.setdefault("lock", asyncio.Lock())
    if lock.locked():
        return  # the previous pass is still running
    async with lock:
        if not state.get("pending_loaded"):
            await survey.load_pending(context.application)
            state["pending_loaded"] = True
        await run_followup_pass(context.application)
