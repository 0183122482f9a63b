"""Shared fixtures and helpers of the bot's end-to-end tests (tests/test_bot_*.py).

The bot runs through python-telegram-bot's real HTTP stack against the local Bot API emulator
on 127.0.0.1, on a real SQLite file, with the real classifier (one model trained per session).
Test modules import what they need from here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select

from bot.app import build_application
from bot.common import kick_delivery
from bot.services import Services
from emulator import BotMessage, TelegramEmulator
from models import cases, deadlines, reference
from models.engine import create_all, make_engine, session_scope
from models.tables import Case, LabelCorrection, Outbox
from tests.botapi import TEST_TOKEN, start_app, stop_app
from whistle.config import DEFAULT_CONFIG, Settings, load_settings

RESIDENT, ENTERPRISE_USER = 10001, 10002  # the emulator's demo resident and enterprise user
TRIAGE_STAFF, WATER_STAFF, HOUSING_STAFF, ADMIN = 9001, 9002, 9003, 9000
WAIT = 5.0
NOTICE_DELAY = 60  # seconds a 派单 notice waits for a re-route (followup.dispatch_notice_…)
FLOOD_HOLD = timedelta(seconds=10)  # at most this far ahead the sender puts a push back
# A Tuesday, 10:00 in Wangcheng (02:00 UTC): a working day, far from holidays.
START = datetime(2026, 11, 24, 2, 0)


class Clock:
    """A controllable naive-UTC clock (services.clock)."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def base_settings() -> Settings:
    return load_settings(DEFAULT_CONFIG, env={})


def with_classifier(settings: Settings, **changes) -> Settings:
    return replace(settings, classifier=replace(settings.classifier, **changes))


def with_conversation(settings: Settings, **changes) -> Settings:
    return replace(settings, conversation=replace(settings.conversation, **changes))


@pytest.fixture(scope="session")
def model_path(tmp_path_factory) -> Path:
    """One classifier model for the whole session, trained from the built-in corpus."""
    from classifier import build_default_model

    path = tmp_path_factory.mktemp("model") / "model.skops"
    build_default_model(with_classifier(base_settings(), model_path=str(path)))
    return path


@pytest.fixture(scope="session")
def suggester_for(model_path):
    """suggester_for(settings) → a Suggester on the session's model with those thresholds
    (one per distinct pair, so the model file is loaded a few times only)."""
    from classifier import Suggester

    cache = {}

    def get(settings: Settings):
        key = (
            settings.classifier.confidence_threshold,
            settings.classifier.auto_dispatch_threshold,
        )
        if key not in cache:
            cache[key] = Suggester.from_settings(
                with_classifier(settings, model_path=str(model_path))
            )
        return cache[key]

    return get


