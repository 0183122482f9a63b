"""The Telegram Application: built by one factory from the settings, so tests, the demo and
deployments each choose the Bot API address.

This module is the one handler table (register_handlers) and the one place jobs are scheduled
(register_jobs; schedule_background_duties for the bot and workers alike); other bot modules
export callbacks and conversation builders only. build_application and build_worker share one
builder; bot/run.py starts them (polling or webhook).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from telegram import BotCommand, BotCommandScopeAllPrivateChats, Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    JobQueue,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import (
    admin,
    conversation,
    delivery,
    department,
    duplicates,
    duties,
    grid,
    guards,
    hard,
    home,
    reporter,
    staff_commands,
    survey,
    texts,
    triage,
    views,
)
from bot import callbacks as cb
from bot.context import CONTEXT_TYPES, Context
from bot.duties import learning
from bot.flood import FloodControl
from bot.ordering import OneAtATimePerPerson
from bot.persistence import StorePersistence
from bot.request import AiohttpRequest
from bot.services import SERVICES_KEY, Services, services_of
from models import drafts
from models.deadlines import Rules
from models.engine import make_engine
from whistle.config import ConfigError, Settings

log = logging.getLogger(__name__)

PUBLIC_API = "https://api.telegram.org/bot"

BOT_COMMANDS = [
    BotCommand("report", "反映问题"),
    BotCommand("my", "我的反映及进度"),
    BotCommand("case", "查看某件的办理过程"),
    BotCommand("enterprise", "企业吹哨"),
    BotCommand("home", "登记我的小区/村"),
    BotCommand("cancel", "取消当前操作"),
    BotCommand("help", "使用帮助"),
]


def api_urls(base_url: str) -> tuple[str, str]:
    """(base_url, base_file_url) for PTB from a Bot API address with or without '/bot'."""
    base = base_url.rstrip("/")
    root = base.removesuffix("/bot")
    return root + "/bot", root + "/file/bot"


def _builder(
    settings: Settings, *, token: str, base_url: str | None, base_file_url: str | None = None
) -> ApplicationBuilder:
    """What the bot and a worker share: the token, the HTTP client and the Bot API address."""
    tg = settings.telegram
    builder = Application.builder().token(token).context_types(CONTEXT_TYPES)
    connections = tg.connection_pool_size
    if tg.http_client == "aiohttp":
        builder = builder.request(
            AiohttpRequest(connection_pool_size=connections)
        ).get_updates_request(AiohttpRequest(connection_pool_size=1))
    else:
        builder = builder.connection_pool_size(connections)
    api = base_url or settings.telegram_base_url
    if api:
        bot_url, file_url = api_urls(api)
        builder = builder.base_url(bot_url).base_file_url(base_file_url or file_url)
    return builder


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
    concurrency = settings.telegram.concurrent_updates
    application = (
        _builder(settings, token=token, base_url=base_url, base_file_url=base_file_url)
        .persistence(StorePersistence(services.session, services.clock))
        # One flood-control state for replies, edits, answers and the outbox (bot/flood.py).
        .rate_limiter(FloodControl())
        .concurrent_updates(OneAtATimePerPerson(concurrency))
        .build()
    )
    application.bot_data[SERVICES_KEY] = services
    register_handlers(application, settings)
    register_jobs(application, settings)
    schedule_background_duties(application, settings)
    return application


def build_worker(
    settings: Settings,
    *,
    token: str | None = None,
    base_url: str | None = None,
    services: Services | None = None,
) -> Application:
    """An Application that only runs the background duties and the outbox sender: no handlers
    read updates. Start any number of them next to the bot against one PostgreSQL database
    (`run_worker`); the compare-and-set claims and SKIP LOCKED keep every push single."""
    token = token or settings.telegram_token
    if not token:
        raise ValueError("a worker needs the bot's token (TELEGRAM_TOKEN)")
    # No classifier: a worker never reads a report.
    services = services or Services(
        settings=settings,
        engine=make_engine(settings.database_url, settings.database_echo),
        rules=Rules.from_settings(settings),
        suggester=None,
        owns_engine=True,
    )
    application = _builder(settings, token=token, base_url=base_url).build()
    application.bot_data[SERVICES_KEY] = services
    schedule_background_duties(application, settings)
    return application


async def run_worker(
    settings: Settings,
    *,
    token: str | None = None,
    base_url: str | None = None,
    services: Services | None = None,
) -> None:
    """Run a background worker until cancelled."""
    application = build_worker(settings, token=token, base_url=base_url, services=services)
    async with application:
        await application.start()
        try:
            await asyncio.Event().wait()
        finally:
            await application.stop()
            await services_of(application).dispose()


def _button(
    callback: Callable[[Update, Context], Awaitable[object]], *verbs: str
) -> CallbackQueryHandler:
    """The handler of the buttons whose callback data starts with one of these verbs."""
    return CallbackQueryHandler(callback, pattern=cb.pattern(*verbs))


def register_handlers(application: Application, settings: Settings) -> None:
    """Every handler of the bot, in the order that matters: the first match in a group wins."""
    idle = settings.conversation.idle_timeout_minutes
    private = filters.ChatType.PRIVATE
    new_private = filters.UpdateType.MESSAGE & private
    private_text = new_private & filters.TEXT & ~filters.COMMAND

    # Group -1 runs first for every update: drop updates delivered twice.
    application.add_handler(TypeHandler(Update, guards.drop_duplicates), group=-1)

    application.add_handlers(
        [
            # Edited messages, and the read-only commands that must not disturb a conversation.
            MessageHandler(filters.UpdateType.EDITED, reporter.edited),
            CommandHandler("start", reporter.start),
            CommandHandler("help", reporter.help_command),
            MessageHandler(new_private & filters.Text([texts.MENU_HELP]), reporter.help_command),
            CommandHandler("my", views.my_cases, filters=private),
            MessageHandler(new_private & filters.Text([texts.MENU_MY]), views.my_cases),
            CommandHandler("case", views.case_timeline),
            # Administrators.
            CommandHandler("reload_model", admin.reload_model_command),
            CommandHandler("model", admin.model_command),
            CommandHandler("staff_add", admin.staff_add),
            # The conversations: staff replies in groups, then the reporter's intake.
            department.build(idle),
            triage.build(idle),
            hard.build(idle),
            grid.build(idle),
            grid.build_field_report(idle),
            conversation.build(),
            home.build(),  # after the report: a report under way keeps the messages typed into it
            # Triage (分拨中心) buttons.
            _button(triage.confirm, cb.CONFIRM),
            _button(triage.ask_to_confirm, cb.TO),
            _button(triage.urgent, cb.URGENT),
            _button(triage.show_picker, cb.PICK),
            _button(triage.hide_picker, cb.BACK),
            _button(triage.show_reasons, cb.NOT_ACCEPT),
            _button(triage.show_grids, cb.GRID),
            _button(triage.set_grid, cb.SET_GRID),
            _button(triage.to_grid, cb.TO_GRID),
            _button(triage.not_accept_as, cb.NOT_ACCEPT_AS),
            _button(triage.merge_into_similar, cb.MERGE),
            _button(triage.decide_extension, cb.APPROVE_EXT, cb.REJECT_EXT),
            # 攻坚哨: choosing the departments (triage, leaders); a co-department's 签收 of its part.
            _button(hard.show_leads, cb.HARD),
            _button(hard.show_co_departments, cb.HARD_LEAD, cb.HARD_CO),
            _button(hard.sign_part, cb.PART_SIGN),
            # Department (工作群) buttons.
            _button(department.sign, cb.SIGN),
            # Grid and street staff's buttons (吹哨报到), in their private chats.
            _button(grid.sign, cb.GRID_SIGN),
            _button(grid.verify_passed, cb.VERIFY_OK),
            _button(grid.show_whistle_targets, cb.WHISTLE),
            _button(grid.hide_whistle_targets, cb.GRID_BACK),
            # 回访: the survey's buttons and the 不满意 comment; blocked / unblocked bot.
            _button(survey.on_rate_button, cb.RATE, cb.RATE_NOW),
            _button(survey.on_follower_rate, cb.RATE_FOLLOWER),
            MessageHandler(private_text & survey.pending_filter(application), survey.on_comment),
            ChatMemberHandler(reporter.on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER),
            # Staff and enterprise commands.
            CommandHandler("dashboard", staff_commands.dashboard_command, filters=private),
            CommandHandler("overdue", staff_commands.overdue_command),
            CommandHandler("stats", staff_commands.stats_command),
            CommandHandler("policy", staff_commands.policy_command),
            CommandHandler("gongjian", hard.gongjian_command),
            CommandHandler("override", hard.override_command),
            CommandHandler("unsubscribe", staff_commands.unsubscribe_command, filters=private),
            CommandHandler("subscribe", staff_commands.subscribe_command, filters=private),
            _button(staff_commands.on_news_button, cb.NEWS),
            # Whatever nobody claimed: a clear answer, never silence or a traceback.
            CommandHandler("cancel", reporter.nothing_to_cancel, filters=private),
            MessageHandler(private_text, conversation.offer_report),
            MessageHandler(new_private & filters.PHOTO, conversation.offer_report),
            MessageHandler(new_private & filters.LOCATION, reporter.location_outside),
            MessageHandler(new_private & filters.COMMAND, reporter.unknown_command),
            MessageHandler(new_private, reporter.unsupported),
            CallbackQueryHandler(reporter.stray_button),
        ]
    )
    application.add_error_handler(guards.on_error)
    # Last of all: the update is handled (recorded with its conversation step, bot/guards.py).
    application.add_handler(TypeHandler(Update, guards.record_handled), group=guards.AFTER_ALL)


PRUNE_BATCH = 5_000  # update ids forgotten per transaction


async def prune_processed_updates(context: Context) -> None:
    """Forget update ids the duplicate guard no longer looks at, a batch per transaction so
    that updates are handled in between (a busy bot piles up millions in a day)."""
    services = context.services
    before = services.clock() - guards.UPDATES_REMEMBERED
    while True:
        async with services.session() as session:
            forgotten = await drafts.prune_processed_updates(session, before, PRUNE_BATCH)
        if forgotten < PRUNE_BATCH:
            return
        await asyncio.sleep(0)


def _job_queue(application: Application) -> JobQueue:
    if application.job_queue is None:
        raise RuntimeError("the bot's jobs need python-telegram-bot[job-queue]")
    return application.job_queue


def register_jobs(application: Application, settings: Settings) -> None:
    """The bot's own housekeeping: model hot-reload (classifier.reload_check_seconds), the
    learning duty, idle conversations, forgotten update ids."""
    jobs = _job_queue(application)
    every = settings.classifier.reload_check_seconds
    jobs.run_repeating(admin.reload_model_job, interval=every, first=every, name="reload_model")
    idle = settings.conversation.idle_timeout_minutes
    sweep = conversation.idle_sweep_seconds(idle)
    jobs.run_repeating(
        conversation.end_idle_conversations,
        interval=sweep,
        first=sweep,
        name="end_idle_conversations",
    )
    jobs.run_repeating(
        prune_processed_updates, interval=6 * 3600, first=60, name="prune_processed_updates"
    )
    if settings.duplicates.enabled:
        jobs.run_once(duplicates.warm_up, when=1, name="duplicate_index")
        every = duplicates.ELSEWHERE_SECONDS
        jobs.run_repeating(
            duplicates.hint_cases_from_elsewhere,
            interval=every,
            first=every,
            name="duplicate_hints_from_elsewhere",
        )
    if settings.learning.enabled:  # the bot only: it serves the model the duty promotes
        check = settings.learning.check_seconds
        jobs.run_repeating(
            learning.learning_job,
            interval=check,
            first=check,
            name="learning",
            job_kwargs=delivery.OVERLAP_ALLOWED,
        )


def schedule_background_duties(application: Application, settings: Settings) -> None:
    """The follow-up duties and the outbox sender, every followup.poll_seconds (the bot and
    each worker alike). A pass may outlast the interval: the overlapping tick returns at once."""
    jobs = _job_queue(application)
    poll = settings.followup.poll_seconds
    jobs.run_repeating(
        duties.followup_job,
        interval=poll,
        first=1,
        name="followup",
        job_kwargs=delivery.OVERLAP_ALLOWED,
    )
    jobs.run_repeating(
        delivery.delivery_job,
        interval=poll,
        first=0.5,
        name="outbox-delivery",
        job_kwargs=delivery.OVERLAP_ALLOWED,
    )


async def set_bot_commands(application: Application) -> None:
    """The command menu Telegram shows in private chats (best effort)."""
    try:
        await application.bot.set_my_commands(BOT_COMMANDS, scope=BotCommandScopeAllPrivateChats())
    except TelegramError as exc:
        log.warning("could not set the bot's command list: %s", exc)
