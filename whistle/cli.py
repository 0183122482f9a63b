"""The `whistle` console command: run, demo, migrate, dashboard, train, check."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from whistle.config import ConfigError, load_settings

log = logging.getLogger("whistle")


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
    from models.db import make_engine, session_scope
    from models.store import sync_reference_data

    engine = make_engine(settings.database_url)
    try:
        async with session_scope(engine) as session:
            await sync_reference_data(session, settings)
    finally:
        await engine.dispose()


async def _run_with_dashboard(bot_coro, settings, with_dashboard: bool) -> None:
    from web.app import serve_dashboard

    tasks = [asyncio.create_task(bot_coro)]
    if with_dashboard:
        tasks.append(asyncio.create_task(serve_dashboard(settings)))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            t.result()  # surface the error of whichever part stopped first
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def cmd_run(args, settings) -> int:
    from bot.run import run_bot, run_demo

    _prepare(settings)
    if settings.telegram_token:
        coro = run_bot(settings)
    else:
        print("未设置 TELEGRAM_TOKEN：使用内置的本地 Bot API 模拟器运行（演示模式）。")
        coro = run_demo(settings)
    dash = not args.no_dashboard
    if dash:
        d = settings.dashboard
        print(f"指挥大屏: http://{d.get('host', '127.0.0.1')}:{d.get('port', 8080)}/")
    asyncio.run(_run_with_dashboard(coro, settings, dash))
    return 0


def cmd_demo(args, settings) -> int:
    from bot.run import run_demo

    _prepare(settings)
    asyncio.run(_run_with_dashboard(run_demo(settings), settings, args.dashboard))
    return 0


def cmd_migrate(args, settings) -> int:
    from models.migrate import MigrationError, upgrade_sync

    try:
        upgrade_sync(settings.database_url)
    except MigrationError as exc:
        print(f"数据库升级失败: {exc}", file=sys.stderr)
        return 1
    asyncio.run(_sync_reference_data(settings))
    print(f"数据库已升级到最新版本: {settings.database_url}")
    return 0


def cmd_dashboard(args, settings) -> int:
    from models.migrate import upgrade_sync
    from web.app import serve_dashboard

    upgrade_sync(settings.database_url)
    asyncio.run(serve_dashboard(settings))
    return 0


def cmd_worker(args, settings) -> int:
    """An extra follow-up/outbox worker beside the bot (PostgreSQL deployments)."""
    from bot.followup import run_worker

    if not settings.telegram_token:
        print("worker 需要 TELEGRAM_TOKEN。", file=sys.stderr)
        return 2
    asyncio.run(run_worker(settings))
    return 0


def cmd_check(args, settings) -> int:
    print(f"配置文件: {settings.config_path}")
    print(f"数据库: {settings.database_url}")
    print(f"模型: {settings.model_path} ({'已存在' if settings.model_path.exists() else '缺失'})")
    print(f"部门: {', '.join(f'{d.code}={d.name}' for d in settings.departments)}")
    print(f"工作人员: {len(settings.staff)} 名; 网格: {len(settings.grids)} 个")
    print(f"Telegram: {'已设置令牌' if settings.telegram_token else '未设置令牌（演示模式）'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="whistle", description="吹哨报到 Telegram 受理与派单服务")
    p.add_argument("--config", help="config.toml 路径（默认 WHISTLE_CONFIG 或仓库内的 config.toml）")
    p.add_argument("-v", "--verbose", action="store_true", help="输出调试日志")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="运行机器人与指挥大屏（无 TELEGRAM_TOKEN 时为演示模式）")
    run.add_argument("--no-dashboard", action="store_true", help="不启动指挥大屏")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="在终端中通过本地模拟器体验完整流程")
    demo.add_argument("--dashboard", action="store_true", help="同时启动指挥大屏")
    demo.set_defaults(func=cmd_demo)

    sub.add_parser("migrate", help="升级数据库结构并同步部门/人员/网格").set_defaults(func=cmd_migrate)
    sub.add_parser("dashboard", help="只运行指挥大屏").set_defaults(func=cmd_dashboard)
    sub.add_parser("worker", help="额外的跟进/推送进程（多进程共用 PostgreSQL 时）").set_defaults(
        func=cmd_worker
    )
    sub.add_parser("check", help="检查配置").set_defaults(func=cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "alembic", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"配置错误: {exc}", file=sys.stderr)
        return 2
    try:
        return args.func(args, settings)
    except KeyboardInterrupt:
        print("\n已停止。")
        return 0


if __name__ == "__main__":
    sys.exit(main())
