"""Start-up that degrades, never dies: every mistake a newcomer makes in config.toml, the
database URL, the dashboard port or the token stops `whistle` with one clear line and exit 2
(`whistle check` lists them all at once), and a taken dashboard port never stops the bot.

Commands run in-process through whistle.cli.main against real SQLite files, a real PostgreSQL
(TEST_DATABASE_URL) and real sockets."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from models.migrate import head_revision, upgrade_sync
from tests.dbfixtures import create_pg_database, drop_pg_database, pg_base_url, pg_url_for
from tests.startup_kit import (
    REPO,
    clean_env,
    free_port,
    taken_port,
    welcome_line,
    whistle_script,
    without_section,
    write_config,
)
from tests.test_bot_kit import model_path  # noqa: F401  (the session's trained model)
from whistle import cli
from whistle.preflight import check_database

START_COMMANDS = ["run", "demo", "dashboard", "worker", "migrate"]
DB_SETTING = "DATABASE_URL / config.toml [database] url"


def whistle(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `whistle ARGV` in-process: (exit code, stdout, stderr)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_stopped_cleanly(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("✗")]
    assert lines, err
    for fragment in fragments:
        assert any(fragment in line for line in lines), (fragment, err)


def created_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.name != "config.toml"]


@pytest.fixture
def config(tmp_path, monkeypatch) -> Path:
    """A valid config in tmp_path (var/ there, no model yet), as WHISTLE_CONFIG."""
    path = write_config(tmp_path)
    clean_env(monkeypatch, WHISTLE_CONFIG=str(path))
    return path


def set_database(monkeypatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)


# ---------------------------------------------------------------- database URL mistakes

BAD_URLS = {
    "postgres-scheme": ("postgres://postgres@127.0.0.1/whistle", "改成 postgresql+asyncpg://"),
    "postgresql-no-driver": (
        "postgresql://postgres@127.0.0.1/whistle",
        "改成 postgresql+asyncpg://",
    ),
    "psycopg2": ("postgresql+psycopg2://postgres@127.0.0.1/whistle", "改成 postgresql+asyncpg://"),
    "sqlite-no-driver": ("sqlite:///var/whistle.db", "改成 sqlite+aiosqlite://"),
    "driver-not-installed": ("mysql+aiomysql://root@127.0.0.1/whistle", "驱动 aiomysql 也未安装"),
    "not-a-url": ("whistle.db", "无法解析数据库地址"),
}


@pytest.mark.parametrize("command", START_COMMANDS)
@pytest.mark.parametrize("case", list(BAD_URLS))
def test_a_database_url_mistake_stops_every_command_with_one_line(
    case, command, config, monkeypatch, capsys
):
    url, fix = BAD_URLS[case]
    set_database(monkeypatch, url)
    code, _, err = whistle(capsys, command)
    assert_stopped_cleanly(code, err, fix, DB_SETTING)
    assert created_files(config.parent) == []  # nothing trained, no database file


def test_a_refused_connection_names_the_address_and_the_setting(config, monkeypatch, capsys):
    port = free_port()  # nothing listens there
    set_database(monkeypatch, f"postgresql+asyncpg://postgres@127.0.0.1:{port}/whistle")
    for command in START_COMMANDS:
        code, _, err = whistle(capsys, command)
        assert_stopped_cleanly(code, err, f"127.0.0.1:{port}（连接被拒绝", DB_SETTING)
    assert created_files(config.parent) == []


def test_an_unknown_host_is_named(config, monkeypatch, capsys):
    set_database(monkeypatch, "postgresql+asyncpg://postgres@no-such-host.invalid/whistle")
    code, _, err = whistle(capsys, "migrate")
    assert_stopped_cleanly(code, err, "找不到 PostgreSQL 主机 no-such-host.invalid")


@pytest.mark.skipif(pg_base_url() is None, reason="needs TEST_DATABASE_URL")
def test_a_missing_postgresql_database_says_createdb(config, monkeypatch, capsys):
    url = pg_url_for("whistle_no_such_db")
    set_database(monkeypatch, url)
    for command in START_COMMANDS:
        code, _, err = whistle(capsys, command)
        assert_stopped_cleanly(code, err, "createdb whistle_no_such_db", DB_SETTING)


@pytest.mark.skipif(pg_base_url() is None, reason="needs TEST_DATABASE_URL")
def test_postgresql_schema_versions_are_reported(config, monkeypatch, capsys):
    name = asyncio.run(create_pg_database())
    try:
        url = pg_url_for(name)
        set_database(monkeypatch, url)
        code, out, err = whistle(capsys, "check")
        assert "空数据库，启动时自动建表" in out, out + err
        code, _, err = whistle(capsys, "worker")  # the worker does not migrate
        assert_stopped_cleanly(code, err, "还没有数据表：先运行 whistle migrate")
        assert whistle(capsys, "migrate")[0] == 0
        code, out, _ = whistle(capsys, "check")
        assert f"结构为最新版本 {head_revision()}" in out
    finally:
        asyncio.run(drop_pg_database(name))


def test_a_sqlite_file_that_cannot_be_created_is_named(config, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    set_database(monkeypatch, f"sqlite+aiosqlite:///{blocker / 'var' / 'whistle.db'}")
    for command in START_COMMANDS:
        code, _, err = whistle(capsys, command)
        assert_stopped_cleanly(code, err, f"{blocker} 是文件而不是文件夹", DB_SETTING)


@pytest.mark.skipif(
    sys.platform == "win32" or __import__("os").geteuid() == 0,
    reason="root writes into read-only folders",
)
def test_a_read_only_sqlite_folder_is_named(config, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        set_database(monkeypatch, f"sqlite+aiosqlite:///{folder / 'whistle.db'}")
        code, _, err = whistle(capsys, "migrate")
        assert_stopped_cleanly(code, err, f"文件夹 {folder} 不可写")
    finally:
        folder.chmod(0o755)


def test_sqlite_schema_versions_are_reported(config, monkeypatch, capsys):
    db = config.parent / "var" / "whistle.db"
    code, out, _ = whistle(capsys, "check")
    assert "文件尚不存在，启动时创建" in out
    assert not db.exists()  # checking creates nothing

    db.parent.mkdir()
    sqlite3.connect(db).close()
    code, _, err = whistle(capsys, "worker")
    assert_stopped_cleanly(code, err, "还没有数据表：先运行 whistle migrate")

    assert whistle(capsys, "migrate")[0] == 0
    code, out, _ = whistle(capsys, "check")
    assert f"结构为最新版本 {head_revision()}" in out

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dfeed'")
    code, out, _ = whistle(capsys, "check")
    assert code == 2
    assert "结构版本 f00dfeed 不是本程序的任何版本" in out


def test_a_file_that_is_not_a_database_is_named(config, monkeypatch, capsys):
    db = config.parent / "var" / "whistle.db"
    db.parent.mkdir()
    db.write_text("not a database")
    code, _, err = whistle(capsys, "migrate")
    assert_stopped_cleanly(code, err, f"{db} 不是可用的 SQLite 数据库")


def test_the_database_check_accepts_a_migrated_sqlite_file(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    upgrade_sync(url)
    [finding] = asyncio.run(check_database(url, require_head=True))
    assert finding.level == "ok", finding


# ---------------------------------------------------------------- config.toml mistakes

MISSING = {
    "[district]": "缺少 [district] 段（需要 name, case_prefix）",
    "[telegram]": "缺少 [telegram] 段（需要 triage_chat_id）",
    "[[departments]]": "缺少 [[departments]]：至少配置一个部门",
}


@pytest.mark.parametrize("command", [*START_COMMANDS, "check"])
@pytest.mark.parametrize("section", list(MISSING))
def test_a_missing_section_is_named_with_the_fix(section, command, tmp_path, monkeypatch, capsys):
    text = without_section((REPO / "config.toml").read_text(encoding="utf-8"), section)
    path = write_config(tmp_path, text=text)
    clean_env(monkeypatch, WHISTLE_CONFIG=str(path))
    code, out, err = whistle(capsys, command)
    shown = out if command == "check" else err
    assert_stopped_cleanly(code, shown, MISSING[section], "可参照仓库自带的 config.toml")
    assert "Traceback" not in out + err
    assert created_files(tmp_path) == []


def test_a_missing_required_value_is_named(tmp_path, monkeypatch, capsys):
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    text = text.replace('case_prefix = "WC"', "")
    text = text.replace('code = "water"\nname = "水务局"', 'code = "water"\nnmae = "水务局"')
    clean_env(monkeypatch, WHISTLE_CONFIG=str(write_config(tmp_path, text=text)))
    code, _, err = whistle(capsys, "run")
    assert_stopped_cleanly(
        code, err, "[district] 缺少 case_prefix", "第 1 个 [[departments]] 缺少 name; 未知的键 nmae"
    )


def test_a_missing_config_file_says_how_to_point_at_one(tmp_path, monkeypatch, capsys):
    clean_env(monkeypatch)
    code, _, err = whistle(capsys, "--config", str(tmp_path / "nowhere.toml"), "run")
    assert_stopped_cleanly(code, err, "配置文件不存在", "WHISTLE_CONFIG")


def test_an_unknown_section_is_reported_but_does_not_stop(
    tmp_path, monkeypatch, capsys, model_path
):
    text = (REPO / "config.toml").read_text(encoding="utf-8") + "\n[dashbord]\nport = 9999\n"
    clean_env(monkeypatch, WHISTLE_CONFIG=str(write_config(tmp_path, text=text, model=model_path)))
    code, out, err = whistle(capsys, "--config", str(tmp_path / "config.toml"), "check")
    assert "! 配置:" in out and "未知的段 [dashbord] 将被忽略，是不是 [dashboard]？" in out
    assert code == 0, out + err


def test_sections_with_defaults_may_be_left_out(tmp_path, monkeypatch, capsys, model_path):
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    for section in (
        "[database]",
        "[classifier]",
        "[conversation]",
        "[followup]",
        "[delivery]",
        "[calendar]",
        "[limits]",
        "[dashboard]",
        "[[staff]]",
        "[[grids]]",
    ):
        text = without_section(text, section)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    clean_env(monkeypatch, WHISTLE_CONFIG=str(path))
    code, out, _ = whistle(capsys, "check")
    assert "✗" not in out, out
    assert code == 0
    # The shipped corpus is found wherever config.toml lives.
    assert "语料训练" in out or "版本" in out


# ---------------------------------------------------------------- `whistle check`


def test_check_reports_every_problem_at_once(tmp_path, monkeypatch, capsys):
    text = without_section((REPO / "config.toml").read_text(encoding="utf-8"), "[district]")
    model = tmp_path / "broken-model.npz"
    model.write_text("not a model")
    path = write_config(tmp_path, text=text, model=model)
    with taken_port() as sock:
        port = sock.getsockname()[1]
        text = path.read_text(encoding="utf-8").replace("port = 8080", f"port = {port}")
        path.write_text(text, encoding="utf-8")
        clean_env(
            monkeypatch,
            WHISTLE_CONFIG=str(path),
            DATABASE_URL="postgres://x@h/db",
            TELEGRAM_TOKEN="not-a-token",
        )
        code, out, err = whistle(capsys, "check")
    assert code == 2
    assert "Traceback" not in out + err
    lines = out.splitlines()
    expected = {
        "配置": "缺少 [district] 段",
        "数据库": "改成 postgresql+asyncpg://",
        "模型": "broken-model.npz",
        "指挥大屏": f"127.0.0.1:{port} 启动（端口已被占用）",
        "Telegram": "TELEGRAM_TOKEN 的格式不对",
    }
    for topic, fragment in expected.items():
        assert any(
            line.startswith(("✗", "!")) and f" {topic}: " in line and fragment in line
            for line in lines
        ), (topic, out)


def test_check_passes_on_a_good_setup(tmp_path, monkeypatch, capsys, model_path):
    path = write_config(tmp_path, model=model_path)
    text = path.read_text(encoding="utf-8").replace("port = 8080", f"port = {free_port()}")
    path.write_text(text, encoding="utf-8")
    clean_env(monkeypatch, WHISTLE_CONFIG=str(path), TELEGRAM_TOKEN="123456:ABC-def_123")
    code, out, err = whistle(capsys, "check")
    assert code == 0, out + err
    # config, database, model, grids, dashboard, Telegram
    assert [line[0] for line in out.splitlines()] == ["✓"] * 6, out
    assert "已设置令牌，polling 模式" in out


def test_webhook_mode_needs_its_url_and_secret(tmp_path, monkeypatch, capsys):
    text = (
        (REPO / "config.toml")
        .read_text(encoding="utf-8")
        .replace('mode = "polling"', 'mode = "webhook"')
    )
    clean_env(
        monkeypatch,
        WHISTLE_CONFIG=str(write_config(tmp_path, text=text)),
        TELEGRAM_TOKEN="123456:ABC",
    )
    code, _, err = whistle(capsys, "run")
    assert_stopped_cleanly(code, err, "webhook_url", "TELEGRAM_WEBHOOK_SECRET")


def test_an_unknown_telegram_mode_is_named(tmp_path, monkeypatch, capsys):
    text = (
        (REPO / "config.toml")
        .read_text(encoding="utf-8")
        .replace('mode = "polling"', 'mode = "pull"')
    )
    clean_env(monkeypatch, WHISTLE_CONFIG=str(write_config(tmp_path, text=text)))
    code, _, err = whistle(capsys, "run")
    assert_stopped_cleanly(code, err, "[telegram] mode 只能是 polling 或 webhook")


def test_the_worker_needs_a_token(config, capsys):
    code, _, err = whistle(capsys, "worker")
    assert_stopped_cleanly(code, err, "需要环境变量 TELEGRAM_TOKEN")


# ---------------------------------------------------------------- the dashboard's port


def test_the_dashboard_alone_stops_on_a_taken_port(config, capsys):
    with taken_port() as sock:
        port = sock.getsockname()[1]
        code, _, err = whistle(capsys, "dashboard", "--dashboard-port", str(port))
    assert_stopped_cleanly(
        code,
        err,
        f"127.0.0.1:{port} 启动（端口已被占用）",
        "config.toml 的 [dashboard] port",
        f"--dashboard-port {port + 1}",
    )
    assert created_files(config.parent) == []


def test_a_dashboard_port_taken_after_the_check_leaves_the_bot_running(config, capsys):
    """The race: the port is free when `run` checks it and taken when uvicorn would bind."""
    from whistle.config import load_settings

    settings = load_settings(config, env={})
    with taken_port() as sock:
        port = sock.getsockname()[1]
        settings = cli.replace(settings, dashboard=cli.replace(settings.dashboard, port=port))

        async def bot() -> str:
            await asyncio.sleep(0.5)  # the bot outlives the dashboard's failure
            return "done"

        asyncio.run(cli._run_with_dashboard(bot(), settings, True))
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port} 启动（端口已被占用），机器人照常运行" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["0", "70000", "http"])
def test_a_bad_dashboard_port_option_is_refused(value, config, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--dashboard-port", value])
    assert stop.value.code == 2
    assert "端口应是 1 到 65535 之间的整数" in capsys.readouterr().err


# ---------------------------------------------------------------- no dashboard, no Starlette


def test_commands_without_the_dashboard_do_not_import_it(tmp_path, model_path):
    """As in a venv without the dashboard's libraries: starlette and itsdangerous cannot be
    imported, and `whistle check` and the demo (`whistle run --no-dashboard`) still work."""
    blocker = (
        "import sys\n"
        "class Missing:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('starlette', 'itsdangerous', 'uvicorn'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Missing())\n"
        "from whistle.cli import main\n"
        "import bot.duties, bot.run\n"
        "code = main(sys.argv[1:])\n"
        "assert not any(m.startswith(('web', 'starlette')) for m in sys.modules), 'imported'\n"
        "sys.exit(code)\n"
    )
    path = write_config(tmp_path, model=model_path)
    env = clean_env(WHISTLE_CONFIG=str(path))
    for argv, stdin in ((["check"], ""), (["run", "--no-dashboard"], "/start\n:wait\n:quit\n")):
        proc = subprocess.run(
            [sys.executable, "-c", blocker, *argv],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            check=False,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert welcome_line() in proc.stdout, proc.stdout


def test_the_console_script_is_installed_next_to_python():
    assert whistle_script().exists()


# ---------------------------------------------------------------- the Bot API at start


def test_an_unreachable_bot_api_stops_with_one_line(tmp_path, monkeypatch, capsys, model_path):
    port = free_port()  # nothing answers there
    clean_env(
        monkeypatch,
        WHISTLE_CONFIG=str(write_config(tmp_path, model=model_path)),
        TELEGRAM_TOKEN="123456:ABC",
        TELEGRAM_BASE_URL=f"http://127.0.0.1:{port}/bot",
    )
    code, _, err = whistle(capsys, "run", "--no-dashboard")
    assert_stopped_cleanly(code, err, "连不上 Bot API", "TELEGRAM_BASE_URL")


@pytest.mark.parametrize("command", ["run", "demo"])
def test_a_damaged_model_file_stops_with_one_line(command, tmp_path, monkeypatch, capsys):
    model = tmp_path / "model.npz"
    model.write_bytes(b"PK\x03\x04 not really a model")
    clean_env(monkeypatch, WHISTLE_CONFIG=str(write_config(tmp_path, model=model)))
    code, _, err = whistle(capsys, command, "--dashboard-port", str(free_port()))
    assert_stopped_cleanly(code, err, str(model), "[classifier] model_path")
    code, out, _ = whistle(capsys, "check")
    assert code == 2 and "✗ 模型: " in out


def test_a_value_where_a_section_belongs_is_named(tmp_path, monkeypatch, capsys):
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    text = 'dashboard = 8080\nstaff = ["9001"]\n' + without_section(
        without_section(text, "[dashboard]"), "[[staff]]"
    )
    clean_env(monkeypatch, WHISTLE_CONFIG=str(write_config(tmp_path, text=text)))
    code, _, err = whistle(capsys, "run")
    assert_stopped_cleanly(
        code,
        err,
        "dashboard 应是一个段 [dashboard]，而不是单个值",
        "第 1 个 [[staff]] 应是一段键值",
    )
