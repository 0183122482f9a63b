"""Starting the bot: `run_bot` (long polling or webhook, for `whistle run`) and `run_demo`
(the built-in Bot API emulator plus a terminal chat, for `whistle demo`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from urllib.parse import urlparse

from telegram import Update
from telegram.ext import Application

from bot import delivery
from bot.app import build_application, set_bot_commands
from models import drafts
from whistle.config import ConfigError, Settings

log = logging.getLogger(__name__)

DEMO_TOKEN = "7000000001:DEMO-local-emulator"
DEMO_RESIDENT = 10001
POLL_TIMEOUT = 30  # seconds a long poll waits at Telegram


def quiet_chatty_loggers(*, demo: bool = False) -> None:
    """APScheduler logs every job it adds or removes (the staff conversations' timeouts, the
    sender's kicks); the demo's terminal also does without PTB's and the emulator's INFO
    lines."""
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    if demo:
        for name in ("telegram", "emulator", "aiohttp.access"):
            logging.getLogger(name).setLevel(logging.WARNING)


class StoppedJobFilter(logging.Filter):
    """Drops APScheduler's "job raised an exception" for a job cancelled because the bot is
    stopping: stopping cancels a job that started a moment before, which is no failure (the
    job's work is transactional and the next start does it again)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, asyncio.CancelledError)


def _quiet_stopped_jobs() -> None:
    scheduler_log = logging.getLogger("apscheduler.executors.default")  # PTB's job executor
    if not any(isinstance(f, StoppedJobFilter) for f in scheduler_log.filters):
        scheduler_log.addFilter(StoppedJobFilter())


async def _wait_for_stop_signal() -> None:
    """Until SIGINT/SIGTERM (or cancellation)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def start_application(
    application: Application,
    settings: Settings,
    *,
    mode: str | None = None,
    poll_interval: float | None = None,
) -> None:
    """Initialize and start the application and its updater (polling or webhook)."""
    if poll_interval is None:
        poll_interval = settings.telegram.poll_interval
    _quiet_stopped_jobs()
    mode = (mode or settings.telegram.mode).lower()
    await application.initialize()
    await set_bot_commands(application)
    # Everything loaded so far (libraries, the model, the handlers) lives as long as the
    # process: keep it out of the collector's full passes, which otherwise pause the loop
    # for 50-130 ms every few thousand transactions.
    gc.freeze()
    await application.start()
    if mode == "webhook":
        await start_webhook(application, settings)
    elif mode == "polling":
        await application.updater.start_polling(
            poll_interval=poll_interval, timeout=POLL_TIMEOUT, allowed_updates=Update.ALL_TYPES
        )
    else:
        raise ConfigError(f"telegram.mode 只能是 polling 或 webhook，而不是 {mode!r}")


async def start_webhook(application: Application, settings: Settings) -> None:
    """Listen for Telegram's POSTs; every one must carry TELEGRAM_WEBHOOK_SECRET."""
    tg = settings.telegram
    webhook_url = tg.webhook_url
    if not webhook_url:
        raise ConfigError("webhook 模式需要在 config.toml 的 [telegram] 中设置 webhook_url")
    if not settings.webhook_secret:
        raise ConfigError("webhook 模式需要环境变量 TELEGRAM_WEBHOOK_SECRET")
    await application.updater.start_webhook(
        listen=tg.webhook_listen,
        port=tg.webhook_port,
        url_path=urlparse(webhook_url).path.lstrip("/"),
        webhook_url=webhook_url,
        secret_token=settings.webhook_secret,
        allowed_updates=Update.ALL_TYPES,
    )


async def stop_application(application: Application) -> None:
    """Stop the updater and the application, flushing conversation state to the store."""
    services = application.bot_data.get("services")
    try:
        delivery.stop_sending(application)  # a backlog must not hold up the stop
        if application.updater is not None and application.updater.running:
            await application.updater.stop()
        if application.running:
            await application.stop()
        await application.shutdown()
        # After a failed initialize() (token refused, Bot API unreachable) the application
        # counts as never started, but the bot's HTTP sessions are open.
        await application.bot.shutdown()
    finally:
        if services is not None:
            await services.dispose()


async def run_bot(settings: Settings) -> None:
    """`whistle run` with TELEGRAM_TOKEN: serve Telegram until SIGINT/SIGTERM."""
    quiet_chatty_loggers()
    application = build_application(settings)
    try:
        await start_application(application, settings)
        log.info("机器人已启动（%s 模式）", settings.telegram.mode)
        await _wait_for_stop_signal()
    finally:
        await stop_application(application)


async def run_demo(settings: Settings, *, input_lines=None, out=None) -> None:
    """`whistle demo`: the emulator, the bot against it, and a terminal chat where a person
    plays a resident (10001), an enterprise user (10002) and the staff from config.toml.

    input_lines / out replace the terminal (scripted demos and tests)."""
    from bot.texts.demo import TITLE
    from emulator import TelegramEmulator, run_terminal_chat
    from whistle.demo import add_people_from_settings, demo_intro, demo_roles

    quiet_chatty_loggers(demo=True)
    emulator = TelegramEmulator(token=DEMO_TOKEN)
    identities, groups = add_people_from_settings(emulator, settings)
    roles = demo_roles(settings)
    await emulator.start()
    try:
        application = build_application(
            settings,
            base_url=emulator.base_url,
            base_file_url=emulator.base_file_url,
            token=DEMO_TOKEN,
        )
        async with application.bot_data["services"].session() as session:
            # A fresh emulator numbers its updates from the start again.
            await drafts.forget_processed_updates(session)
        try:
            await start_application(application, settings, mode="polling")
            await run_terminal_chat(
                emulator,
                identities,
                groups,
                start_as=DEMO_RESIDENT,
                input_lines=input_lines,
                out=out,
                roles=roles,
                intro=demo_intro(settings, identities, roles),
                title=TITLE,
            )
            # What was typed last (a script that ends at once) is still handled: stopping
            # handles the updates the bot took, but drops those it had not taken yet.
            await emulator.wait_until_taken()
        finally:
            await stop_application(application)
    finally:
        await emulator.stop()
