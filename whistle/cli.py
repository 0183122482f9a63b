"""The `whistle` console command: run, demo, migrate, dashboard, worker, check, model.

Every command checks what it needs first (whistle/preflight.py) and stops with one line per
problem and exit code 2; the dashboard (web.app, Starlette) is imported only when it is served.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import replace

from whistle import preflight
from whistle.config import ConfigError
from whistle.preflight import ERROR, WARNING, DashboardPortError, Finding, StartupError

log = logging.getLogger("whistle")
EXIT_STARTUP = 2  # a problem the user can fix: config, database, port, token


def _prepare(settings) -> None:
    """Bring the schema to head, load reference data and make sure a model exists."""
    from classifier import build_default_model
    from models.migrate import upgrade_sync

    upgrade_sync(settings.database_url)
    asyncio.run(_sync_reference_data(settings))
    if not settings.model_path.exists():
        print(f"首次启动：正在用内置语料训练分类模型 → {settings.model_path}")
        build_default_model(settings)


async def _sync_reference_data(settings) -> None:
    from models.engine import make_engine, session_scope
    from models.reference import sync_reference_data

    engine = make_engine(settings.database_url)
    try:
        async with session_scope(engine) as session:
            await sync_reference_data(session, settings)
    finally:
        await engine.dispose()


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _dashboard_can_start(settings) -> bool:
    """Whether the dashboard's port is free; if not, say so in one line (the bot still runs)."""
    for finding in preflight.check_dashboard_port(settings, required=False):
        if finding.level != preflight.OK:
            _warn(finding.line())
            return False
    host, port = preflight.dashboard_address(settings)
    print(f"指挥大屏: http://{host}:{port}/")
    return True


async def _serve_dashboard_beside_bot(settings) -> None:
    """The dashboard until cancelled; if it fails, the bot goes on without it."""
    try:
        from web.app import serve_dashboard

        await serve_dashboard(settings)
    except DashboardPortError as exc:  # taken between the check and the start
        _warn(Finding(WARNING, "指挥大屏", exc.line(bot_keeps_running=True)).line())
    except Exception:  # a bug or a broken install: show it, and keep the bot
        log.exception("指挥大屏停止了，机器人照常运行")


async def _run_with_dashboard(bot_coro, settings, with_dashboard: bool) -> None:
    bot = asyncio.create_task(bot_coro)
    dashboard = (
        asyncio.create_task(_serve_dashboard_beside_bot(settings)) if with_dashboard else None
    )
    try:
        await bot
    finally:
        for task in (bot, dashboard):
            if task is not None:
                task.cancel()
        await asyncio.gather(bot, *filter(None, [dashboard]), return_exceptions=True)


def cmd_run(args, settings) -> int:
    preflight.before_start(settings, model=True, telegram=True)
    from bot.run import run_bot, run_demo

    dash = not args.no_dashboard and _dashboard_can_start(settings)
    _prepare(settings)
    if settings.telegram_token:
        coro = run_bot(settings)
    else:
        print("未设置 TELEGRAM_TOKEN：使用内置的本地 Bot API 模拟器运行（演示模式）。")
        coro = run_demo(settings)
    asyncio.run(_run_with_dashboard(coro, settings, dash))
    return 0


def cmd_demo(args, settings) -> int:
    preflight.before_start(settings, model=True)
    from bot.run import run_demo

    dash = args.dashboard and _dashboard_can_start(settings)
    _prepare(settings)
    asyncio.run(_run_with_dashboard(run_demo(settings), settings, dash))
    return 0


def cmd_migrate(args, settings) -> int:
    from models.migrate import upgrade_sync

    preflight.before_start(settings)
    upgrade_sync(settings.database_url)
    asyncio.run(_sync_reference_data(settings))
    print(f"数据库已升级到最新版本: {settings.database_url}")
    return 0


def cmd_dashboard(args, settings) -> int:
    preflight.before_start(settings, dashboard=True)
    from models.migrate import upgrade_sync
    from web.app import serve_dashboard

    upgrade_sync(settings.database_url)
    host, port = preflight.dashboard_address(settings)
    print(f"指挥大屏: http://{host}:{port}/")
    asyncio.run(serve_dashboard(settings))
    return 0


