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
        hh, mm = (int(x) for x in str(f.get("digest_time", "08:30")).split(":"))
        leader = settings.telegram.get("leader_chat_id")
        return cls(
            escalate_after=timedelta(hours=float(f.get("escalate_after_red_hours", 24))),
            survey_reminder=timedelta(days=float(f.get("survey_reminder_days", 3))),
            survey_close=timedelta(days=float(f.get("survey_close_days", 6))),
            digest_time=time(hh, mm),
            comment_timeout=timedelta(
                minutes=float(settings.conversation.get("idle_timeout_minutes", 30))),
            leader_chat=int(leader) if leader else None,
        )
