"""回访: the reporter gets a survey after resolution, one reminder after survey_reminder_days,
and the case closes as 未评价 after survey_close_days; a 不满意 whose comment never came is
submitted without one. The survey's buttons and the comment are bot/survey.py's.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from bot import callbacks as cb
from bot import delivery, notices, survey
from bot.common import fit
from bot.duties.config import FollowupConfig
from bot.services import Services
from bot.texts import followup as texts
from bot.texts import intake
from models import cases, drafts, followers, outbox
from models import followup as fq
from models.lifecycle import CaseError
from models.tables import UNSATISFIED, Case

log = logging.getLogger(__name__)


async def queue_surveys(services: Services, config: FollowupConfig, now: datetime) -> Counter:
    """New surveys, the one reminder, and closing unanswered ones as 未评价."""
    counts: Counter = Counter()
    async with services.read_session() as session:
        new = await fq.surveys_due(session)
        reminders = await fq.survey_reminders_due(session, now, after=config.survey_reminder)
        expired = await fq.surveys_expired(session, now, after=config.survey_close)
        waiting = {
            v.get("case_id")
            for v in (await drafts.load_states(session, survey.PENDING_PREFIX)).values()
        }
    for case in new:
        counts["survey"] += await _queue_survey(services, config, case, now, reminder=False)
    for case in reminders:
        counts["survey_reminder"] += await _queue_survey(services, config, case, now, reminder=True)
    for case in expired:
        if case.id in waiting:
            continue  # a 不满意 is waiting for its comment: it is submitted, not closed
        try:
            async with services.session() as session:
                await cases.close_unrated(session, case.id, now, rules=services.rules)
            counts["closed_unrated"] += 1
        except CaseError:
            pass  # answered (or reopened) meanwhile
    return counts


async def _queue_survey(
    services: Services, config: FollowupConfig, case: Case, now: datetime, *, reminder: bool
) -> int:
    """Queue the survey (or its reminder) for one case; 1 if this call queued it."""
    async with services.session() as session:
        if not await fq.claim_survey(session, case, now, reminder=reminder):
            return 0
        chat_id = await fq.reporter_chat(session, case)
        if chat_id is None:
            return 0  # blocked the bot: the case still closes as 未评价 in time
        # The 办结 notice carried the result: the survey only refers to it.
        subject = intake.subject(case.kind)
        if reminder:
            days = f"{(config.survey_close - config.survey_reminder).total_seconds() / 86400:g}"
            text = texts.SURVEY_REMINDER.format(ref=case.ref, subject=subject, days=days)
        else:
            text = texts.SURVEY.format(ref=case.ref, subject=subject)
        event = "survey_reminder" if reminder else "survey"
        await outbox.enqueue(
            session,
            key=notices.case_key(case, event, chat_id),
            chat_id=chat_id,
            text=fit(text, delivery.MAX_TEXT),
            kind=event,
            now=now,
            case_id=case.id,
            reply_markup=survey.survey_keyboard(case).to_dict(),
        )
        if not reminder:  # 关注该案件: followers are asked too (once; their answer is heard)
            follower_keyboard = survey.survey_keyboard(case, cb.RATE_FOLLOWER).to_dict()
            asked = texts.FOLLOWER_SURVEY.format(ref=case.ref)
            for follower in await followers.follower_chats(session, case.id):
                await outbox.enqueue(
                    session,
                    key=notices.case_key(case, event, follower),
                    chat_id=follower,
                    text=asked,
                    kind=event,
                    now=now,
                    case_id=case.id,
                    reply_markup=follower_keyboard,
                )
    return 1


async def submit_stale_ratings(
    services: Services, config: FollowupConfig, now: datetime
) -> Counter:
    """A 不满意 whose comment never came is submitted without one after the idle timeout."""
    async with services.read_session() as session:
        pending = await drafts.load_states(session, survey.PENDING_PREFIX)
    counts: Counter = Counter()
    for key, value in pending.items():
        if datetime.fromisoformat(value["at"]) > now - config.comment_timeout:
            continue
        user_id = int(key[len(survey.PENDING_PREFIX) :])
        try:
            async with services.session() as session:
                await survey.submit_rating(
                    session,
                    services,
                    user_id,
                    value["case_id"],
                    value["version"],
                    UNSATISFIED,
                    None,
                    now,
                )
                await drafts.save_states(session, {key: None}, now)
            counts["reopened"] += 1
        except CaseError as exc:
            log.info("stale rating of case %s dropped: %s", value["case_id"], exc)
            async with services.session() as session:
                await drafts.save_states(session, {key: None}, now)
    return counts