def cmd_worker(args, settings) -> int:
    """An extra follow-up/outbox worker beside the bot (PostgreSQL deployments)."""
    preflight.before_start(settings, telegram=True, token_required=True, require_head=True)
    from bot.app import run_worker

    asyncio.run(run_worker(settings))
    return 0


def cmd_apikey(args, settings) -> int:
    """Open311 API keys: add (prints the key once), list, revoke."""
    from models.migrate import upgrade_sync
    from web.open311.keys import run_apikey

    preflight.before_start(settings)
    upgrade_sync(settings.database_url)
    return asyncio.run(run_apikey(args, settings))


def cmd_check(args, settings) -> int:
    """Every finding, one line each (config findings were printed by main)."""
    findings = preflight.check_all(settings)
    for finding in findings:
        print(finding.line())
    return EXIT_STARTUP if preflight.errors(findings) else 0


def _failure_lines(exc: BaseException) -> list[str] | None:
    """One line per problem for a failure the user can fix; None for a bug (traceback)."""
    if isinstance(exc, StartupError):
        return [f.line() for f in exc.findings]
    if isinstance(exc, ConfigError):
        return [Finding(ERROR, "配置", p).line() for p in exc.problems]
    if isinstance(exc, DashboardPortError):
        return [Finding(ERROR, "指挥大屏", exc.line(bot_keeps_running=False)).line()]
    from telegram.error import InvalidToken, NetworkError

    from classifier import ModelError
    from models.migrate import MigrationError

    if isinstance(exc, MigrationError):
        return [Finding(ERROR, "数据库", f"数据库升级失败: {exc}").line()]
    if isinstance(exc, ModelError):
        return [
            Finding(
                ERROR,
                "模型",
                f"{exc}：删除该文件（启动时重新训练）或用 python train.py "
                "fit 重新训练（设置: [classifier] model_path）",
            ).line()
        ]
    if isinstance(exc, InvalidToken):
        return [
            Finding(
                ERROR, "Telegram", "Bot API 拒绝了 TELEGRAM_TOKEN：请核对 @BotFather 给的令牌"
            ).line()
        ]
    if isinstance(exc, NetworkError):
        return [
            Finding(
                ERROR, "Telegram", f"连不上 Bot API（{exc}）：请检查网络或 TELEGRAM_BASE_URL"
            ).line()
        ]
    return None


def cmd_model(args, settings) -> int:
    """`whistle model list|promote VERSION|rollback|train`: the learning loop's models (counts
    and scores, never a message). A running bot picks up a change at its next reload check."""
    from models.migrate import upgrade_sync

    preflight.before_start(settings)
    upgrade_sync(settings.database_url)
    return asyncio.run(_model(args, settings))


