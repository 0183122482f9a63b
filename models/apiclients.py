"""Open311 API clients: created with a key shown once, stored as its SHA-256, revocable.

A client's callers are not on Telegram; the cases it posts belong to one stand-in Reporter per
client (`client_reporter_id`), marked unreachable so no Telegram notice is ever tried for it.
Its 回访 answers go through cases.rate() as that reporter.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import people
from models.tables import CHANNELS, TELEGRAM, ApiClient
from models.validation import InvalidInput

# Stand-in reporters live far above any Telegram user id (those fit in 52 bits).
_CLIENT_REPORTER_BASE = 9_000_000_000_000_000
_NAME_MAX = 100


def key_hash(key: str) -> str:
    # A random 32-byte key needs no slow hash: SHA-256 cannot be brute-forced back to it.
    return hashlib.sha256(key.encode()).hexdigest()


def client_reporter_id(client_id: int) -> int:
    """The Reporter.telegram_id standing in for all callers of an API client."""
    return _CLIENT_REPORTER_BASE + client_id


def check_callback_url(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 500:
        raise InvalidInput("callback_url_invalid", url=url)
    return url


async def add_client(
    session: AsyncSession,
    name: str,
    now: datetime,
    *,
    callback_url: str | None = None,
    channel: str = "hotline",
) -> tuple[ApiClient, str]:
    """A new client and its key (returned once, never stored)."""
    name = (name or "").strip()
    if not name or len(name) > _NAME_MAX:
        raise InvalidInput("client_name_length", max=_NAME_MAX)
    if channel not in CHANNELS or channel == TELEGRAM:
        raise InvalidInput(
            "client_channel_invalid", channels=", ".join(c for c in CHANNELS if c != TELEGRAM)
        )
    if await client_by_name(session, name) is not None:
        raise InvalidInput("client_exists", name=name)
    key = "o311_" + secrets.token_urlsafe(32)
    client = ApiClient(
        name=name,
        key_hash=key_hash(key),
        channel=channel,
        callback_url=check_callback_url(callback_url),
        created_at=now,
    )
    session.add(client)
    await session.flush()
    reporter = await people.get_or_create_reporter(
        session, client_reporter_id(client.id), f"{name}（接口）", now=now
    )
    reporter.reachable = False
    session.add(reporter)
    await session.flush()
    return client, key


async def client_by_name(session: AsyncSession, name: str) -> ApiClient | None:
    return (await session.exec(select(ApiClient).where(ApiClient.name == name))).first()


async def authenticate(session: AsyncSession, key: str | None) -> ApiClient | None:
    """The active client holding `key`, else None."""
    if not key:
        return None
    stmt = select(ApiClient).where(
        ApiClient.key_hash == key_hash(key), col(ApiClient.active).is_(True)
    )
    return (await session.exec(stmt)).first()


async def list_clients(session: AsyncSession) -> list[ApiClient]:
    return list((await session.exec(select(ApiClient).order_by(col(ApiClient.id)))).all())


async def revoke(session: AsyncSession, name: str, now: datetime) -> bool:
    """Revoke a client's key at once; False if there is no active client of that name."""
    result = await session.exec(
        update(ApiClient)
        .where(col(ApiClient.name) == name, col(ApiClient.active).is_(True))
        .values(active=False, revoked_at=now)
    )
    return result.rowcount == 1
