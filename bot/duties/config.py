"""The [followup] settings the background duties read, parsed once per pass."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta


@dataclass(frozen=True)
class FollowupConfig:
    """The [followup] settings, parsed once."""

    escalate_after: timedelta
    survey_reminder: timedelta
    survey_close: timedelta
    digest_time: time
    comment_timeout: timedelta
    leader_chat: int | None

    @classmethod
    def from_settings(cls, settings) -> FollowupConfig:
        f = settings.followup
        hh, mm = (int(x) for x in f.digest_time.split(":"))
        leader = settings.telegram.leader_chat_id
        return cls(
            escalate_after=timedelta(hours=f.escalate_after_red_hours),
            survey_reminder=timedelta(days=f.survey_reminder_days),
            survey_close=timedelta(days=f.survey_close_days),
            digest_time=time(hh, mm),
            comment_timeout=timedelta(minutes=settings.conversation.idle_timeout_minutes),
            leader_chat=int(leader) if leader else None,
        )
