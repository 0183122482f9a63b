"""The leaders' daily digest of red cases per department, once a day after
followup.digest_time (district-local).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from bot import delivery
from bot.common import fit, stage_name
from bot.duties.config import FollowupConfig
from bot.services import Services
from bot.texts import followup as texts
from models import followup as fq
from models import outbox
from models.deadlines import RED
from models.lifecycle import running_deadline
from models.tables import Case, CasePart

DIGEST_CASES_PER_DEPARTMENT = 3


async def queue_digest(services: Services, config: FollowupConfig, now: datetime) -> Counter:
    """The leaders' digest of red cases, once per district-local day after digest_time."""
    local = services.rules.calendar.to_local(now)
    if config.leader_chat is None or local.time() < config.digest_time:
        return Counter()
    key = f"digest:{local:%Y%m%d}:{config.leader_chat}"
    async with services.session() as session:
        if await fq.outbox_key_exists(session, key):
            return Counter()
        counts = await fq.red_counts(session, now, services.rules)
        reds = await fq.lit_cases(session, now, services.rules, lights=(RED,), limit=1000)
        chats = await fq.department_chats(session)
        parts = [
            (part, case)
            for part, case, light in await fq.lit_parts_now(session, now, services.rules)
            if light == RED
        ]
        text = digest_text(local.date().strftime("%m月%d日"), counts, reds, chats, now, parts=parts)
        queued = await outbox.enqueue(
            session, key=key, chat_id=config.leader_chat, text=text, kind="digest", now=now
        )
    return Counter(digest=1 if queued else 0)


def digest_text(
    day: str,
    counts: dict[str, int],
    reds: list[tuple[Case, str]],
    chats: dict[str, tuple[str, int | None]],
    now: datetime,
    *,
    parts: Sequence[tuple[CasePart, Case]] = (),
) -> str:
    """Red cases per department, most first, with the longest overdue few of each; then the
    red 攻坚哨 parts, each by its own deadline."""
    lines = [texts.DIGEST_TITLE.format(date=day)]
    total = sum(counts.values())
    if not total and not parts:
        return "\n".join(lines + [texts.DIGEST_NONE])
    lines.append(texts.DIGEST_TOTAL.format(count=total))
    by_department: dict[str | None, list[Case]] = {}
    for case, _ in reds:
        by_department.setdefault(case.department_code, []).append(case)
    for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0] or "")):
        name = chats.get(code, (code or "—", None))[0]
        lines.append(texts.DIGEST_DEPARTMENT.format(department=name, count=count))
        shown = by_department.get(code, [])[:DIGEST_CASES_PER_DEPARTMENT]
        for case in shown:
            over = texts.span((now - running_deadline(case)).total_seconds())
            lines.append(texts.DIGEST_CASE.format(ref=case.ref, stage=stage_name(case), over=over))
        if count > len(shown):
            lines.append(texts.DIGEST_MORE.format(count=count - len(shown)))
    if parts:
        lines.append(texts.OVERDUE_PARTS)
    for part, case in parts:
        name = chats.get(part.department_code, (part.department_code, None))[0]
        over = texts.span((now - running_deadline(part)).total_seconds())
        lines.append(
            texts.DIGEST_CASE.format(
                ref=texts.PART_REF.format(ref=case.ref, department=name),
                stage=stage_name(part),
                over=over,
            )
        )
    return fit("\n".join(lines), delivery.MAX_TEXT)
