"""Who may look at the dashboard: per-screen tokens, one-time staff codes, signed sessions."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from models.engine import session_scope
from models.people import get_staff
from whistle.config import DashboardSettings

log = logging.getLogger(__name__)

TOKENS_ENV = "WHISTLE_DASHBOARD_TOKENS"
MIN_TOKEN_LENGTH = 16  # a screen token never expires, so it must not be guessable


@dataclass(frozen=True)
class Viewer:
    """A logged-in viewer: a wall screen (kind "screen") or a staff member (kind "staff")."""

    kind: str
    role: str | None = None

    @property
    def is_admin(self) -> bool:
        """Only admins see personal data (phones, Telegram ids, names, case text)."""
        return self.kind == "staff" and self.role == "admin"

    @property
    def can_export(self) -> bool:
        """Wall screens only display: case lists leave the building with a named staff member."""
        return self.kind == "staff"

    @property
    def label(self) -> str:
        if self.kind == "screen":
            return "大屏"
        return "管理员" if self.is_admin else "工作人员"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def screen_token_digests(
    dashboard: DashboardSettings, env: os._Environ | dict = os.environ
) -> frozenset[str]:
    """Hashes of the screen tokens in [dashboard].screen_tokens and WHISTLE_DASHBOARD_TOKENS."""
    tokens = [t.strip() for t in dashboard.screen_tokens]
    tokens += [t.strip() for t in env.get(TOKENS_ENV, "").split(",")]
    usable = set()
    for token in filter(None, tokens):
        if len(token) < MIN_TOKEN_LENGTH:
            log.warning("忽略过短的大屏令牌（至少 %d 个字符）", MIN_TOKEN_LENGTH)
            continue
        usable.add(_digest(token))
    return frozenset(usable)


def session_secret(dashboard: DashboardSettings, env: os._Environ | dict = os.environ) -> str:
    """The cookie-signing secret from the env var [dashboard].session_secret_env names."""
    name = dashboard.session_secret_env
    secret = env.get(name, "")
    if secret:
        return secret
    log.warning("%s 未设置：使用随机会话密钥，重启后需要重新登录", name)
    return secrets.token_urlsafe(32)


def matching_screen_token(credential: str, digests: frozenset[str]) -> str | None:
    """The digest of `credential` if it is a configured screen token (constant-time compare)."""
    digest = _digest(credential.strip())
    found = None
    for known in digests:
        if hmac.compare_digest(digest, known):
            found = known
    return found


def remember_screen(request: Request, digest: str) -> None:
    request.session.clear()
    request.session.update({"kind": "screen", "token": digest})


def remember_staff(request: Request, telegram_id: int) -> None:
    request.session.clear()
    request.session.update({"kind": "staff", "staff": telegram_id})


async def current_viewer(
    request: Request, engine: AsyncEngine, digests: frozenset[str]
) -> Viewer | None:
    """The viewer behind the session cookie, re-checked so revoked tokens and staff lose access."""
    data = request.session
    if data.get("kind") == "screen" and data.get("token") in digests:
        return Viewer("screen")
    if data.get("kind") == "staff" and isinstance(data.get("staff"), int):
        async with session_scope(engine) as session:
            staff = await get_staff(session, data["staff"])
        if staff is not None:
            return Viewer("staff", staff.role)
    return None


class LoginThrottle:
    """At most `limit` failed logins per client address in `window` seconds (guessing codes)."""

    def __init__(self, limit: int = 10, window: float = 600.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures[client]
        while failures and failures[0] < time.monotonic() - self.window:
            failures.popleft()
        return failures

    def blocked(self, client: str) -> bool:
        return len(self._recent(client)) >= self.limit

    def failed(self, client: str) -> None:
        self._recent(client).append(time.monotonic())

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
