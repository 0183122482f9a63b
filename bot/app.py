"""The Telegram Application: built by one factory from the settings, so tests, the demo and
deployments each choose the Bot API address.

build_application only builds and registers; bot/run.py starts it (polling or webhook).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from telegram import BotCommand, BotCommandScopeAllPrivateChats, Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import (
    admin,
    conversation,
    delivery,
    department,
    followup,
    guards,
    reporter,
    texts,
    triage,
    views,
)
from bot.flood import FloodControl
from bot.ordering import OneAtATimePerPerson
from bot.persistence import StorePersistence
from bot.request import AiohttpRequest
from bot.services import SERVICES_KEY, Services, services_of
from models import drafts
from whistle.config import ConfigError, Settings

log = logging.getLogger(__name__)

PUBLIC_API = "https://api.telegram.org/bot"
DEFAULT_CONCURRENCY = 64  # updates handled at once; one chat's updates still come in order
# HTTP connections to the Bot API. httpx checks every idle pooled connection on each request,
# so a pool far larger than the concurrency costs CPU for nothing (PTB's default is 256).
DEFAULT_CONNECTIONS = 32
# aiohttp carries the Bot API calls for far less CPU than PTB's default httpx (bot/request.py);
# telegram.http_client = "httpx" in config.toml switches back.
DEFAULT_HTTP_CLIENT = "aiohttp"

BOT_COMMANDS = [
    BotCommand("report", "反映问题"),
    BotCommand("my", "我的反映及进度"),
    BotCommand("case", "查看某件的办理过程"),
    BotCommand("enterprise", "企业吹哨"),
    BotCommand("cancel", "取消当前操作"),
    BotCommand("help", "使用帮助"),
]


def api_urls(base_url: str) -> tuple[str, str]:
    """(base_url, base_file_url) for PTB from a Bot API address with or without '/bot'."""
    base = base_url.rstrip("/")
    root = base.removesuffix("/bot")
    return root + "/bot", root + "/file/bot"


def build_application(
    settings: Settings,
    *,
    services: Services | None = None,
    base_url: str | None = None,
    base_file_url: str | None = None,
    token: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Application:
    """An Application with every handler and job registered, talking to `base_url`
    (default: TELEGRAM_BASE_URL / config, else the public Bot API)."""
    token = token or settings.telegram_token
    if not token:
        raise ConfigError("未设置 TELEGRAM_TOKEN（环境变量）；没有令牌时请用 `whistle demo` 体验")
    services = services or Services.from_settings(settings, clock=clock)
    tg = settings.telegram
    builder = (
        Application.builder()
        .token(token)
        .persistence(StorePersistence(services.session, services.clock))
        # One flood-control state for replies, edits, answers and the outbox (bot/flood.py).
        .rate_limiter(FloodControl())
        .concurrent_updates(OneAtATimePerPerson(
            int(tg.get("concurrent_updates", DEFAULT_CONCURRENCY))))
    )
    connections = int(tg.get("connection_pool_size", DEFAULT_CONNECTIONS))
    if tg.get("http_client", DEFAULT_HTTP_CLIENT) == "aiohttp":
        builder = (builder.request(AiohttpRequest(connection_pool_size=connections))
                   .get_updates_request(AiohttpRequest(connection_pool_size=1)))
    else:
        builder = builder.connection_pool_size(connections)
    api = base_url or settings.telegram_base_url
    if api:
        bot_url, file_url = api_urls(api)
        builder = builder.base_url(bot_url).base_file_url(base_file_url or file_url)
    application = builder.build()
    application.bot_data[SERVICES_KEY] = services
    register_handlers(application, settings)
    register_jobs(application, settings)
    return application


def register_handlers(application: Application, settings: Settings) -> None:
    """Every handler, in the order that matters: the first match in a group wins."""
    idle = float(settings.conversation.get("idle_timeout_minutes", 30))
    private = filters.ChatType.PRIVATE
    new_private = filters.UpdateType.MESSAGE & private

    # Group -1 runs first for every update: drop updates delivered twice.
    application.add_handler(TypeHandler(Update, guards.drop_duplicates), group=-1)

    # Edited messages, and the read-only commands that must not disturb a conversation.
    application.add_handlers([
        MessageHandler(filters.UpdateType.EDITED, reporter.edited),
        CommandHandler("start", reporter.start),
        CommandHandler("help", reporter.help_command),
        MessageHandler(new_private & filters.Text([texts.MENU_HELP]), reporter.help_command),
        CommandHandler("my", views.my_cases, filters=private),
        MessageHandler(new_private & filters.Text([texts.MENU_MY]), views.my_cases),
        CommandHandler("case", views.case_timeline),
        *admin.handlers(),
        department.build(idle),
        triage.build(idle),
        conversation.build(),
        *triage.handlers(),
        *department.handlers(),
    ])

    _register_followup(application)

    # Whatever nobody claimed: a clear answer, never silence or a traceback.
    application.add_handlers([
        CommandHandler("cancel", reporter.nothing_to_cancel, filters=private),
        MessageHandler(new_private & (filters.TEXT & ~filters.COMMAND), reporter.offer_report),
        MessageHandler(new_private & filters.PHOTO, reporter.offer_report),
        MessageHandler(new_private & filters.LOCATION, reporter.location_outside),
        MessageHandler(new_private & filters.COMMAND, reporter.unknown_command),
        MessageHandler(new_private, reporter.unsupported),
        CallbackQueryHandler(reporter.stray_button),
    ])
    application.add_error_handler(guards.on_error)
    # Last of all: the update is handled (recorded with its conversation step, bot/guards.py).
    application.add_handler(TypeHandler(Update, guards.record_handled), group=guards.AFTER_ALL)


def _register_followup(application: Application) -> None:
    """The follow-up engine's handlers and jobs and the outbox sender (bot/followup.py,
    bot/delivery.py), registered before the catch-alls so their buttons are theirs."""
    followup.register_followup(application)
    delivery.register_delivery(application)


PRUNE_BATCH = 5_000  # update ids forgotten per transaction


async def prune_processed_updates(context) -> None:
    """Forget update ids the duplicate guard no longer looks at, a batch per transaction so
    that updates are handled in between (a busy bot piles up millions in a day)."""
    services = services_of(context)
    before = services.clock() - guards.UPDATES_REMEMBERED
    while True:
        async with services.session() as session:
            forgotten = await drafts.prune_processed_updates(session, before, PRUNE_BATCH)
        if forgotten < PRUNE_BATCH:
            return
        await asyncio.sleep(0)


def register_jobs(application: Application, settings: Settings) -> None:
    """Model hot-reload (classifier.reload_check_seconds) and housekeeping."""
    jobs = application.job_queue
    every = float(settings.classifier.get("reload_check_seconds", 30))
    jobs.run_repeating(admin.reload_model_job, interval=every, first=every, name="reload_model")
    idle = float(settings.conversation.get("idle_timeout_minutes", 30))
    sweep = conversation.idle_sweep_seconds(idle)
    jobs.run_repeating(conversation.end_idle_conversations, interval=sweep, first=sweep,
                       name="end_idle_conversations")
    jobs.run_repeating(prune_processed_updates, interval=6 * 3600, first=60,
                       name="prune_processed_updates")


async def set_bot_commands(application: Application) -> None:
    """The command menu Telegram shows in private chats (best effort)."""
    try:
        await application.bot.set_my_commands(BOT_COMMANDS, scope=BotCommandScopeAllPrivateChats())
    except TelegramError as exc:
        log.warning("could not set the bot's command list: %s", exc)
