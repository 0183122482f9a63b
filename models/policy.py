"""惠企政策: staff post a policy; enterprises whose industry or park matches its tags get it.

The matching rule lives in `policy_matches` only. Pushes go through the outbox with the key
policy:{id}:{chat}, so posting twice or a retried transaction never sends a policy twice.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.tables import Enterprise, Policy, Reporter, Staff
from models.validation import InvalidInput, clean_text

# Who may post a policy: people who speak for the district, not a single department.
POSTING_ROLES = frozenset({"admin", "triage", "leader"})
MAX_TAGS = 10
MAX_TAG_CHARS = 30
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
_TAG_SPLIT = re.compile(r"[,，、;；\s]+")


def can_post_policy(staff: Staff | None) -> bool:
    return staff is not None and staff.active and staff.role in POSTING_ROLES


def parse_tags(raw: str | list[str] | None) -> list[str]:
    """'软件, 高新区、物流' → ['软件', '高新区', '物流'] (deduplicated, order kept)."""
    items = raw if isinstance(raw, list) else _TAG_SPLIT.split(raw or "")
    tags: list[str] = []
    for item in items:
        tag = item.strip().lstrip("#＃").strip()
        if not tag:
            continue
        if len(tag) > MAX_TAG_CHARS:
            raise InvalidInput("tag_too_long", tag=tag[:10], max_chars=MAX_TAG_CHARS)
        if tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise InvalidInput("too_many_tags", max_tags=MAX_TAGS)
    return tags


def policy_matches(tags: list[str], industry: str | None, park: str | None) -> bool:
    """A policy without tags is for every enterprise; otherwise a tag must name (part of) the
    enterprise's industry or park, e.g. tag “软件” matches industry “软件和信息技术服务业”."""
    if not tags:
        return True
    fields = [f.casefold() for f in (industry, park) if f]
    return any(tag.casefold() in f for tag in tags for f in fields)


def _clean_link(link: str | None) -> str | None:
    link = (link or "").strip()
    if not link:
        return None
    if len(link) > 500 or not _URL.match(link):
        raise InvalidInput("bad_link")
    return link


async def post_policy(
    session: AsyncSession,
    *,
    title: str,
    summary: str,
    link: str | None,
    tags: list[str] | str | None,
    posted_by: int,
    now: datetime,
) -> Policy:
    """Store a policy after validating every field (nothing is written if one is wrong)."""
    policy = Policy(
        title=clean_text(title, field="policy_title", min_len=2, max_len=200),
        summary=clean_text(summary, field="policy_summary", min_len=2, max_len=2000),
        link=_clean_link(link),
        tags=parse_tags(tags),
        posted_by=posted_by,
        posted_at=now,
    )
    session.add(policy)
    await session.flush()
    return policy


async def policy_recipients(session: AsyncSession, policy: Policy) -> list[int]:
    """Private chat ids of reachable people of subscribed enterprises the policy matches."""
    stmt = (
        select(Reporter.telegram_id, Enterprise.industry, Enterprise.park)
        .join(Enterprise, col(Enterprise.id) == col(Reporter.enterprise_id))
        .where(col(Enterprise.news_subscribed).is_(True), col(Reporter.reachable).is_(True))
        .order_by(col(Reporter.telegram_id))
    )
    rows = (await session.exec(stmt)).all()
    return [chat for chat, industry, park in rows if policy_matches(policy.tags, industry, park)]
