"""Start-up checks: what would stop Whistle from starting, each said in one line (what is wrong,
which setting, how to fix it).

`whistle check` runs them all and prints every finding; each command runs the ones it needs
before it starts anything and exits 2 on an error (cli.py). Nothing here imports the
dashboard, the bot or the classifier's training code, so the checks are fast and a missing
optional piece never hides the others.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import os
import re
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from whistle.config import ConfigError, Settings, read_settings, unknown_settings

OK, WARNING, ERROR = "ok", "warning", "error"
DB_SETTING = "DATABASE_URL / config.toml [database] url"
DB_EXAMPLES = "sqlite+aiosqlite:///var/whistle.db 或 postgresql+asyncpg://用户@主机:5432/库名"
CONNECT_TIMEOUT = 5.0  # seconds; a PostgreSQL that does not answer in this time is an error
TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
POLLING, WEBHOOK = "polling", "webhook"


@dataclass(frozen=True)
class Finding:
    level: str  # OK | WARNING | ERROR
    topic: str  # 配置 / 数据库 / 模型 / 指挥大屏 / Telegram
    message: str

    @property
    def is_error(self) -> bool:
        return self.level == ERROR

    def line(self) -> str:
        mark = {OK: "✓", WARNING: "!", ERROR: "✗"}[self.level]
        return f"{mark} {self.topic}: {self.message}"


class StartupError(Exception):
    """Findings that stop a command from starting."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__("\n".join(f.line() for f in findings))


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.is_error]


def raise_on_errors(findings: list[Finding]) -> None:
    if bad := errors(findings):
        raise StartupError(bad)


# ---------------------------------------------------------------- config


def check_config(
    path: str | os.PathLike | None = None, env: dict | None = None
) -> tuple[Settings | None, list[Finding]]:
    """The settings (None when config.toml cannot be read) and what is wrong with them."""
    try:
        settings, problems = read_settings(path, env)
    except ConfigError as exc:
        return None, [Finding(ERROR, "配置", p) for p in exc.problems]
    findings = [Finding(ERROR, "配置", p) for p in problems]
    findings += [Finding(WARNING, "配置", w) for w in unknown_settings(settings.config_path)]
    if not problems:
        findings.append(
            Finding(
                OK,
                "配置",
                f"{settings.config_path}（{len(settings.departments)} "
                f"个部门，{len(settings.staff)} 名工作人员，"
                f"{len(settings.grids)} 个网格）",
            )
        )
    return settings, findings


# ---------------------------------------------------------------- database


def _db_error(message: str) -> Finding:
    return Finding(ERROR, "数据库", f"{message}（设置: {DB_SETTING}）")


def parse_database_url(url: str) -> tuple[URL | None, Finding | None]:
    """The parsed URL when Whistle can use its driver, else the finding that says why not."""
    try:
        u = make_url(url)
    except ArgumentError:
        return None, _db_error(f"无法解析数据库地址 {url!r}；应类似 {DB_EXAMPLES}")
    shown = u.render_as_string(hide_password=True)
    scheme = url.split("://", 1)[0] + "://"
    backend, _, driver = u.drivername.partition("+")
    if backend in ("postgres", "postgresql") and driver != "asyncpg":
        return None, _db_error(
            f"{shown} 不能用：Whistle 用异步驱动 asyncpg，"
            f"请把开头的 {scheme} 改成 postgresql+asyncpg://"
        )
    if backend == "sqlite" and driver != "aiosqlite":
        return None, _db_error(
            f"{shown} 不能用：Whistle 用异步驱动 aiosqlite，"
            f"请把开头的 {scheme} 改成 sqlite+aiosqlite://"
        )
    if backend not in ("sqlite", "postgresql"):
        module = driver or backend
        installed = module.isidentifier() and importlib.util.find_spec(module) is not None
        why = "" if installed else f"（驱动 {module} 也未安装）"
        return None, _db_error(
            f"{shown} 不能用：Whistle 只支持 SQLite 和 PostgreSQL{why}，例如 {DB_EXAMPLES}"
        )
    return u, None


def _sqlite_folder_problem(path: Path) -> str | None:
    """Why a SQLite file at `path` could not be created or written, or None."""
    if path.exists():
        if not path.is_file():
            return f"{path} 不是文件"
        if not os.access(path, os.R_OK | os.W_OK):
            return f"没有读写 {path} 的权限"
        return None
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"SQLite 文件 {path} 无法创建：{folder} 是文件而不是文件夹"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"文件夹 {folder} 不可写，无法创建 {path}"
    return None


def _sqlite_revision(path: Path) -> str | None:
    """The Alembic revision in an existing SQLite file (read-only), None if it has none."""
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None  # no alembic_version table yet: an empty database
        raise
    finally:
        conn.close()
    return row[0] if row else None


