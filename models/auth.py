"""One-time login codes for the dashboard: staff have no passwords, the bot hands out codes.

A staff member sends /dashboard to the bot, gets a short code, and types it into the web login
form within LOGIN_CODE_TTL. Each code works once. Only a hash of the code is stored (in the
BotState table, under keys "dashboard_login:<sha256>"), so a database reader cannot log in.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel.ext.asyncio.session import AsyncSession

from models.lifecycle import NotPermitted
from models.people import get_staff
from models.tables import BotState, Staff

LOGIN_CODE_TTL = timedelta(minutes=10)
# No 0/O, 1/I/L: codes are read off a phone and typed on another screen.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8  # 31^8 ≈ 8.5e11 codes; the web form also limits failed attempts
KEY_PREFIX = "dashboard_login:"


def normalize_code(raw: str) -> str:
    """What the user typed, upper-cased, without spaces or dashes ('abcd-efgh' → 'ABCDEFGH')."""
    return "".join(ch for ch in (raw or "").upper() if ch.isalnum())


def format_code(code: str) -> str:
    """A code as shown to people: two groups of four, 'ABCD-EFGH'."""
    return f"{code[:4]}-{code[4:]}"


def _key(code: str) -> str:
    return KEY_PREFIX + hashlib.sha256(normalize_code(code).encode()).hexdigest()


async def issue_login_code(session: AsyncSession, staff_telegram_id: int, now: datetime) -> str:
    """A new one-time dashboard login code ('ABCD-EFGH') for an active staff member.

    Raises NotPermitted ("dashboard_staff_only") for anyone else. Does not commit.
    """
    if await get_staff(session, staff_telegram_id) is None:
        raise NotPermitted("dashboard_staff_only")
    await _forget_expired(session, now)
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    expires = now + LOGIN_CODE_TTL
    session.add(
        BotState(
            key=_key(code),
            value={"staff_telegram_id": staff_telegram_id, "expires_at": expires.isoformat()},
            updated_at=now,
        )
    )
    await session.flush()
    return format_code(code)


async def redeem_login_code(session: AsyncSession, code: str, now: datetime) -> Staff | None:
    """The staff member a valid, unexpired, unused code belongs to (the code is used up)."""
    if len(normalize_code(code)) != CODE_LENGTH:
        return None
    state = await session.get(BotState, _key(code))
    if state is None:
        return None
    await session.delete(state)
    await session.flush()
    if datetime.fromisoformat(state.value["expires_at"]) < now:
        return None
    return await get_staff(session, int(state.value["staff_telegram_id"]))


async def _forget_expired(session: AsyncSession, now: datetime) -> None:
    # Codes live at most LOGIN_CODE_TTL, so anything written before now − TTL has expired.
    await session.exec(
        delete(BotState).where(
            BotState.key.startswith(KEY_PREFIX), BotState.updated_at < now - LOGIN_CODE_TTL
        )
    )
