"""One settings object, built once from config.toml plus the environment."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.toml"


class ConfigError(Exception):
    """config.toml (or the environment) holds something Whistle cannot use."""


@dataclass(frozen=True)
class DepartmentConfig:
    code: str
    name: str
    description: str = ""
    chat_id: int | None = None
    limits: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StaffConfig:
    telegram_id: int
    name: str
    role: str  # triage | department | grid | leader | admin
    department: str | None = None
    grid: str | None = None


@dataclass(frozen=True)
class GridConfig:
    code: str
    name: str
    level: str  # district | street | community | grid | micro
    parent: str | None = None


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Paths are absolute (resolved against the config file)."""

    config_path: Path
    district: dict
    telegram: dict
    database_url: str
    database_echo: bool
    classifier: dict
    conversation: dict
    followup: dict
    delivery: dict
    calendar: dict
    limits: dict[str, str]
    dashboard: dict
    departments: tuple[DepartmentConfig, ...]
    staff: tuple[StaffConfig, ...]
    grids: tuple[GridConfig, ...]
    telegram_token: str | None = None
    telegram_base_url: str | None = None
    webhook_secret: str | None = None

    @property
    def base_dir(self) -> Path:
        return self.config_path.parent

    def path(self, value: str | os.PathLike) -> Path:
        """Resolve a path from config.toml relative to the config file's folder."""
        p = Path(value)
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def model_path(self) -> Path:
        return self.path(self.classifier["model_path"])

    @property
    def corpus_dir(self) -> Path:
        return self.path(self.classifier["corpus_dir"])

    @property
    def userdict_path(self) -> Path:
        return self.path(self.classifier["userdict"])

    def department(self, code: str) -> DepartmentConfig | None:
        return next((d for d in self.departments if d.code == code), None)

    def department_names(self) -> dict[str, str]:
        return {d.code: d.name for d in self.departments}


def _resolve_sqlite_url(url: str, base: Path) -> str:
    # A relative SQLite path in config.toml means "next to config.toml", not "wherever
    # the process happens to be started".
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(base / url[len(prefix):])
    return url


def load_settings(path: str | os.PathLike | None = None, env: dict | None = None) -> Settings:
    """Read config.toml (WHISTLE_CONFIG or the repo's own by default) and the environment."""
    env = os.environ if env is None else env
    config_path = Path(path or env.get("WHISTLE_CONFIG") or DEFAULT_CONFIG).resolve()
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"配置文件不存在: {config_path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"配置文件格式错误 {config_path}: {exc}") from exc

    departments = tuple(DepartmentConfig(**d) for d in raw.get("departments", []))
    codes = [d.code for d in departments]
    if len(set(codes)) != len(codes):
        raise ConfigError(f"{config_path}: 部门编码重复: {codes}")
    staff = tuple(StaffConfig(**s) for s in raw.get("staff", []))
    for s in staff:
        if s.role not in {"triage", "department", "grid", "leader", "admin"}:
            raise ConfigError(f"{config_path}: 未知角色 {s.role!r} (staff {s.telegram_id})")
        if s.role == "department" and s.department not in codes:
            raise ConfigError(f"{config_path}: staff {s.telegram_id} 的部门 {s.department!r} 不存在")
    grids = tuple(GridConfig(**g) for g in raw.get("grids", []))

    db = raw.get("database", {})
    database_url = env.get("DATABASE_URL") or db.get("url", "sqlite+aiosqlite:///var/whistle.db")
    tg = dict(raw.get("telegram", {}))
    return Settings(
        config_path=config_path,
        district=raw.get("district", {}),
        telegram=tg,
        database_url=_resolve_sqlite_url(database_url, config_path.parent),
        database_echo=bool(db.get("echo", False)),
        classifier=raw.get("classifier", {}),
        conversation=raw.get("conversation", {}),
        followup=raw.get("followup", {}),
        delivery=raw.get("delivery", {}),
        calendar=raw.get("calendar", {}),
        limits=raw.get("limits", {}),
        dashboard=raw.get("dashboard", {}),
        departments=departments,
        staff=staff,
        grids=grids,
        telegram_token=env.get("TELEGRAM_TOKEN") or None,
        telegram_base_url=env.get("TELEGRAM_BASE_URL") or tg.get("base_url") or None,
        webhook_secret=env.get("TELEGRAM_WEBHOOK_SECRET") or None,
    )