@dataclass
class BotEnv:
    """A running bot against the emulator, and handy ways to drive and inspect it."""

    emu: TelegramEmulator
    settings: Settings
    services: Services
    clock: Clock
    db_url: str = ""
    app: object = None

    @property
    def triage_chat(self) -> int:
        return self.settings.telegram.triage_chat_id

    def department_chat(self, code: str) -> int:
        return int(self.settings.department(code).chat_id)

    async def start(self) -> None:
        self.app = build_application(
            self.settings,
            services=self.services,
            base_url=self.emu.base_url,
            base_file_url=self.emu.base_file_url,
            token=TEST_TOKEN,
        )
        await start_app(self.app, self.emu)

    async def stop(self) -> None:
        if self.app is not None:
            await stop_app(self.app)
            self.app = None

    async def restart(self) -> None:
        """Stop the Application and build a new one on the same database."""
        await self.stop()
        self.services = replace(self.services)
        await self.start()

    async def say(self, user: int, text: str, chat: int | None = None) -> BotMessage:
        """Send text as `user` and return the bot's first reply in that chat."""
        self.emu.send_text(user, text, chat_id=chat)
        return await self.emu.wait_for_message(chat or user, timeout=WAIT)

    async def reply(self, user: int, chat: int | None = None) -> BotMessage:
        return await self.emu.wait_for_message(chat or user, timeout=WAIT)

    async def press(self, user: int, message: BotMessage, label: str) -> dict:
        """Press a button and wait for the bot's answer to the press."""
        update = self.emu.press(user, message, label)
        return await self.emu.wait_for_callback_answer(update, timeout=WAIT)

    async def press_data(self, user: int, message: BotMessage, data: str) -> dict:
        update = self.emu.press_button(user, message, data)
        return await self.emu.wait_for_callback_answer(update, timeout=WAIT)

    async def group_post(self, chat: int, contains: str, after: int = 0) -> BotMessage:
        """The first bot message in a group (from index `after`) containing `contains`."""
        return await self.emu.wait_for_message(
            chat, lambda m: contains in m.content, timeout=WAIT, after=after
        )

    async def case(self, ref: str) -> Case:
        async with self.services.session() as session:
            return await cases.get_case_by_ref(session, ref)

    async def cases(self) -> list[Case]:
        async with self.services.session() as session:
            return list((await session.exec(select(Case).order_by(Case.id))).all())

    async def corrections(self) -> list[LabelCorrection]:
        async with self.services.session() as session:
            return list((await session.exec(select(LabelCorrection))).all())

    async def outbox(self) -> list[Outbox]:
        async with self.services.session() as session:
            return list((await session.exec(select(Outbox).order_by(Outbox.id))).all())

    async def report(
        self,
        user: int,
        text: str,
        *,
        photo: bool = False,
        location: tuple[float, float] | None = None,
    ) -> str:
        """A whole resident report; returns its reference (WC-…)."""
        await self.say(user, "/report")
        await self.say(user, text)
        if photo:
            self.emu.send_photo(user)
            await self.reply(user)
        else:
            await self.say(user, "/skip")
        if location:
            self.emu.send_location(user, *location)
            summary = await self.emu.wait_for_message(user, lambda m: bool(m.buttons), timeout=WAIT)
        else:
            summary = await self.say(user, "/skip")
        self.emu.press(user, summary, "确认提交")
        done = await self.emu.wait_for_message(user, lambda m: "已受理" in m.content, timeout=WAIT)
        await self.settle()
        return done.content.split("编号 ", 1)[1].split("，", 1)[0]

    async def settle(self) -> None:
        """Wait until every push due now has reached the emulator, so later replies in a
        chat are not interleaved with a notice that was still on its way.

        The clock stands still, so a push the sender held back a second or two for the
        flood limits would never come due: the clock is moved on to it. A 派单 notice waits
        a minute for a re-route; notices_due lets it go.
        """
        for _ in range(int(WAIT / 0.02)):
            due, soon = await self.pushes_due()
            if not due and soon is None:
                return
            if not due:
                self.clock.now = max(self.clock.now, soon)
                kick_delivery(self.app)
            await asyncio.sleep(0.02)
        raise TimeoutError("outbox still has pending pushes")

    async def pushes_due(self) -> tuple[int, datetime | None]:
        """(pending pushes due by the bot's clock, when the next one within FLOOD_HOLD is)."""
        now = self.clock()
        async with self.services.session() as session:
            pending = Outbox.status == "pending"
            due = (
                await session.exec(
                    select(func.count()).select_from(Outbox).where(pending, Outbox.due_at <= now)
                )
            ).one()
            soon = (
                await session.exec(
                    select(func.min(Outbox.due_at)).where(
                        pending, Outbox.due_at <= now + FLOOD_HOLD
                    )
                )
            ).one()
            return due, soon

    async def notices_due(self) -> None:
        """Let the held-back 派单 notices go: move the clock past their minute, wake the
        sender and wait until they have arrived."""
        self.clock.advance(seconds=NOTICE_DELAY + 1)
        kick_delivery(self.app)
        await self.settle()


BotFactory = Callable[..., Awaitable[BotEnv]]


@pytest.fixture
async def bot_engine(tmp_path):
    """The bot's store: a SQLite file, with statements run in place as the deployed bot
    does (a test module may override this fixture)."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", in_place=True)
    await create_all(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def make_bot(emulator, bot_engine, suggester_for, model_path) -> AsyncIterator[BotFactory]:
    """make_bot(settings=None) → a started BotEnv on the bot_engine store (seeded from
    config.toml); stopped at the end of the test."""
    started: list[BotEnv] = []
    engine = bot_engine
    # As deployed: on SQLite, scans read through threaded connections to the same file.
    read_engine = (
        make_engine(engine.url.render_as_string(), checkpoint_interval=None)
        if engine.dialect.name == "sqlite"
        else None
    )

    async def factory(
        settings: Settings | None = None, *, suggester=None, model: Path | None = None
    ) -> BotEnv:
        settings = with_classifier(settings or base_settings(), model_path=str(model or model_path))
        async with session_scope(engine) as session:
            await reference.sync_reference_data(session, settings)
        clock = Clock()
        services = Services(
            settings=settings,
            engine=engine,
            read_engine=read_engine,
            rules=deadlines.Rules.from_settings(settings),
            suggester=suggester or suggester_for(settings),
            clock=clock,
        )
        url = engine.url.render_as_string(hide_password=False)
        env = BotEnv(emulator, settings, services, clock, db_url=url)
        await env.start()
        started.append(env)
        return env

    try:
        yield factory
    finally:
        for env in started:
            await env.stop()
        if read_engine is not None:
            await read_engine.dispose()


def to_triage(settings: Settings | None = None) -> Settings:
    """Settings under which nothing is auto-dispatched (every case waits for triage) and the
    classifier's top department is always shown as its suggestion."""
    return with_classifier(
        settings or base_settings(), auto_dispatch_threshold=1.0, confidence_threshold=0.0
    )


def unsure(settings: Settings | None = None) -> Settings:
    """Settings under which the classifier is never sure enough to suggest a department."""
    return with_classifier(
        settings or base_settings(), auto_dispatch_threshold=1.0, confidence_threshold=1.0
    )


def auto_dispatch(settings: Settings | None = None) -> Settings:
    """Settings under which every confident-enough suggestion is dispatched at once."""
    return with_classifier(
        settings or base_settings(), auto_dispatch_threshold=0.0, confidence_threshold=0.0
    )