async def _postgres_revision(u: URL) -> tuple[str | None, Finding | None]:
    """Connect to PostgreSQL; the revision there, or the finding saying why it failed."""
    import asyncpg

    where = f"{u.host or 'localhost'}:{u.port or 5432}"
    dsn = u.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    except asyncpg.InvalidCatalogNameError:
        return None, _db_error(
            f'PostgreSQL {where} 上没有数据库 "{u.database}"：先运行 '
            f"createdb {u.database}（或改正地址中的库名）"
        )
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
        return None, _db_error(
            f"PostgreSQL {where} 拒绝了用户 {u.username!r} 的登录：请检查地址中的用户名和密码"
        )
    except TimeoutError:
        return None, _db_error(
            f"连接 PostgreSQL {where} 超时（{CONNECT_TIMEOUT:g} 秒）：请检查主机、端口和防火墙"
        )
    except socket.gaierror:
        return None, _db_error(f"找不到 PostgreSQL 主机 {u.host}：请改正地址中的主机名")
    except OSError as exc:
        why = "连接被拒绝，没有服务在监听" if exc.errno == errno.ECONNREFUSED else str(exc)
        return None, _db_error(
            f"无法连接 PostgreSQL {where}（{why}）：请启动 PostgreSQL 或改正地址中的主机和端口"
        )
    except asyncpg.PostgresError as exc:
        return None, _db_error(f"PostgreSQL {where} 拒绝连接: {exc}")
    try:
        return await conn.fetchval("SELECT version_num FROM alembic_version"), None
    except asyncpg.UndefinedTableError:
        return None, None
    finally:
        await conn.close()


def _schema_finding(revision: str | None, shown: str, require_head: bool) -> Finding:
    from alembic.util import CommandError

    from models.migrate import alembic_config, head_revision

    head = head_revision()
    if revision == head:
        return Finding(OK, "数据库", f"{shown}（结构为最新版本 {head}）")
    if revision is None:
        if require_head:
            return _db_error(f"{shown} 还没有数据表：先运行 whistle migrate")
        return Finding(OK, "数据库", f"{shown}（空数据库，启动时自动建表）")
    from alembic.script import ScriptDirectory

    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError:
        return _db_error(
            f"{shown} 的结构版本 {revision} 不是本程序的任何版本（数据库比程序新？）："
            "请升级程序，或换一个数据库"
        )
    message = f"{shown} 的结构版本 {revision} 落后于 {head}：运行 whistle migrate"
    if require_head:
        return _db_error(message)
    return Finding(WARNING, "数据库", message + "（whistle run 启动时也会自动升级）")


async def check_database(url: str, *, require_head: bool = False) -> list[Finding]:
    """URL, driver, reachability and schema version. require_head: an out-of-date schema is
    an error (commands that do not migrate, e.g. the worker)."""
    u, problem = parse_database_url(url)
    if problem:
        return [problem]
    shown = u.render_as_string(hide_password=True)
    if u.get_backend_name() == "sqlite":
        if not u.database or u.database == ":memory:" or u.query.get("uri") == "true":
            return [Finding(WARNING, "数据库", f"{shown} 是内存数据库：进程退出后数据全部丢失")]
        path = Path(u.database)
        if why := _sqlite_folder_problem(path):
            return [_db_error(why)]
        if not path.exists():
            return [Finding(OK, "数据库", f"{shown}（文件尚不存在，启动时创建）")]
        try:
            revision = _sqlite_revision(path)
        except sqlite3.DatabaseError as exc:
            return [_db_error(f"{path} 不是可用的 SQLite 数据库（{exc}）")]
        return [_schema_finding(revision, shown, require_head)]
    revision, problem = await _postgres_revision(u)
    return [problem or _schema_finding(revision, shown, require_head)]


# ---------------------------------------------------------------- model


def check_model(settings: Settings, *, load: bool = False) -> list[Finding]:
    """The model file exists (and loads, with load=True), or the corpus to train it does."""
    path = settings.model_path
    if path.exists():
        if not load:
            return [Finding(OK, "模型", str(path))]
        from classifier import ModelError, load_model

        try:
            model = load_model(path)
        except ModelError as exc:
            return [
                Finding(
                    ERROR,
                    "模型",
                    f"{exc}：删除该文件（启动时用内置语料重新训练）或用 "
                    "python train.py fit 重新训练（设置: [classifier] model_path）",
                )
            ]
        return [Finding(OK, "模型", f"{path}（版本 {model.model_version}）")]
    corpus = settings.corpus_dir
    if not any(corpus.glob("*.csv")):
        return [
            Finding(
                ERROR,
                "模型",
                f"模型 {path} 不存在，语料文件夹 {corpus} 中也没有 CSV 可供训练："
                "请设置 [classifier] model_path 或 corpus_dir",
            )
        ]
    return [Finding(WARNING, "模型", f"{path} 不存在：首次启动时用 {corpus} 的语料训练（几秒钟）")]


# ---------------------------------------------------------------- dashboard


def dashboard_address(settings: Settings) -> tuple[str, int]:
    return settings.dashboard.host, settings.dashboard.port


