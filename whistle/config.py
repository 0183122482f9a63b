"""One settings object, built once from config.toml plus the environment.

Each [section] is a frozen dataclass below, with its defaults (written only here) and what a
valid value is; read_settings() checks types, ranges and choices and names every problem,
unknown_settings() every section or key it does not know. Code reads attributes
(`settings.followup.poll_seconds`), never raw dicts.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import os
import re
import tomllib
import types
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from models.permissions import ROLES

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.toml"


ENTRY_SECTIONS = ("departments", "staff", "grids")  # [[...]]: a list of entries
FIX_HINT = "可参照仓库自带的 config.toml"


class ConfigError(Exception):
    """config.toml (or the environment) holds something Whistle cannot use.

    `problems` holds one line per problem, so `whistle check` can show them all."""

    def __init__(self, *problems: str):
        self.problems = problems
        super().__init__("\n".join(problems))


# ---------------------------------------------------------------- the sections
# One frozen dataclass per config.toml section: each default is written here once, and
# `setting()` adds the range or choices checked when config.toml is read.


def setting(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple = (),
    positive: bool = False,
    required: bool = False,
) -> Any:
    """A dataclass field with what a valid value is: within [low, high] (above 0 if
    `positive`), one of `choices`; a `required` one must be set (its default only stands in
    while `whistle check` goes on)."""
    meta = {
        "low": low,
        "high": high,
        "choices": choices,
        "positive": positive,
        "required": required,
    }
    if isinstance(default, list | dict):
        raise TypeError("mutable default: use a tuple")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DistrictSettings:
    name: str = setting("", required=True)
    case_prefix: str = setting("", required=True)  # public references look like WC-20261124-0007
    timezone: str = "Asia/Shanghai"
    # (lon_min, lat_min, lon_max, lat_max); locations outside it are flagged, not refused.
    bbox: tuple[float, float, float, float] | None = None
    # The grid hierarchy with its places (code,name,level,parent,places) and the grids'
    # polygons (GeoJSON, properties.code); both optional, relative to config.toml's folder.
    gazetteer: str = ""
    grid_boundaries: str = ""


@dataclass(frozen=True)
class TelegramSettings:
    triage_chat_id: int = setting(0, required=True)
    leader_chat_id: int | None = None
    base_url: str = ""  # empty: the public Bot API; TELEGRAM_BASE_URL overrides it
    mode: str = setting("polling", choices=("polling", "webhook"))
    webhook_url: str = ""
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = setting(8443, low=1, high=65535)
    concurrent_updates: int = setting(64, low=1)  # one chat's updates still come in order
    # HTTP connections to the Bot API. httpx checks every idle pooled connection on each
    # request, so a pool far larger than the concurrency costs CPU for nothing (PTB: 256).
    connection_pool_size: int = setting(32, low=1)
    # aiohttp carries the Bot API calls for far less CPU than PTB's default httpx
    # (bot/request.py); "httpx" switches back.
    http_client: str = setting("aiohttp", choices=("aiohttp", "httpx"))
    poll_interval: float = setting(0.0, low=0)  # seconds between long polls that brought updates


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite+aiosqlite:///var/whistle.db"  # DATABASE_URL overrides it
    echo: bool = False


@dataclass(frozen=True)
class ClassifierSettings:
    # Relative paths are resolved against config.toml's folder; the corpus and dictionary
    # default to the shipped ones, so a config.toml kept elsewhere still finds them.
    model_path: str = "var/model.npz"
    corpus_dir: str = str(REPO_ROOT / "classifier" / "corpus")
    userdict: str = str(REPO_ROOT / "classifier" / "userdict.txt")
    confidence_threshold: float = setting(0.55, low=0, high=1)  # below: marked "unsure"
    auto_dispatch_threshold: float = setting(0.85, low=0, high=1)  # at or above: dispatched
    reload_check_seconds: float = setting(30.0, positive=True)


@dataclass(frozen=True)
class ConversationSettings:
    idle_timeout_minutes: float = setting(30.0, positive=True)
    max_text_chars: int = setting(2000, low=1)
    min_text_chars: int = setting(4, low=0)
    max_photos: int = setting(5, low=1, high=10)  # per report (Telegram albums hold 10)


@dataclass(frozen=True)
class FollowupSettings:
    poll_seconds: float = setting(5.0, positive=True)
    yellow_ratio: float = setting(0.75, positive=True, high=1)  # 黄灯 at this share of the limit
    escalate_after_red_hours: float = setting(24.0, low=0)
    survey_reminder_days: float = setting(3.0, low=0)
    survey_close_days: float = setting(6.0, low=0)
    digest_time: str = "08:30"  # HH:MM, district time
    dispatch_notice_delay_seconds: float = setting(60.0, low=0)


@dataclass(frozen=True)
class DeliverySettings:
    global_per_second: float = setting(30.0, positive=True)
    per_chat_per_second: float = setting(1.0, positive=True)
    group_per_minute: int = setting(20, low=1)
    max_attempts: int = setting(8, low=1)
    backoff_seconds: tuple[float, ...] = (5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
    send_timeout_seconds: float = setting(10.0, positive=True)
    lease_seconds: int = setting(60, low=1)


@dataclass(frozen=True)
class CalendarSettings:
    workday_start: str = "09:00"
    workday_end: str = "18:00"
    holidays: tuple[str, ...] = ()  # ISO dates
    adjusted_workdays: tuple[str, ...] = ()  # 调休: weekend days that are worked


@dataclass(frozen=True)
class DashboardSettings:
    host: str = "127.0.0.1"
    port: int = setting(8080, low=1, high=65535)
    refresh_seconds: float = setting(30.0, positive=True)
    cache_seconds: float = setting(5.0, low=0)
    session_days: int = setting(7, low=1)
    cookie_secure: bool = False
    screen_tokens: tuple[str, ...] = ()
    session_secret_env: str = "WHISTLE_SESSION_SECRET"


@dataclass(frozen=True)
class Open311Settings:
    """The Open311 GeoReport v2 API (web/open311/), served with the dashboard."""

    rate_per_second: float = setting(20.0, positive=True)  # per API key, on average ...
    rate_burst: int = setting(60, low=1)  # ... and at most this many at once
    max_body_bytes: int = setting(65536, low=1024)  # a larger POST is refused (413)
    public_exact_location: bool = False  # public answers round lat/long to ~100 m
    public_address: bool = False  # and leave out the address
    callbacks: bool = True  # POST status changes to each client's callback URL
    callback_poll_seconds: float = setting(2.0, positive=True)
    callback_backoff_seconds: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
    callback_max_attempts: int = setting(50, low=1)  # about two days of a platform being down
    callback_timeout_seconds: float = setting(10.0, positive=True)


@dataclass(frozen=True)
class LearningSettings:
    """The learning loop (#16, bot/duties/learning.py; classifier.learning.LearningParams)."""

    enabled: bool = True
    retrain_after_corrections: int = setting(50, low=1)  # new corrections that start a retraining
    retrain_at: str = (
        "02:30"  # HH:MM district time: retrain then if any correction is new ("": never)
    )
    check_seconds: float = setting(300.0, positive=True)  # how often the duty looks
    models_dir: str = "var/models"  # every model kept, relative to config.toml's folder
    timeout_minutes: float = setting(30.0, positive=True)  # a training that runs longer is stopped
    margin: float = setting(0.02, low=0, high=1)  # macro-F1 a challenger may lose and still win
    department_margin: float = setting(0.05, low=0, high=1)
    min_cases: int = setting(20, low=1)  # a department is judged where it has this many cases
    holdout_every: int = setting(10, low=2)
    recent_decisions: int = setting(200, low=1)
    reference_share: float = setting(0.1, positive=True, high=0.49)
    department_cap: int = setting(5, low=0)
    min_held_out: int = setting(50, low=0)  # held-out recent decisions before a promotion


@dataclass(frozen=True)
class DuplicateSettings:
    """Likely duplicates (重复件) of a report among the open cases (classifier.similar)."""

    enabled: bool = True
    threshold: float = setting(0.50, positive=True, high=1)  # cosine, same grid or near
    text_only_threshold: float = setting(0.55, positive=True, high=1)  # place unknown
    distance_m: float = setting(300.0, low=0)
    window_days: float = setting(30.0, positive=True)
    k: int = setting(3, low=1)


@dataclass(frozen=True)
class RoutingSettings:
    # 小事不出网格: the kinds of case (department codes = the classifier's labels) that start
    # with the grid's staff instead of a department, when the case lies in a grid with staff.
    grid_first: tuple[str, ...] = ()
    grid_sign_limit: str = "1d"  # a grid's (or the street's) 签收 ...
    grid_resolve_limit: str = "3wd"  # ... and 办结, counted from the hand-over
    verify_limit: str = "2wd"  # 核查 by the grid's staff after a department's 办结


# [section] -> its dataclass; [limits] is a table of limit names (models/deadlines.py).
SECTIONS: dict[str, type] = {
    "district": DistrictSettings,
    "telegram": TelegramSettings,
    "database": DatabaseSettings,
    "classifier": ClassifierSettings,
    "conversation": ConversationSettings,
    "followup": FollowupSettings,
    "delivery": DeliverySettings,
    "calendar": CalendarSettings,
    "dashboard": DashboardSettings,
    "open311": Open311Settings,
    "learning": LearningSettings,
    "duplicates": DuplicateSettings,
    "routing": RoutingSettings,
}
LIMIT_KEYS = ("sign_normal", "sign_urgent", "resolve_normal", "resolve_urgent")
# Every section config.toml may have. [district], [telegram] and [[departments]] are required
# (no default fits another district); the others fall back to the defaults above.
KNOWN_SECTIONS = (*SECTIONS, "limits", *ENTRY_SECTIONS)
TIME_OF_DAY = {
    ("followup", "digest_time"),
    ("learning", "retrain_at"),
    ("calendar", "workday_start"),
    ("calendar", "workday_end"),
}
OPTIONAL_TIMES = {("learning", "retrain_at")}  # "" switches the daily time off
DATES = {("calendar", "holidays"), ("calendar", "adjusted_workdays")}


@dataclass(frozen=True)
class DepartmentConfig:
    code: str
    name: str
    description: str = ""
    chat_id: int | None = None
    limits: dict[str, str] = field(default_factory=dict)
    # 核查: a 办结 of a case in a grid with staff waits for them to verify it on site.
    verify_by_grid: bool = False
    # The shipped corpus's labels this department takes (several, or [] = learned from staff
    # decisions alone); None: its own code, if the corpus has it (see corpus_label_table).
    corpus_labels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StaffConfig:
    telegram_id: int
    name: str
    role: str  # triage | department | grid | street | leader | admin
    department: str | None = None
    grid: str | None = None


@dataclass(frozen=True)
class GridConfig:
    code: str
    name: str
    level: str  # district | street | community | grid | micro
    parent: str | None = None
    places: (
        tuple[str, ...] | list[str]
    ) = ()  # 小区, 路, 村组 … named in reports (models/gridmap.py)


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Paths are absolute (resolved against the config file)."""

    config_path: Path
    district: DistrictSettings
    telegram: TelegramSettings
    database_url: str
    database_echo: bool
    classifier: ClassifierSettings
    conversation: ConversationSettings
    followup: FollowupSettings
    delivery: DeliverySettings
    calendar: CalendarSettings
    limits: dict[str, str]  # only the limits config.toml sets (models/deadlines.py: defaults)
    dashboard: DashboardSettings
    open311: Open311Settings
    routing: RoutingSettings
    departments: tuple[DepartmentConfig, ...]
    staff: tuple[StaffConfig, ...]
    grids: tuple[GridConfig, ...]
    learning: LearningSettings = field(default_factory=LearningSettings)
    duplicates: DuplicateSettings = field(default_factory=DuplicateSettings)
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
        return self.path(self.classifier.model_path)

    @property
    def models_dir(self) -> Path:
        return self.path(self.learning.models_dir)

    @property
    def corpus_dir(self) -> Path:
        return self.path(self.classifier.corpus_dir)

    @property
    def userdict_path(self) -> Path:
        return self.path(self.classifier.userdict)

    def department(self, code: str) -> DepartmentConfig | None:
        return next((d for d in self.departments if d.code == code), None)

    def department_names(self) -> dict[str, str]:
        return {d.code: d.name for d in self.departments}

    def corpus_label_table(
        self, known_labels: Collection[str] | None = None
    ) -> dict[str, tuple[str, ...]]:
        """department code → the corpus labels it takes (classifier.labels.LabelMap)."""
        return corpus_label_table(self.departments, known_labels)


def corpus_label_table(
    departments: Sequence[DepartmentConfig], known_labels: Collection[str] | None = None
) -> dict[str, tuple[str, ...]]:
    """department code → the corpus labels it takes. A department without `corpus_labels`
    takes the label spelled like its code, if the corpus has it (known_labels None: assumed)
    and no department lists it: a district that merges water into 城乡建设 need not also
    write `corpus_labels = []` for a 水务局 it kept for other work."""
    listed = {lab for d in departments for lab in (d.corpus_labels or ())}
    return {
        d.code: tuple(d.corpus_labels)
        if d.corpus_labels is not None
        else (
            (d.code,)
            if d.code not in listed and (known_labels is None or d.code in known_labels)
            else ()
        )
        for d in departments
    }


def _resolve_sqlite_url(url: str, base: Path) -> str:
    # A relative SQLite path in config.toml means "next to config.toml", not "wherever
    # the process happens to be started".
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(base / url[len(prefix) :])
    return url


def _read(config_path: Path) -> dict:
    try:
        return tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"配置文件不存在: {config_path}；用 --config 或环境变量 WHISTLE_CONFIG "
            f"指定，或复制仓库自带的 config.toml"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"配置文件格式错误 {config_path}: {exc}") from exc


def _did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"，是不是 {close[0]}？" if close else f"；可用的: {', '.join(known)}"


def unknown_settings(config_path: Path) -> list[str]:
    """One line per section or key Whistle does not know: a typo would lose its setting, so
    `whistle check` and every start say so (as warnings: the rest still works)."""
    raw = _read(config_path)
    lines = []
    for name, section in raw.items():
        if name not in KNOWN_SECTIONS:
            close = difflib.get_close_matches(name, KNOWN_SECTIONS, n=1)
            hint = (
                f"，是不是 [{close[0]}]？" if close else f"；可用的段: {', '.join(KNOWN_SECTIONS)}"
            )
            lines.append(f"{config_path}: 未知的段 [{name}] 将被忽略{hint}")
            continue
        known = (
            LIMIT_KEYS
            if name == "limits"
            else (
                [f.name for f in dataclasses.fields(SECTIONS[name])] if name in SECTIONS else None
            )
        )
        if known is not None and isinstance(section, dict):
            lines += [
                f"{config_path}: [{name}] 未知的键 {key} 将被忽略{_did_you_mean(key, known)}"
                for key in section
                if key not in known
            ]
    return lines


# ---------------------------------------------------------------- types and ranges

_TYPE_NAMES = {
    str: "文字（string）",
    int: "整数（integer）",
    float: "数字（number）",
    bool: "布尔值 true 或 false（boolean）",
}


def _type_name(hint: Any) -> str:
    if get_origin(hint) is tuple:
        args = get_args(hint)
        item = _TYPE_NAMES[args[0]].split("（")[0]
        if len(args) == 2 and args[1] is Ellipsis:
            return f"{item}的列表（list）"
        return f"{len(args)} 个{item}的列表（list of {len(args)}）"
    return _TYPE_NAMES[hint]


def _optional(hint: Any) -> tuple[Any, bool]:
    """(the type inside `X | None`, True), or (hint, False)."""
    if get_origin(hint) in (Union, types.UnionType):
        inner = [a for a in get_args(hint) if a is not type(None)]
        return inner[0], True
    return hint, False


def _convert(value: Any, hint: Any) -> Any:
    """`value` from TOML as the field's type; TypeError when it is not one."""
    hint, optional = _optional(hint)
    if value is None and optional:
        return None
    if get_origin(hint) is tuple:
        args = get_args(hint)
        if not isinstance(value, list) or (args[-1] is not Ellipsis and len(value) != len(args)):
            raise TypeError
        return tuple(_convert(v, args[0]) for v in value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and type(value) is hint:
        return value
    raise TypeError


def _range_problem(value: Any, meta: dict) -> str | None:
    """Why `value` is out of the field's range or choices, in Chinese and English."""
    if meta.get("choices") and value not in meta["choices"]:
        return f"只能是 {' 或 '.join(meta['choices'])}（one of: {', '.join(meta['choices'])}）"
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    low, high, positive = meta.get("low"), meta.get("high"), meta.get("positive")
    too_low = value <= 0 if positive else low is not None and value < low
    if not too_low and (high is None or value <= high):
        return None
    if positive:
        return (
            "应大于 0（must be > 0）"
            if high is None
            else f"应大于 0 且不大于 {high}（must be > 0 and ≤ {high}）"
        )
    if high is None:
        return f"应不小于 {low}（must be ≥ {low}）"
    if low is None:
        return f"应不大于 {high}（must be ≤ {high}）"
    return f"应在 {low} 到 {high} 之间（must be within {low}–{high}）"


def _format_problem(section: str, key: str, value: Any) -> str | None:
    """Times of day must read HH:MM, dates YYYY-MM-DD."""
    if (section, key) in OPTIONAL_TIMES and value == "":
        return None
    if (section, key) in TIME_OF_DAY and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        return "应写成 HH:MM（time of day），例如 08:30"
    if (section, key) in DATES:
        for day in value:
            try:
                date.fromisoformat(day)
            except ValueError:
                return f"中的 {day!r} 应写成 YYYY-MM-DD（ISO date）"
    return None


def _section(raw: dict, name: str, where: Path) -> tuple[Any, list[str]]:
    """[name] as its dataclass, and one line per wrong value (which keeps its default, so
    `whistle check` goes on and names them all)."""
    kind = SECTIONS[name]
    values = raw.get(name, {})
    if not isinstance(values, dict):
        return kind(), []  # _structure_problems names it
    hints = get_type_hints(kind)
    fields_, problems = {}, []
    for f in dataclasses.fields(kind):
        if f.name not in values:
            continue
        value = values[f.name]
        try:
            value = _convert(value, hints[f.name])
        except TypeError:
            problems.append(
                f"{where}: [{name}] {f.name} 应为{_type_name(_optional(hints[f.name])[0])}"
                f"，而不是 {value!r}；{FIX_HINT}"
            )
            continue
        why = (
            None
            if value is None
            else (_range_problem(value, f.metadata) or _format_problem(name, f.name, value))
        )
        if why:
            problems.append(f"{where}: [{name}] {f.name} {why}，而不是 {value!r}")
            continue
        fields_[f.name] = value
    return kind(**fields_), problems


def _entries(raw: dict, section: str, kind: type, where: Path) -> tuple[list, list[str]]:
    """[[section]] entries as `kind`; problems name the entry and its missing/unknown keys."""
    items, problems = [], []
    fields_ = {f.name for f in dataclasses.fields(kind)}
    required = {
        f.name
        for f in dataclasses.fields(kind)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
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
            what = "; ".join(
                filter(
                    None,
                    [
                        missing and f"缺少 {', '.join(missing)}",
                        unknown and f"未知的键 {', '.join(unknown)}",
                    ],
                )
            )
            problems.append(f"{where}: 第 {n} 个 [[{section}]] {what}；{FIX_HINT}")
            continue
        items.append(kind(**entry))
    return items, problems


def _order_problems(sections: dict, where: Path) -> list[str]:
    """Settings that only make sense in order: one line per pair that is not."""
    pairs = [
        ("classifier", "confidence_threshold", "auto_dispatch_threshold"),
        ("followup", "survey_reminder_days", "survey_close_days"),
        ("calendar", "workday_start", "workday_end"),
    ]
    return [
        f"{where}: [{name}] {first} 应小于 {second}（{first} < {second}），而不是 "
        f"{getattr(sections[name], first)!r} 与 {getattr(sections[name], second)!r}"
        for name, first, second in pairs
        if not getattr(sections[name], first) < getattr(sections[name], second)
    ]


def _structure_problems(raw: dict, where: Path) -> list[str]:
    problems = [
        f"{where}: {name} 应是一个段 [{name}]，而不是单个值；{FIX_HINT}"
        for name in KNOWN_SECTIONS
        if name not in ENTRY_SECTIONS and name in raw and not isinstance(raw[name], dict)
    ]
    for section, kind in SECTIONS.items():
        keys = [f.name for f in dataclasses.fields(kind) if f.metadata.get("required")]
        if not keys:
            continue
        if section not in raw:
            problems.append(f"{where}: 缺少 [{section}] 段（需要 {', '.join(keys)}）；{FIX_HINT}")
            continue
        missing = [
            k for k in keys if isinstance(raw[section], dict) and raw[section].get(k) in (None, "")
        ]
        if missing:
            problems.append(f"{where}: [{section}] 缺少 {', '.join(missing)}；{FIX_HINT}")
    if not raw.get("departments"):
        problems.append(
            f"{where}: 缺少 [[departments]]：至少配置一个部门（code、name），"
            f"code 即分类模型的标签；{FIX_HINT}"
        )
    return problems


def _routing_problems(routing: RoutingSettings, codes: list[str], where: Path) -> list[str]:
    """[routing]: its limits must read as limits and grid_first name departments."""
    from models.deadlines import parse_limit  # the deadline rules own the limit syntax

    problems = []
    for key in ("grid_sign_limit", "grid_resolve_limit", "verify_limit"):
        try:
            parse_limit(getattr(routing, key))
        except ValueError as exc:
            problems.append(f"{where}: [routing] {key}: {exc}")
    unknown = [code for code in routing.grid_first if code not in codes]
    if unknown:
        problems.append(
            f"{where}: [routing] grid_first 中的 {', '.join(unknown)} 不是已配置的部门"
            f"编码（可用: {', '.join(codes)}）"
        )
    return problems


def corpus_labels_in(corpus_dir: Path) -> set[str] | None:
    """The labels of a corpus folder's *.csv files (their `label` column); None when it cannot
    be read: the classifier names that problem when it trains, and a label map is then not
    checked against it."""
    files = sorted(Path(corpus_dir).glob("*.csv"))
    labels: set[str] = set()
    try:
        for path in files:
            with path.open(encoding="utf-8-sig", newline="") as fh:
                labels |= {(row.get("label") or "").strip() for row in csv.DictReader(fh)}
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    labels.discard("")
    return labels if files else None


def _corpus_label_problems(
    departments: list[DepartmentConfig], known: set[str] | None, where: Path
) -> tuple[list, list[str]]:
    """[[departments]] corpus_labels: a list of corpus labels, each known and taken by one
    department. Departments with a wrong value keep the default (so `whistle check` goes on)."""
    problems, fixed = [], []
    for d in departments:
        value = d.corpus_labels
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value)
        ):
            problems.append(
                f"{where}: 部门 {d.code} 的 corpus_labels 应为语料标签的列表"
                f"（可为空列表 []），而不是 {value!r}"
            )
            value = None
        elif value is not None:
            value = tuple(v.strip() for v in value)
            unknown = [v for v in value if known is not None and v not in known]
            if unknown:
                problems.append(
                    f"{where}: 部门 {d.code} 的 corpus_labels 中的 {', '.join(unknown)}"
                    f" 不是语料的标签（语料的标签: {', '.join(sorted(known))}）"
                )
                value = tuple(v for v in value if v not in unknown)
        fixed.append(dataclasses.replace(d, corpus_labels=value))
    counts = Counter(lab for d in fixed for lab in (d.corpus_labels or ()))
    for label in sorted(lab for lab, n in counts.items() if n > 1):
        owners = "、".join(d.code for d in fixed if label in (d.corpus_labels or ()))
        problems.append(
            f"{where}: 语料标签 {label} 只能归入一个部门，corpus_labels 中却同时归入 {owners}"
        )
    return fixed, problems


def read_settings(
    path: str | os.PathLike | None = None, env: dict | None = None
) -> tuple[Settings, list[str]]:
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
            problems.append(
                f"{config_path}: 未知角色 {s.role!r} (staff {s.telegram_id})；"
                f"可用: {', '.join(ROLES)}"
            )
        if s.role == "department" and s.department not in codes:
            problems.append(f"{config_path}: staff {s.telegram_id} 的部门 {s.department!r} 不存在")
    grids, bad = _entries(raw, "grids", GridConfig, config_path)
    problems += bad

    sections = {}
    for name in SECTIONS:
        sections[name], bad = _section(raw, name, config_path)
        problems += bad
    problems += _order_problems(sections, config_path)
    problems += _routing_problems(sections["routing"], codes, config_path)
    corpus_dir = Path(sections["classifier"].corpus_dir)
    known_labels = corpus_labels_in(
        corpus_dir if corpus_dir.is_absolute() else config_path.parent / corpus_dir
    )
    departments, bad = _corpus_label_problems(departments, known_labels, config_path)
    problems += bad
    limits = raw.get("limits", {}) if isinstance(raw.get("limits", {}), dict) else {}
    problems += [
        f'{config_path}: [limits] {key} 应为文字（string），例如 "5wd"，而不是 {value!r}'
        for key, value in limits.items()
        if not isinstance(value, str)
    ]
    db, tg = sections["database"], sections["telegram"]
    database_url = env.get("DATABASE_URL") or db.url
    settings = Settings(
        config_path=config_path,
        district=sections["district"],
        telegram=tg,
        database_url=_resolve_sqlite_url(database_url, config_path.parent),
        database_echo=db.echo,
        classifier=sections["classifier"],
        conversation=sections["conversation"],
        followup=sections["followup"],
        delivery=sections["delivery"],
        calendar=sections["calendar"],
        limits={k: v for k, v in limits.items() if isinstance(v, str)},
        dashboard=sections["dashboard"],
        open311=sections["open311"],
        learning=sections["learning"],
        duplicates=sections["duplicates"],
        routing=sections["routing"],
        departments=tuple(departments),
        staff=tuple(staff),
        grids=tuple(grids),
        telegram_token=env.get("TELEGRAM_TOKEN") or None,
        telegram_base_url=env.get("TELEGRAM_BASE_URL") or tg.base_url or None,
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