async def _model(args, settings) -> int:
    from bot.duties import learning as duty
    from bot.services import utc_now
    from classifier.learning import LearningError
    from classifier.registry import RegistryError
    from models.engine import make_engine, session_scope

    engine = make_engine(settings.database_url)

    def session():
        return session_scope(engine)

    try:
        if args.action == "list":
            serving = duty.registry_of(settings).champion_version() or "—"
            print(await duty.model_overview(settings, session, serving, limit=args.limit))
        elif args.action == "train":
            print("正在训练挑战模型（独立进程）……")
            outcome = await duty.retrain_now(settings, session, utc_now(), trigger="manual")
            verdict = "已启用" if outcome.promoted else "未通过门槛，未启用"
            print(f"模型 {outcome.result.version}：{verdict}")
            for reason in outcome.decision.reasons:
                print(f"  {reason}")
        elif args.action == "promote":
            version = await duty.promote_version(settings, session, args.version, utc_now())
            print(f"已启用模型 {version}")
        else:
            print(f"已回滚到模型 {await duty.rollback(settings, session, utc_now())}")
    except (RegistryError, LearningError) as exc:
        _warn(str(exc))
        return 1
    finally:
        await engine.dispose()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="whistle", description="吹哨报到 Telegram 受理与派单服务")
    p.add_argument(
        "--config", help="config.toml 路径（默认 WHISTLE_CONFIG 或仓库内的 config.toml）"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="输出调试日志")
    sub = p.add_subparsers(dest="command", required=True)

    def port(value: str) -> int:
        if not value.isdigit() or not 1 <= int(value) <= 65535:
            raise argparse.ArgumentTypeError(f"端口应是 1 到 65535 之间的整数，而不是 {value!r}")
        return int(value)

    def with_port(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--dashboard-port",
            type=port,
            metavar="PORT",
            help="指挥大屏端口（默认 config.toml 的 [dashboard] port）",
        )
        return parser

    run = with_port(
        sub.add_parser("run", help="运行机器人与指挥大屏（无 TELEGRAM_TOKEN 时为演示模式）")
    )
    run.add_argument("--no-dashboard", action="store_true", help="不启动指挥大屏")
    run.set_defaults(func=cmd_run)

    demo = with_port(sub.add_parser("demo", help="在终端中通过本地模拟器体验完整流程"))
    demo.add_argument("--dashboard", action="store_true", help="同时启动指挥大屏")
    demo.set_defaults(func=cmd_demo)

    sub.add_parser("migrate", help="升级数据库结构并同步部门/人员/网格").set_defaults(
        func=cmd_migrate
    )
    with_port(sub.add_parser("dashboard", help="只运行指挥大屏")).set_defaults(func=cmd_dashboard)
    sub.add_parser("worker", help="额外的跟进/推送进程（多进程共用 PostgreSQL 时）").set_defaults(
        func=cmd_worker
    )
    apikey = sub.add_parser("apikey", help="管理 Open311 接口密钥（12345 热线等外部系统）")
    keys = apikey.add_subparsers(dest="action", required=True)
    add = keys.add_parser("add", help="新建客户端并显示其密钥（只显示这一次）")
    add.add_argument("name")
    add.add_argument("--callback", metavar="URL", help="状态回调地址")
    add.add_argument("--channel", default="hotline", help="渠道（默认 hotline，即热线哨）")
    keys.add_parser("list", help="列出客户端")
    keys.add_parser("revoke", help="吊销客户端的密钥").add_argument("name")
    apikey.set_defaults(func=cmd_apikey)

    model = sub.add_parser(
        "model", help="学习闭环的模型：list 查看、promote 启用、rollback 回滚、train 训练"
    )
    model_actions = model.add_subparsers(dest="action", required=True)
    listing = model_actions.add_parser("list", help="列出模型：版本、数据量、留出评测、采纳率")
    listing.add_argument("--limit", type=int, default=20, help="最多列出几个（默认 20）")
    model_actions.add_parser("promote", help="启用某个版本").add_argument("version")
    model_actions.add_parser("rollback", help="回滚到上一个在用模型")
    model_actions.add_parser("train", help="立即训练一个挑战模型并经门槛评判")
    model.set_defaults(func=cmd_model)
    sub.add_parser(
        "check", help="检查配置、数据库、模型、指挥大屏端口与 Telegram 设置"
    ).set_defaults(func=cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "alembic", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    checking = args.command == "check"
    settings, findings = preflight.check_config(args.config)
    for finding in findings:
        if checking:
            print(finding.line())
        elif finding.level != preflight.OK:
            _warn(finding.line())
    if settings is None or (preflight.errors(findings) and not checking):
        return EXIT_STARTUP
    if getattr(args, "dashboard_port", None):
        settings = replace(
            settings, dashboard=replace(settings.dashboard, port=args.dashboard_port)
        )
    try:
        status = args.func(args, settings)
    except KeyboardInterrupt:
        print("\n已停止。")
        return 0
    except Exception as exc:
        lines = _failure_lines(exc)
        if lines is None:
            raise
        for line in lines:
            _warn(line)
        return EXIT_STARTUP
    return EXIT_STARTUP if checking and preflight.errors(findings) else status


if __name__ == "__main__":
    sys.exit(main())