class DashboardPortError(Exception):
    """The dashboard cannot listen on host:port; line() says which port and how to change it."""

    def __init__(self, host: str, port: int, why: str):
        self.host, self.port, self.why = host, port, why
        super().__init__("指挥大屏" + self.line(bot_keeps_running=False))

    def line(self, *, bot_keeps_running: bool) -> str:
        """The finding's text (its topic, 指挥大屏, goes in front)."""
        other = self.port + 1 if self.port < 65535 else 8081
        going_on = "，机器人照常运行" if bot_keeps_running else ""
        return (
            f"无法在 {self.host}:{self.port} 启动（{self.why}）{going_on}。"
            f"换端口：config.toml 的 [dashboard] port，或命令行 --dashboard-port {other}"
        )


def bind_port(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (not yet listening), or DashboardPortError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise DashboardPortError(host, port, f"无法解析主机名: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    # As asyncio binds: a port left in TIME_WAIT is fine, one someone listens on is not.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        why = "端口已被占用" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise DashboardPortError(host, port, why) from exc
    return sock


def check_dashboard_port(settings: Settings, *, required: bool) -> list[Finding]:
    """required: the command is the dashboard alone, so a taken port is an error."""
    host, port = dashboard_address(settings)
    try:
        bind_port(host, port).close()
    except DashboardPortError as exc:
        line = exc.line(bot_keeps_running=not required)
        return [Finding(ERROR if required else WARNING, "指挥大屏", line)]
    return [Finding(OK, "指挥大屏", f"http://{host}:{port}/ 可用")]


# ---------------------------------------------------------------- Telegram


def check_telegram(settings: Settings, *, token_required: bool = False) -> list[Finding]:
    tg = settings.telegram
    mode = tg.mode  # one of polling, webhook: checked when config.toml is read
    token = settings.telegram_token
    if not token:
        if token_required:
            return [Finding(ERROR, "Telegram", "需要环境变量 TELEGRAM_TOKEN（向 @BotFather 申请）")]
        return [
            Finding(OK, "Telegram", "未设置 TELEGRAM_TOKEN：演示模式（内置的本地 Bot API 模拟器）")
        ]
    findings = []
    if not TOKEN_SHAPE.match(token):
        findings.append(
            Finding(
                ERROR,
                "Telegram",
                "TELEGRAM_TOKEN 的格式不对：应类似 123456789:AA…（@BotFather 给的整串）",
            )
        )
    if mode == WEBHOOK and not tg.webhook_url:
        findings.append(
            Finding(
                ERROR,
                "Telegram",
                "webhook 模式需要 config.toml [telegram] "
                "webhook_url（Telegram 调用的公网 https 地址）",
            )
        )
    if mode == WEBHOOK and not settings.webhook_secret:
        findings.append(
            Finding(ERROR, "Telegram", "webhook 模式需要环境变量 TELEGRAM_WEBHOOK_SECRET")
        )
    api = settings.telegram_base_url or "api.telegram.org"
    return findings or [Finding(OK, "Telegram", f"已设置令牌，{mode} 模式，Bot API: {api}")]


# ---------------------------------------------------------------- what each command needs


def check_grids(settings: Settings) -> list[Finding]:
    """The gazetteer and boundary files: warnings only, a broken one only turns locating off."""
    from models.gridmap import GridMap  # shapely is loaded only by the checks that need it

    gridmap = GridMap.from_settings(settings)
    findings = [Finding(WARNING, "网格", message) for _, message in gridmap.problems]
    if gridmap.tree is None:
        return findings or [Finding(OK, "网格", "未配置网格：案件不归网格")]
    located = "按定位和地名" if gridmap.locator is not None else "仅按地名"
    findings.append(Finding(OK, "网格", f"{len(gridmap.tree)} 个网格，{located}归网格"))
    return findings


def check_all(settings: Settings) -> list[Finding]:
    """Everything `whistle check` reports (the config findings come from check_config)."""
    return [
        *asyncio.run(check_database(settings.database_url)),
        *check_model(settings, load=True),
        *check_grids(settings),
        *check_dashboard_port(settings, required=False),
        *check_telegram(settings),
    ]


def before_start(
    settings: Settings,
    *,
    model: bool = False,
    telegram: bool = False,
    token_required: bool = False,
    require_head: bool = False,
    dashboard: bool = False,
) -> list[Finding]:
    """The checks a command needs (the database always): StartupError with every error found,
    else the findings. dashboard: the command is the dashboard alone, so its port must be
    free (`run` checks the port itself and goes on without the dashboard)."""
    findings = asyncio.run(check_database(settings.database_url, require_head=require_head))
    if model:
        findings += check_model(settings)
    if telegram:
        findings += check_telegram(settings, token_required=token_required)
    if dashboard:
        findings += check_dashboard_port(settings, required=True)
    raise_on_errors(findings)
    return findings
