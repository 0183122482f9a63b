"""One settings object, built once from config.toml plus the environment."""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from models.permissions import ROLES

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.toml"


# The sections config.toml may have. [district], [telegram] and [[departments]] are required
# (no default fits another district); the others fall back to the defaults in the code.
KNOWN_SECTIONS = (
    "district", "telegram", "database", "classifier", "conversation", "followup", "delivery",
    "calendar", "limits", "dashboard", "departments", "staff", "grids",
)
REQUIRED_KEYS = {
    "district": ("name", "case_prefix"),
    "telegram": ("triage_chat_id",),
}
ENTRY_SECTIONS = ("departments", "staff", "grids")  # [[...]]: a list of entries
# Resolved against the code, not the config file, so a config.toml kept elsewhere still finds
# the shipped corpus and dictionary.
CLASSIFIER_DEFAULTS = {
    "model_path": "var/model.npz",
    "corpus_dir": str(REPO_ROOT / "classifier" / "corpus"),
    "userdict": str(REPO_ROOT / "classifier" / "userdict.txt"),
}
FIX_HINT = "可参照仓库自带的 config.toml"


class ConfigError(Exception):
    """config.toml (or the environment) holds something Whistle cannot use.

    `problems` holds one line per problem, so `whistle check` can show them all."""

    def __init__(self, *problems: str):
        self.problems = problems
        super().__init__("\n".join(problems))


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


def _read(config_path: Path) -> dict:
    try:
        return tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"配置文件不存在: {config_path}；用 --config 或环境变量 WHISTLE_CONFIG "
                          f"指定，或复制仓库自带的 config.toml") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"配置文件格式错误 {config_path}: {exc}") from exc


def unknown_sections(config_path: Path) -> list[str]:
    """One line per section name Whistle does not know (a typo loses its settings)."""
    raw = _read(config_path)
    lines = []
    for name in raw:
        if name not in KNOWN_SECTIONS:
            close = difflib.get_close_matches(name, KNOWN_SECTIONS, n=1)
            hint = f"，是不是 [{close[0]}]？" if close else f"；可用的段: {', '.join(KNOWN_SECTIONS)}"
            lines.append(f"{config_path}: 未知的段 [{name}] 将被忽略{hint}")
    return lines


def _entries(raw: dict, section: str, kind: type, where: Path) -> tuple[list, list[str]]:
    """[[section]] entries as `kind`; problems name the entry and its missing/unknown keys."""
    items, problems = [], []
    fields_ = {f.name for f in dataclasses.fields(kind)}
    required = {f.name for f in dataclasses.fields(kind)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    entries = raw.get(section, [])
    if not isinstance(entries, list):
        return [], [f"{where}: [{section}] 应写成 [[{section}]]（每项一段）；{FIX_HINT}"]
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            problems.append(f"{where}: 第 {n} 个 [[{section}]] 应是一段键值；{FIX_HINT}")
            continue
        missing = sorted(required - set(entry))
        unknown = sorted(set(entry) - fields_)
        if missing or unknown:
            what = "; ".join(filter(None, [
                missing and f"缺少 {', '.join(missing)}",
                unknown and f"未知的键 {', '.join(unknown)}"]))
            problems.append(f"{where}: 第 {n} 个 [[{section}]] {what}；{FIX_HINT}")
            continue
        items.append(kind(**entry))
    return items, problems


def _structure_problems(raw: dict, where: Path) -> list[str]:
    problems = [f"{where}: {name} 应是一个段 [{name}]，而不是单个值；{FIX_HINT}"
                for name in KNOWN_SECTIONS
                if name not in ENTRY_SECTIONS and name in raw and not isinstance(raw[name], dict)]
    for section, keys in REQUIRED_KEYS.items():
        if section not in raw:
            problems.append(f"{where}: 缺少 [{section}] 段（需要 {', '.join(keys)}）；{FIX_HINT}")
            continue
        missing = [k for k in keys if isinstance(raw[section], dict)
                   and raw[section].get(k) in (None, "")]
        if missing:
            problems.append(f"{where}: [{section}] 缺少 {', '.join(missing)}；{FIX_HINT}")
    if not raw.get("departments"):
        problems.append(f"{where}: 缺少 [[departments]]：至少配置一个部门（code、name），"
                        f"code 即分类模型的标签；{FIX_HINT}")
    return problems


def read_settings(path: str | os.PathLike | None = None,
                  env: dict | None = None) -> tuple[Settings, list[str]]:
    """The settings and every problem in them, one line each (`whistle check` goes on with
    settings that have problems); ConfigError only when the file cannot be read at all."""
    env = os.environ if env is None else env
    config_path = Path(path or env.get("WHISTLE_CONFIG") or DEFAULT_CONFIG).resolve()
    raw = _read(config_path)

    problems = _structure_problems(raw, config_path)
    departments, bad = _entries(raw, "departments", DepartmentConfig, config_path)
    problems += bad
    codes = [d.code for d in departments]
    if len(set(codes)) != len(codes):
        problems.append(f"{config_path}: 部门编码重复: {codes}")
    staff, bad = _entries(raw, "staff", StaffConfig, config_path)
    problems += bad
    for s in staff:
        if s.role not in ROLES:
            problems.append(f"{config_path}: 未知角色 {s.role!r} (staff {s.telegram_id})；"
                            f"可用: {', '.join(ROLES)}")
        if s.role == "department" and s.department not in codes:
            problems.append(f"{config_path}: staff {s.telegram_id} 的部门 {s.department!r} 不存在")
    grids, bad = _entries(raw, "grids", GridConfig, config_path)
    problems += bad

    db = raw.get("database", {})
    database_url = env.get("DATABASE_URL") or db.get("url", "sqlite+aiosqlite:///var/whistle.db")
    tg = dict(raw.get("telegram", {}))
    settings = Settings(
        config_path=config_path,
        district=raw.get("district", {}),
        telegram=tg,
        database_url=_resolve_sqlite_url(database_url, config_path.parent),
        database_echo=bool(db.get("echo", False)),
        classifier={**CLASSIFIER_DEFAULTS, **raw.get("classifier", {})},
        conversation=raw.get("conversation", {}),
        followup=raw.get("followup", {}),
        delivery=raw.get("delivery", {}),
        calendar=raw.get("calendar", {}),
        limits=raw.get("limits", {}),
        dashboard=raw.get("dashboard", {}),
        departments=tuple(departments),
        staff=tuple(staff),
        grids=tuple(grids),
        telegram_token=env.get("TELEGRAM_TOKEN") or None,
        telegram_base_url=env.get("TELEGRAM_BASE_URL") or tg.get("base_url") or None,
        webhook_secret=env.get("TELEGRAM_WEBHOOK_SECRET") or None,
    )
    return settings, problems


def load_settings(path: str | os.PathLike | None = None, env: dict | None = None) -> Settings:
    """Read config.toml (WHISTLE_CONFIG or the repo's own by default) and the environment;
    ConfigError lists every problem found."""
    settings, problems = read_settings(path, env)
    if problems:
        raise ConfigError(*problems)
    return settings
